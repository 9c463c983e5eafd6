"""OUT/run.log sessions (selfplay.core.log): only a directory that holds a run gets a log; lines
logged before OUT becomes one are kept and written once it does."""
import pytest

from selfplay.core import io
from selfplay.core import log as runlog


def test_a_directory_that_holds_no_run_gets_no_log(tmp_path):
    with pytest.raises(ValueError, match="refused"), runlog.session(tmp_path, "export --to X"):
        runlog.log("working")
        raise ValueError("refused")
    assert list(tmp_path.iterdir()) == []
    missing = tmp_path / "missing"
    with runlog.session(missing, "run"):
        runlog.append("a line")
    assert not missing.exists()


def test_lines_before_the_run_exists_are_written_once_it_does(tmp_path):
    with runlog.session(tmp_path, "run"):
        runlog.log("before config.json")
        assert not (tmp_path / runlog.LOG_NAME).exists()
        io.write_json(tmp_path / runlog.RUN_CONFIG, {})  # the command accepted OUT: it is a run now
        runlog.log("after")
    msgs = [e.msg for e in runlog.read(tmp_path)]
    assert msgs[0].startswith("START run (selfplay ") and msgs[1:3] == ["before config.json", "after"]
    assert msgs[3].startswith("END ok after ")
    assert runlog.holds_run(tmp_path) and not runlog.holds_run(tmp_path / "x")


def test_a_run_logs_a_refusal(tmp_path):
    io.write_json(tmp_path / runlog.RUN_CONFIG, {})
    with pytest.raises(ValueError, match="pairs.jsonl"), runlog.session(tmp_path, "stats --round 0"):
        raise ValueError("stats: pairs.jsonl not found")
    events = runlog.read(tmp_path)
    assert [e.level for e in events] == ["INFO", "ERROR", "ERROR"]
    assert events[1].msg == "ValueError: stats: pairs.jsonl not found" and events[2].msg.startswith("END error")
