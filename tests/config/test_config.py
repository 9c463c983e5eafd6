import pytest

from selfplay.config import load_config


def test_defaults_are_valid():
    cfg = load_config(None)
    assert cfg.solve.samples == 8 and cfg.pair.max_pairs_per_problem == 4


def test_overrides_win_over_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[solve]\nsamples = 6\n[run]\nseed = 3\n")
    cfg = load_config(f, {"solve.samples": 4, "run.seed": None})
    assert cfg.solve.samples == 4 and cfg.run.seed == 3


@pytest.mark.parametrize("text,field", [
    ("[solve]\nsampels = 3\n", "solve.sampels"),
    ("[solve]\nsamples = 'x'\n", "solve.samples"),
    ("[solve]\nsamples = 1\n", "solve.samples"),
    ("[solve]\ntop_p = 1.5\n", "solve.top_p"),
    ("[seeds]\ngenerators = ['nope']\n", "seeds.generators"),
    ("[seeds]\nfiles = ['/no/such.jsonl']\n", "seeds.files"),
    ("[guard]\naccumulate = 'some'\n", "guard.accumulate"),
    ("[filters]\nband_low = 0.9\nband_high = 0.1\n", "filters.band_low"),
    ("[model]\nbackend = 'tpu'\n", "model.backend"),
    ("solve = 3\n", "solve"),
])
def test_bad_field_is_named(tmp_path, text, field):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ValueError) as e:
        load_config(f)
    assert f"config: {field}" in str(e.value)


def test_bad_toml_and_missing_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("x = \n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(f)
    with pytest.raises(ValueError, match="file not found"):
        load_config(tmp_path / "missing.toml")


def test_int_accepted_for_float():
    assert load_config(None, {"solve.temperature": 1}).solve.temperature == 1.0


@pytest.mark.parametrize("name", ["default.toml", "no-guard.toml"])
def test_shipped_configs_load(name):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / name)
    assert cfg.run.rounds >= 2 and cfg.train.enabled and cfg.eval.enabled
    assert cfg.model.backend == "auto"
    assert cfg.guard.enabled == (name == "default.toml")


# the comparison configs of docs/results.md: the default job with exactly these settings changed
OLD26 = {"vllm.top_p": "sort", "pose.batch": 64, "pose.max_new_tokens": 160, "train.batch_size": 2,
         "train.grad_accum": 4, "train.engine_ref": False}  # issue 26's speed settings off
CHANGED = {
    "group.toml": {"train.group_by_prompt": True},
    "old26.toml": OLD26,
    "filed26.toml": {**OLD26, "train.max_steps": 12},  # and the training budget as filed
}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_comparison_configs_differ_from_the_default_only_where_they_say(name):
    import dataclasses
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def flat(cfg):
        return {f"{sec.name}.{f.name}": getattr(getattr(cfg, sec.name), f.name)
                for sec in dataclasses.fields(cfg) for f in dataclasses.fields(getattr(cfg, sec.name))}

    default, other = flat(load_config(root / "configs" / "default.toml")), flat(load_config(root / "configs" / name))
    assert {k: v for k, v in other.items() if default[k] != v} == CHANGED[name]


