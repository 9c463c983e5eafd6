from selfplay.core.metrics import pass_rate
from selfplay.core.records import Problem, Rollout
from selfplay.pair.pairs import make_pairs

P = Problem(id="p1", question="What is 2 + 3?", answer="5", origin="procedural", source="add", level=1)


def ro(i, text, label):
    return Rollout(problem_id="p1", sample_index=i, completion=text, finish_reason="stop", n_tokens=5, seed=i,
                   label=label, reason={"correct": "ok", "incorrect": "wrong", "unknown": "timeout"}[label],
                   extracted=text[-1])


def pairs(rs, k=4):
    return make_pairs(P, rs, max_pairs=k, round_idx=0, seed=0, model="m", sampling={"n": 8})


def test_distinct_pairs_no_unknown_no_identical():
    rs = [ro(0, "so 5", "correct"), ro(1, "so 5", "correct"), ro(2, "thus 5", "correct"),
          ro(3, "so 6", "incorrect"), ro(4, "so 7", "incorrect"), ro(5, "so 9", "unknown"), ro(6, "so 6", "incorrect")]
    out = pairs(rs, k=10)
    keys = {(p.chosen[0]["content"], p.rejected[0]["content"]) for p in out}
    assert len(out) == len(keys) == 4  # 2 distinct correct x 2 distinct incorrect
    assert all(p.chosen[0]["content"] != p.rejected[0]["content"] for p in out)
    assert all("so 9" not in (p.chosen[0]["content"], p.rejected[0]["content"]) for p in out)
    m = out[0].metadata
    assert m["problem_id"] == "p1" and m["gold"] == "5" and m["pass_rate"] == 3 / 6 and m["round"] == 0
    assert out[0].prompt[0]["role"] == "user" and out[0].chosen[0]["role"] == "assistant"


def test_first_pairs_spread_over_paths_and_cap():
    rs = [ro(i, f"good {i} 5", "correct") for i in range(3)] + [ro(3 + i, f"bad {i} 6", "incorrect") for i in range(3)]
    out = pairs(rs, k=3)
    assert len(out) == 3
    assert len({p.chosen[0]["content"] for p in out}) == 3 and len({p.rejected[0]["content"] for p in out}) == 3
    assert pairs(rs, k=3) == out  # deterministic


def test_no_pairs_without_both_labels():
    assert pairs([ro(0, "a 5", "correct"), ro(1, "b 9", "unknown")]) == []
    assert pass_rate([ro(1, "b 9", "unknown").label]) is None
