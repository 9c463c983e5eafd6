"""`selfplay status` reports the run's own state (its run and stage commands) and lists side
commands (export, verify) apart; a command refused on a directory that holds no run writes
nothing; the resume command works from the current directory."""
import os
import subprocess
import sys
from pathlib import Path

import orjson

from selfplay.core import io
from selfplay.core import log as runlog
from selfplay.inspect.status import format_status, run_status
from tests.conftest import cfg_file, one_line_error

ROOT = Path(__file__).resolve().parents[2]


def sp(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "selfplay", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {os.path.relpath(os.path.join(d, n), root): (os.stat(os.path.join(d, n)).st_mtime_ns,
                                                        os.stat(os.path.join(d, n)).st_size)
            for d, dirs, files in os.walk(root) for n in dirs + files}


def test_status_after_a_failed_export_shows_the_run_complete(tmp_path):
    out = tmp_path / "o"
    assert sp("run", "--config", cfg_file(tmp_path, out, rounds=2)).returncode == 0
    (tmp_path / "X").mkdir()
    (tmp_path / "X" / "keep.txt").write_text("not empty")
    one_line_error(sp("export", out, "--to", tmp_path / "X"), "is not empty")
    assert " ERROR END error " in (out / "run.log").read_text()  # the failure is in the run's log
    r = sp("status", out, "--json")
    assert r.returncode == 0, r.stderr
    s = orjson.loads(r.stdout)
    assert s["state"] == "finished" and s["how"].startswith("`run` ended: ok")
    assert all(st["complete"] for st in s["rounds"]) and len(s["rounds"]) == 2
    export = s["side_commands"]["export"]
    assert export["outcome"] == "failed" and "is not empty" in export["error"]
    assert export["command"] == f"export --to {tmp_path / 'X'}"
    text = sp("status", out).stdout
    assert "\nstate: finished: `run` ended: ok" in text and "ended with an error" not in text
    assert "\n2 of 2 rounds complete\n" in text and "resumes the run" not in text
    assert "\nlast export: failed (ValueError: export: --to " in text

    # an export that works afterwards replaces the failed one in the list; the run's state stays
    r = sp("export", out, "--to", tmp_path / "ds", "--format", "jsonl")
    assert r.returncode == 0, r.stderr[-2000:]
    s = run_status(out)
    assert s["state"] == "finished" and s["side_commands"]["export"]["outcome"] == "ok"
    assert "last export: ok; `export --to " in format_status(s)


def _log(out: Path, entries):
    (out / "run.log").write_text("".join(f"{runlog.stamp()} [{pid}] {level} {msg}\n" for pid, level, msg in entries))


def test_a_killed_run_stays_stopped_after_a_side_command_that_went_well(tmp_path, monkeypatch):
    out = tmp_path / "o"
    io.write_json(out / "config.json", {"run": {"rounds": 1, "seed": 0}, "model": {"name": "m", "backend": "hf"},
                                        "solve": {"samples": 2}, "train": {"enabled": False},
                                        "eval": {"enabled": False}})
    gone = subprocess.Popen(["true"])
    gone.wait()
    _log(out, [(gone.pid, "INFO", "START run (selfplay 0.2.0, pid 1, argv: run)"),
               (gone.pid, "INFO", "round 0: starting (model m; rollouts.jsonl has 0 lines)"),
               (4194000, "INFO", "START verify o/round_0/rollouts.jsonl (selfplay 0.2.0, pid 2, argv: verify)"),
               (4194000, "INFO", "END ok after 0.1 s"),
               (4194001, "INFO", "START export --to ds (selfplay 0.2.0, pid 3, argv: export)"),
               (4194001, "ERROR", "ValueError: export: no round_K/pairs.jsonl under o"),
               (4194001, "ERROR", "END error after 0.0 s")])
    monkeypatch.chdir(tmp_path)
    s = run_status("o")
    # before, the last START (export) gave the state: "stopped: `export` ended with an error"
    assert s["state"] == "stopped" and "`run` (pid" in s["how"] and "killed" in s["how"]
    assert {k: v["outcome"] for k, v in s["side_commands"].items()} == {"verify": "ok", "export": "failed"}
    text = format_status(s)
    assert "0 of 1 rounds complete; `selfplay run --out o` resumes the run" in text
    assert "\nlast verify: ok; `verify o/round_0/rollouts.jsonl`" in text
    assert "\nlast export: failed (ValueError: export: no round_K/pairs.jsonl under o); `export --to ds`" in text


def test_a_refused_command_on_a_directory_that_is_not_a_run_writes_nothing(tmp_path):
    notarun = tmp_path / "notarun"
    notarun.mkdir()
    (notarun / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    one_line_error(sp("export", "notarun", "--to", "X", cwd=tmp_path), "no round_K/pairs.jsonl under notarun")
    for stage, needle in (("pair", "problems.jsonl not found"), ("stats", "problems.jsonl not found"),
                          ("solve", "problems.jsonl not found"), ("train", "round_0/pairs.jsonl not found")):
        r = sp(stage, "--out", "notarun", "--backend", "scripted", cwd=tmp_path)
        one_line_error(r, needle, "first")
    assert tree(tmp_path) == before  # no run.log, no config.json, no X, nothing touched
    one_line_error(sp("status", notarun), "holds no run")


def test_the_resume_command_works_from_the_current_directory(tmp_path, monkeypatch):
    out = tmp_path / "runs" / "my run"
    io.write_json(out / "config.json", {"run": {"rounds": 1}, "train": {"enabled": False},
                                        "eval": {"enabled": False}})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    for given in ("runs/my run", "./runs/my run/", str(out)):
        assert run_status(given)["resume"] == "selfplay run --out 'runs/my run'", given
    monkeypatch.chdir(tmp_path / "runs")
    assert run_status("my run")["resume"] == "selfplay run --out 'my run'"
    monkeypatch.chdir(tmp_path / "elsewhere")  # OUT is not under the cwd: absolute
    s = run_status("../runs/my run")
    assert s["resume"] == f"selfplay run --out '{out}'" and s["out"] == "../runs/my run"
    assert f"`selfplay run --out '{out}'` resumes the run" in format_status(s)
