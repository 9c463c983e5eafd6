"""The `selfplay` CLI: one clear error line for bad input, eval on a saved/default model."""
import subprocess
import sys
from pathlib import Path

import pytest

from selfplay.core import io

ROOT = Path(__file__).resolve().parents[2]


def sp(*args, **kw):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=kw.get("timeout", 120))


def test_help_lists_every_command():
    out = sp("--help").stdout
    for cmd in ("run", "problems", "solve", "pair", "stats", "verify", "eval", "report"):
        assert cmd in out
    assert "--max-new-tokens" in sp("run", "--help").stdout


@pytest.mark.parametrize("toml,needle", [
    ("[solve]\nsamples = 1\n", "config: solve.samples: must be >= 2"),
    ("[solve]\nsampels = 3\n", "config: solve.sampels: unknown field"),
    ("[seeds]\nfiles = ['nope.jsonl']\n", "config: seeds.files: nope.jsonl not found"),
])
def test_bad_config_is_one_line(tmp_path, toml, needle):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    r = sp("run", "--config", f, "--out", tmp_path / "o")
    assert r.returncode == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()  # nothing half-written


@pytest.mark.parametrize("setting,needle", [
    ("pose.enabld=false", "config: pose.enabld: unknown field"),
    ("solve.samples=1", "config: solve.samples: must be >= 2"),
    ("samples=4", "expected SECTION.FIELD=VALUE"),
    ("solve.samples", "expected SECTION.FIELD=VALUE"),
])
def test_a_bad_set_is_one_line_and_writes_nothing(tmp_path, setting, needle):
    r = sp("run", "--config", ROOT / "configs/default.toml", "--set", setting, "--out", tmp_path / "o")
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_set_layers_any_field_over_the_config_and_a_flag_wins_over_it():
    from selfplay.cli.main import overrides_from
    from selfplay.cli.parser import build_parser
    from selfplay.config import load_config

    args = build_parser().parse_args(["run", "--set", "pose.enabled=false", "--set", 'seeds.generators=["add", "sub"]',
                                      "--set", "run.seed=5", "--set", "solve.samples=4", "--samples", "6",
                                      "--set", "model.name=some/model"])
    cfg = load_config(ROOT / "configs/default.toml", overrides_from(args))
    assert cfg.pose.enabled is False and cfg.seeds.generators == ["add", "sub"]
    assert cfg.run.seed == 5  # no --seed: the --set stands
    assert cfg.solve.samples == 6  # --samples names the same field and wins
    assert cfg.model.name == "some/model"  # not TOML: a bare string
    assert cfg.train.batch_size == 8  # the file's own value where nothing sets it
    plain = load_config(ROOT / "configs/default.toml", overrides_from(build_parser().parse_args(["run"])))
    assert plain.pose.enabled is True and plain.run.seed == 0


def test_eval_bad_data_line_names_file_and_line(tmp_path):
    f = tmp_path / "e.jsonl"
    f.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "no answer"}\n')
    r = sp("eval", "--model", "default", "--data", f)
    assert r.returncode == 2 and "e.jsonl:2" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_verify_missing_file(tmp_path):
    r = sp("verify", tmp_path / "rollouts.jsonl")
    assert r.returncode == 2 and "file not found" in r.stderr


@pytest.mark.model
def test_eval_real_model(tmp_path):
    f = tmp_path / "mini.jsonl"
    io.write_jsonl(f, [{"question": "What is 2 + 2?", "answer": "4"}, {"question": "What is 5 + 3?", "answer": "8"}])
    out = tmp_path / "eval.json"
    r = sp("eval", "--model", "default", "--data", f, "--samples", "2", "--max-new-tokens", "48", "-o", out,
           timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = io.read_json(out)
    s = res["sets"]["mini"]
    assert s["n"] == 2 and 0 <= s["pass@1"] <= 1 and len(s["pass@1_ci"]) == 2 and s["k"] == 2


def test_eval_needs_data_or_heldout():
    r = sp("eval", "--model", "default")
    assert r.returncode == 2 and "--data FILE.jsonl and/or --heldout N" in r.stderr


COMMANDS = ("run", "problems", "solve", "pair", "stats", "eval", "audit", "report", "status", "export", "verify", "train")


def test_every_subcommand_teaches_description_defaults_and_an_example():
    import argparse

    from selfplay.cli.main import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description and len(p.description) > 40, name
        assert f"example:\n  selfplay {name} " in text, name
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
    run = sub.choices["run"].format_help()
    assert "(config solve.samples; built-in default 8)" in " ".join(run.split())
    ev = " ".join(sub.choices["eval"].format_help().split())
    assert "(config eval.samples; built-in default 4)" in ev and "(config eval.max_new_tokens; built-in default 192)" in ev
    assert "(default: parquet)" in " ".join(sub.choices["export"].format_help().split())
    assert "(default: 3.0)" in " ".join(sub.choices["verify"].format_help().split())
    assert "default: None" not in "".join(p.format_help() for p in sub.choices.values())


def test_version():
    from selfplay import __version__

    r = sp("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"selfplay {__version__} (verifier ")


def test_eval_compare_is_checked_before_the_model_loads(tmp_path):
    data = tmp_path / "d.jsonl"
    io.write_jsonl(data, [{"question": "What is 1 + 1?", "answer": "2"}])
    bad = tmp_path / "earlier.json"
    bad.write_text('{"sets": {"d": {"n": 1}}}')
    # a model that does not exist: the --compare error must come first, before any model is touched
    for compare, needle in ((tmp_path / "missing.json", "file not found"), (bad, "per-problem records")):
        r = sp("eval", "--model", "./no/such/model", "--data", data, "--compare", compare)
        assert r.returncode == 2 and f"--compare {compare}" in r.stderr and needle in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_eval_with_the_run_config_reproduces_its_eval_json(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(f"""
[run]
seed = 7
out = "{tmp_path / 'o'}"
[model]
backend = "scripted"
name = "scripted-model"
[seeds]
problems = 4
[pose]
enabled = false
[solve]
samples = 2
temperature = 0.7
[train]
enabled = false
[eval]
heldout_problems = 5
samples = 3
max_new_tokens = 64
""")
    assert sp("run", "--config", toml).returncode == 0
    base = io.read_json(tmp_path / "o" / "eval_base.json")
    for config in (toml, tmp_path / "o" / "config.json"):
        r = sp("eval", "--model", "scripted-model", "--config", config, "-o", tmp_path / "e.json")
        assert r.returncode == 0, r.stderr[-2000:]
        again = io.read_json(tmp_path / "e.json")
        assert again["model"] == base["model"]
        assert again["sets"].keys() == base["sets"].keys() == {"heldout_procedural", "ood_arith", "ood_word", "svamp"}
        for name, s in base["sets"].items():
            strip = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
            assert strip(again["sets"][name]) == strip(s)
        assert again["sets"]["heldout_procedural"]["params"] == {"samples": 3, "temperature": 0.7, "top_p": 0.95,
                                                                 "max_new_tokens": 64, "seed": 7}
    r = sp("eval", "--model", "scripted-model", "--backend", "scripted", "--heldout", "5", "-o", tmp_path / "d.json")
    assert r.returncode == 0, r.stderr[-2000:]
    params = io.read_json(tmp_path / "d.json")["sets"]["heldout_procedural"]["params"]
    assert params == {"samples": 4, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 192, "seed": 0}  # [eval] defaults
