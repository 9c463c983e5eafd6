"""train.report_to: checked at load, passed from the config through the loop to TRL; tensorboard
writes its event files beside the round's model (TRL's default place is deleted after training)."""
import pytest

import selfplay.config.checks as checks
from selfplay.config import load_config
from selfplay.core import io
from tests.conftest import cfg_file
from tests.conftest import pair_dict as _pair
from tests.conftest import write_pairs as _write


def test_report_to_is_checked_at_load(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nreport_to = "mlflow"\n')
    with pytest.raises(ValueError, match="config: train.report_to: must be one of none, tensorboard, trackio, wandb"):
        load_config(f)
    f.write_text('[train]\nreport_to = "wandb"\n')
    monkeypatch.setattr(checks, "_installed", lambda module: False)
    with pytest.raises(ValueError, match="config: train.report_to: wandb is not installed: pip install wandb"):
        load_config(f)
    assert load_config(None).train.report_to == "none"


def test_the_loop_passes_report_to_and_the_log_dir(tmp_path, monkeypatch):
    import selfplay.train.launch as launch
    from selfplay.run.loop import run_loop
    from selfplay.train.data import NoUsablePairs

    seen = []

    def fake_train(files, base, out_dir, cfg, **kw):
        seen.append((cfg.report_to, kw["logging_dir"]))
        raise NoUsablePairs("stop here")

    monkeypatch.setattr(launch, "train_dpo", fake_train)
    f = cfg_file(tmp_path, tmp_path / "o", train="true")
    f.write_text(f.read_text().replace("[train]\n", '[train]\nreport_to = "tensorboard"\n'))
    run_loop(load_config(f))
    assert seen == [("tensorboard", str(tmp_path / "o" / "round_0" / "tensorboard"))]


@pytest.mark.model
def test_tensorboard_gets_the_training_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from selfplay.config import TrainSection
    from selfplay.train.dpo import train_dpo

    f = _write(tmp_path / "pairs.jsonl", [_pair(2, 3, bare=True), _pair(4, 5, bare=True)])
    cfg = TrainSection(max_steps=1, batch_size=2, grad_accum=1, max_length=128, report_to="tensorboard")
    stats = train_dpo([f], "default", tmp_path / "round_0" / "model", cfg, max_prompt_length=64, threads=1)
    assert stats["steps"] == 1
    runs = list((tmp_path / "round_0" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(runs) == 1, list((tmp_path / "round_0").rglob("*"))
    acc = EventAccumulator(str(runs[0].parent))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert len(loss) == 1 and loss[0].step == 1 and loss[0].value == pytest.approx(stats["history"][0]["loss"])
    assert "train/rewards/accuracies" in acc.Tags()["scalars"]
    assert io.read_json(tmp_path / "round_0" / "train_stats.json")["config"]["report_to"] == "tensorboard"