# Each bad value -> ValueError naming the field; a value of the right type but the wrong meaning
# must fail at load, before a round of generation. (override dict, field named in the error)
BAD_VALUES = [
    ({"run.seed": -1}, "run.seed"),
    ({"run.rounds": 0}, "run.rounds"),
    ({"run.out": " "}, "run.out"),
    ({"model.name": ""}, "model.name"),
    ({"model.dtype": "fp8"}, "model.dtype"),
    ({"model.batch_size": 0}, "model.batch_size"),
    ({"seeds.problems": -1}, "seeds.problems"),
    ({"seeds.generators": []}, "seeds.generators"),
    ({"seeds.levels": [0]}, "seeds.levels"),
    ({"seeds.levels": []}, "seeds.levels"),
    ({"seeds.file_problems": -2}, "seeds.file_problems"),
    ({"seeds.file_problems": 3}, "seeds.file_problems"),  # no file to draw from
    ({"seeds.hf_datasets": ["not a spec"], "seeds.file_problems": 1}, "seeds.hf_datasets"),
    ({"seeds.hf_datasets": ["a:b:c:d"], "seeds.file_problems": 1}, "seeds.hf_datasets"),
    ({"seeds.hf_datasets": ["openai/gsm8k:main:train"]}, "seeds.file_problems"),  # loaded, never used
    ({"pose.attempts": -1}, "pose.attempts"),
    ({"pose.shots": 0}, "pose.shots"),
    ({"pose.shot_sets": -1}, "pose.shot_sets"),
    ({"vllm.block_size": 40}, "vllm.block_size"),
    ({"vllm.block_size": -32}, "vllm.block_size"),
    ({"vllm.top_p": "nucleus"}, "vllm.top_p"),
    ({"pose.temperature": -0.1}, "pose.temperature"),
    ({"pose.top_p": 0.0}, "pose.top_p"),
    ({"pose.max_new_tokens": 0}, "pose.max_new_tokens"),
    ({"sandbox.timeout": -1.0}, "sandbox.timeout"),
    ({"sandbox.timeout": 0}, "sandbox.timeout"),
    ({"sandbox.timeout": float("inf")}, "sandbox.timeout"),
    ({"sandbox.mode": "none"}, "sandbox.mode"),
    ({"sandbox.libraries": ["not a module"]}, "sandbox.libraries"),
    ({"solve.mode": "both"}, "solve.mode"),
    ({"seeds.problems": 0, "pose.attempts": 4}, "pose.attempts"),  # no shots to pose from
    ({"solve.samples": 1}, "solve.samples"),
    ({"solve.temperature": 0}, "solve.temperature"),
    ({"solve.temperature": float("nan")}, "solve.temperature"),
    ({"solve.top_p": 1.5}, "solve.top_p"),
    ({"solve.max_new_tokens": 0}, "solve.max_new_tokens"),
    ({"solve.batch_problems": -1}, "solve.batch_problems"),
    ({"verify.timeout": 0}, "verify.timeout"),
    ({"verify.workers": -1}, "verify.workers"),
    ({"pair.max_pairs_per_problem": 0}, "pair.max_pairs_per_problem"),
    ({"train.beta": 0}, "train.beta"),
    ({"train.learning_rate": 0}, "train.learning_rate"),
    ({"train.learning_rate": 3.0}, "train.learning_rate"),
    ({"train.epochs": 0}, "train.epochs"),
    ({"train.epochs": -3}, "train.epochs"),
    ({"train.batch_size": 0}, "train.batch_size"),
    ({"train.grad_accum": 0}, "train.grad_accum"),
    ({"train.max_length": 31}, "train.max_length"),
    ({"train.nll_weight": -1}, "train.nll_weight"),
    ({"train.max_steps": 0}, "train.max_steps"),
    ({"train.max_steps": -2}, "train.max_steps"),
    ({"filters.near_threshold": 0}, "filters.near_threshold"),
    ({"filters.band_low": -0.1}, "filters.band_low"),
    ({"filters.band_high": 1.5}, "filters.band_high"),
    ({"filters.max_chars": 0}, "filters.max_chars"),
    ({"filters.min_logprob": -0.01}, "filters.min_logprob"),  # above max_logprob
    ({"filters.max_logprob": 0.5}, "filters.max_logprob"),
    ({"filters.keep_fraction": 0}, "filters.keep_fraction"),
    ({"guard.accumulate": "last:0"}, "guard.accumulate"),
    ({"guard.seed_fraction": 1.5}, "guard.seed_fraction"),
    ({"guard.warn_fraction": 0}, "guard.warn_fraction"),
    ({"eval.heldout_problems": -1}, "eval.heldout_problems"),
    ({"eval.file_limit": 0}, "eval.file_limit"),
    ({"eval.samples": 0}, "eval.samples"),
    ({"eval.max_new_tokens": 0}, "eval.max_new_tokens"),
    ({"eval.heldout_problems": 0, "eval.ood": False}, "eval.enabled"),  # enabled with nothing to evaluate
    ({"seeds.problems": 0, "pose.attempts": 0}, "seeds.problems"),  # no problem source
]


