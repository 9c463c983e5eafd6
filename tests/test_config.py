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

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / name)
    assert cfg.run.rounds >= 2 and cfg.train.enabled and cfg.eval.enabled
    assert cfg.model.backend == "auto"
    assert cfg.guard.enabled == (name == "default.toml")
