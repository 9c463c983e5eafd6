"""One real round on the real embedded model with a tiny budget: pose (real sandbox), solve,
verify (real verifier), pair (step pairs on), and checks that the pairs load with `datasets`,
re-check independently with math-verify, and that no chosen holds a false arithmetic statement
or an unevaluated answer by a second, independently written checker (tests/independent_arith.py)."""
import shutil

import pytest

from selfplay.config import load_config
from selfplay.core import io
from selfplay.run.loop import run_loop

pytestmark = [pytest.mark.model, pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")]

TOML = """
[run]
seed = 1
out = "{out}"
[seeds]
problems = 6
generators = ["add", "word_add"]
[pose]
attempts = 3
max_new_tokens = 96
[solve]
samples = 6
max_new_tokens = 64
batch_problems = 6
[pair]
step_pairs = true
[train]
enabled = false
[eval]
enabled = false
"""


def test_real_round_on_embedded_model(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(TOML.format(out=tmp_path / "out"))
    [stats] = run_loop(load_config(f))
    rd = tmp_path / "out" / "round_0"
    assert stats["samples"] == 6 * stats["problems"] and stats["posed"]["attempted"] == 3
    assert stats["correct"] + stats["incorrect"] + stats["unknown"] == stats["samples"]
    rollouts = list(io.iter_jsonl(rd / "rollouts.jsonl"))
    assert all(r["label"] in ("correct", "incorrect", "unknown") for r in rollouts)
    assert len({r["completion"] for r in rollouts}) > len(rollouts) // 2  # real sampling, not one text
    pairs = list(io.iter_jsonl(rd / "pairs.jsonl"))
    if not pairs:
        pytest.skip(f"the model made no mixed problem in this tiny budget: {stats}")
    import datasets
    from math_verify import parse, verify

    ds = datasets.load_dataset("json", data_files=str(rd / "pairs.jsonl"), split="train")
    assert len(ds) == len(pairs) and set(ds.column_names) >= {"prompt", "chosen", "rejected"}
    from tests.independent_arith import false_statements, unevaluated_answer

    filters = io.read_json(rd / "filters.json")
    assert filters["steps_info"]["checked"] >= 1  # pairs exist, so correct paths were step-checked
    assert set(filters["steps"]) == {"false_step", "unevaluated_answer", "no_boxed"}
    for pr in pairs:
        md = pr["metadata"]
        if md["mode"] == "cot":
            assert false_statements(pr["chosen"][0]["content"]) == [], pr["chosen"][0]["content"]
            assert not unevaluated_answer(md["chosen_extracted"], md["gold"]), md["chosen_extracted"]
    for pr in pairs:  # independent re-check: chosen equals gold, rejected differs
        gold = parse(f"${pr['metadata']['gold']}$")
        assert verify(gold, parse(f"${pr['metadata']['chosen_extracted']}$"))
        rej = pr["metadata"]["rejected_extracted"]
        assert rej is None or not verify(gold, parse(f"${rej}$"))
        assert pr["chosen"][0]["content"] != pr["rejected"][0]["content"]
