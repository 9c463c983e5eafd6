import pytest

from selfplay.core import io
from selfplay.core.records import Pair, Problem, Rollout


def test_records_roundtrip():
    p = Problem(id="a", question="q?", answer="1", origin="posed", source="m", program="print(1)", meta={"x": 1})
    assert Problem.from_dict(p.to_dict()) == p
    r = Rollout(problem_id="a", sample_index=2, completion="c", finish_reason="stop", n_tokens=3, seed=9,
                label="correct", reason="ok", extracted="1", verify_seconds=0.1, logprob_mean=-0.4)
    assert Rollout.from_dict(r.to_dict()) == r
    pr = Pair(prompt=[{"role": "user", "content": "q"}], chosen=[{"role": "assistant", "content": "a"}],
              rejected=[{"role": "assistant", "content": "b"}], metadata={"k": 1})
    assert Pair.from_dict(pr.to_dict()) == pr
    with pytest.raises(ValueError, match="origin"):
        Problem(id="a", question="q", answer="1", origin="martian", source="")


def test_atomic_write_and_torn_tail_repair(tmp_path):
    f = tmp_path / "r.jsonl"
    io.write_jsonl(f, [{"a": 1}, {"a": 2}])
    assert [d["a"] for d in io.iter_jsonl(f)] == [1, 2]
    assert not list(tmp_path.glob(".*tmp*"))
    with open(f, "ab") as fh:
        fh.write(b'{"a": 3')  # a crash in the middle of a line
    with pytest.raises(ValueError, match="r.jsonl:3"):
        list(io.iter_jsonl(f))
    assert [d["a"] for d in io.iter_jsonl(f, repair=True)] == [1, 2]
    assert f.read_bytes().endswith(b"\n")
    io.append_jsonl(f, [{"a": 4}])
    assert [d["a"] for d in io.iter_jsonl(f)] == [1, 2, 4]


def test_read_records_names_missing_field(tmp_path):
    f = tmp_path / "p.jsonl"
    io.write_jsonl(f, [{"id": "x", "question": "q"}])
    with pytest.raises(ValueError, match="missing field 'answer'"):
        io.read_records(f, Problem.from_dict)