@pytest.mark.parametrize("overrides,field", BAD_VALUES, ids=[f"{f}={list(o.values())[-1]}" for o, f in BAD_VALUES])
def test_bad_value_names_field(overrides, field):
    with pytest.raises(ValueError) as e:
        load_config(None, overrides)
    assert str(e.value).startswith(f"config: {field}: "), str(e.value)
    assert "\n" not in str(e.value)  # one line


def test_edge_values_that_mean_something_pass(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    cfg = load_config(None, {"train.max_steps": -1, "train.nll_weight": 0.0, "pose.attempts": 0, "pose.temperature": 0,
                             "seeds.files": [str(f)], "seeds.file_problems": 1, "eval.heldout_problems": 0,
                             "eval.files": [str(f)], "model.dtype": "auto", "guard.accumulate": "last:2",
                             "seeds.hf_datasets": ["openai/gsm8k:main:train", "gsm8k", "x/y::test"]})
    assert cfg.train.max_steps == -1 and cfg.model.dtype == "auto"
    assert load_config(None, {"eval.enabled": False, "eval.heldout_problems": 0}).eval.heldout_problems == 0


def test_files_need_distinct_stems(tmp_path):
    (tmp_path / "a").mkdir()
    paths = [tmp_path / "q.jsonl", tmp_path / "a" / "q.jsonl"]
    for p in paths:
        p.write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    with pytest.raises(ValueError, match="^config: eval.files: two files share a set name"):
        load_config(None, {"eval.files": [str(p) for p in paths]})
    with pytest.raises(ValueError, match="^config: seeds.files: two files share a stem"):
        load_config(None, {"seeds.files": [str(p) for p in paths], "seeds.file_problems": 2})


# train.* fields with a value rule the trainer (selfplay.train.dpo.train_dpo, which takes the [train] section) relies on
TRAIN_FIELDS = ("batch_size", "beta", "epochs", "grad_accum", "learning_rate", "max_length", "max_steps", "nll_weight")


@pytest.mark.parametrize("field", TRAIN_FIELDS)
@pytest.mark.parametrize("value", [-3, -1, 0, 1, 8, 31, 32, 256])
def test_train_values_the_trainer_rejects_fail_at_config_load(field, value):
    """Whatever train_dpo would reject after a round of generation, Config rejects first (a value
    the config accepts passes train_dpo's own checks); and for train.max_length >= 32 the derived
    max_prompt_length never clashes (was: 256 failed)."""
    import dataclasses

    from selfplay.config import TrainSection
    from selfplay.train.data import prompt_limit
    from selfplay.train.dpo import check_options

    typ = {f.name: f.type for f in dataclasses.fields(TrainSection)}[field]
    v = float(value) if typ in (float, "float") else value
    try:
        cfg = load_config(None, {f"train.{field}": v})
    except ValueError as e:
        assert str(e).startswith(f"config: train.{field}: "), e
        return
    check_options(cfg.train)  # raises where train_dpo would
    if field == "max_length" and value >= 32:
        assert prompt_limit(value) < value


def test_every_non_bool_field_has_a_rule():
    """A new config field needs a meaning check in selfplay/config/checks.py (bools are fully
    checked by their type; nothing else is)."""
    import dataclasses
    from pathlib import Path

    from selfplay.config import Config

    src = (Path(__file__).resolve().parents[2] / "selfplay" / "config" / "checks.py").read_text()
    cfg = Config()
    missing = [f"{sec.name}.{f.name}" for sec in dataclasses.fields(cfg)
               for f in dataclasses.fields(getattr(cfg, sec.name))
               if not isinstance(getattr(getattr(cfg, sec.name), f.name), bool)
               and f'yield "{sec.name}.{f.name}"' not in src]
    assert not missing, f"no rule in selfplay/config/checks.py for {missing}"


def test_moved_fields_say_where_they_went(tmp_path):
    f = tmp_path / "old.toml"
    f.write_text("[pose]\nsandbox = \"bwrap\"\nexec_timeout = 2.0\n")
    with pytest.raises(ValueError, match=r"^config: pose\.sandbox: moved to sandbox\.mode$"):
        load_config(f)
