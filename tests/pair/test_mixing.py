"""Training-set mixing: exact counts for given inputs, accumulate policies, determinism."""
from __future__ import annotations

import pytest

from selfplay.core.records import Pair
from selfplay.pair.mixing import build_training_set, mix_counts, rounds_to_use


def mk(origin: str, rnd: int, i: int) -> Pair:
    return Pair(prompt=[{"role": "user", "content": f"q{rnd}-{i}"}],
                chosen=[{"role": "assistant", "content": "c"}],
                rejected=[{"role": "assistant", "content": "r"}],
                metadata={"problem_id": f"{origin}-r{rnd}-{i}", "origin": origin, "round": rnd})


def rounds() -> list[list[Pair]]:
    r0 = ([mk("procedural", 0, i) for i in range(4)] + [mk("file", 0, i) for i in range(2)]
          + [mk("posed", 0, i) for i in range(2)])
    r1 = [mk("hf", 1, i) for i in range(4)] + [mk("posed", 1, i) for i in range(8)]
    return [r0, r1]


def key(p: Pair) -> str:
    return p.metadata["problem_id"]


@pytest.mark.parametrize("n_seed, n_syn, frac, cap, expected", [
    (10, 10, 0.5, None, (10, 10)),
    (10, 10, 0.75, None, (10, 3)),     # synthetic cut to round(10 / 3)
    (10, 10, 0.25, None, (10, 10)),    # a floor: seed pairs are never cut
    (100, 10, 0.5, None, (100, 10)),
    (10, 100, 0.5, None, (10, 10)),    # synthetic capped so seed share >= 0.5
    (10, 100, 0.8, None, (10, 2)),
    (100, 10, 0.75, 22, (20, 2)),
    (10, 10, 0.5, 6, (3, 3)),
    (0, 10, 0.5, None, (0, 10)),       # one side empty: use what exists
    (7, 0, 0.5, 5, (5, 0)),
    (7, 9, 0.0, None, (7, 9)),         # no guard: everything
    (7, 9, 1.0, None, (7, 0)),
])
def test_mix_counts(n_seed, n_syn, frac, cap, expected):
    assert mix_counts(n_seed, n_syn, frac, cap) == expected


def test_rounds_to_use_policies():
    assert rounds_to_use(3, 5, "all") == [0, 1, 2, 3]
    assert rounds_to_use(3, 5, "current") == [3]
    assert rounds_to_use(3, 5, "last:2") == [2, 3]
    assert rounds_to_use(1, 5, "last:9") == [0, 1]
    for bad in ("last:0", "last:x", "some", ""):
        with pytest.raises(ValueError, match="accumulate"):
            rounds_to_use(1, 5, bad)
    with pytest.raises(ValueError, match="current_round"):
        rounds_to_use(5, 5, "all")


def test_build_all_rounds_balanced_ratio():
    pairs, info = build_training_set(rounds(), 1, seed_fraction=0.5, accumulate="all")
    assert len(pairs) == 20 and info["total"] == 20  # 10 seed-derived, 10 posed: all used
    assert info["available"] == {"seed": 10, "synthetic": 10}
    assert info["per_origin"] == {"file": 2, "hf": 4, "posed": 10, "procedural": 4}
    assert info["per_round"] == {"0": 8, "1": 12}
    assert info["achieved_seed_fraction"] == 0.5 and info["ratio_met"] is True
    assert [p.metadata["round"] for p in pairs] == [0] * 8 + [1] * 12


def test_build_subsamples_larger_side_exactly():
    pairs, info = build_training_set(rounds(), 1, seed_fraction=0.75)
    assert info["selected"] == {"seed": 10, "synthetic": 3}
    assert sum(p.metadata["origin"] == "posed" for p in pairs) == 3
    assert info["achieved_seed_fraction"] == pytest.approx(10 / 13)
    all_ids = {key(p) for r in rounds() for p in r}
    assert {key(p) for p in pairs} <= all_ids and len({key(p) for p in pairs}) == 13
    rounds_in_order = [p.metadata["round"] for p in pairs]
    assert rounds_in_order == sorted(rounds_in_order)


def test_build_accumulate_current_and_last():
    pairs, info = build_training_set(rounds(), 1, accumulate="current")
    assert info["rounds_used"] == [1] and info["selected"] == {"seed": 4, "synthetic": 4}
    assert {p.metadata["round"] for p in pairs} == {1} and info["per_round"] == {"1": 8}
    same, _ = build_training_set(rounds(), 1, accumulate="last:1")
    assert [key(p) for p in same] == [key(p) for p in pairs]
    pairs0, info0 = build_training_set(rounds(), 0, accumulate="all")
    assert info0["rounds_used"] == [0] and info0["selected"] == {"seed": 6, "synthetic": 2}


def test_build_max_pairs_and_one_sided():
    pairs, info = build_training_set(rounds(), 1, max_pairs=6)
    assert len(pairs) == 6 and info["selected"] == {"seed": 3, "synthetic": 3}
    only_seed = [[mk("procedural", 0, i) for i in range(5)]]
    pairs, info = build_training_set(only_seed, 0, seed_fraction=0.5)
    assert len(pairs) == 5 and info["ratio_met"] is True  # the floor holds trivially
    assert info["achieved_seed_fraction"] == 1.0
    pairs, info = build_training_set(rounds(), 1, seed_fraction=0.0)
    assert len(pairs) == 20 and info["ratio_met"] is True
    only_posed = [[mk("posed", 0, i) for i in range(3)]]
    pairs, info = build_training_set(only_posed, 0, seed_fraction=0.5)
    assert len(pairs) == 3 and info["ratio_met"] is False
    pairs, info = build_training_set([[]], 0)
    assert pairs == [] and info["achieved_seed_fraction"] is None


def test_build_is_deterministic_given_seed():
    big = [[mk("procedural", 0, i) for i in range(5)] + [mk("posed", 0, i) for i in range(50)]]
    a, _ = build_training_set(big, 0, seed=7)
    b, _ = build_training_set(big, 0, seed=7)
    c, _ = build_training_set(big, 0, seed=8)
    assert [key(p) for p in a] == [key(p) for p in b]
    assert [key(p) for p in a] != [key(p) for p in c]
    assert sum(p.metadata["origin"] == "posed" for p in a) == 5  # capped at the seed count


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seed_fraction"):
        build_training_set(rounds(), 1, seed_fraction=1.5)
    with pytest.raises(ValueError, match="max_pairs"):
        build_training_set(rounds(), 1, max_pairs=-1)
    with pytest.raises(ValueError, match="origin"):
        build_training_set([[mk("posed", 0, 0), Pair([], [], [], {"origin": "weird"})]], 0)
    with pytest.raises(ValueError, match="current_round"):
        build_training_set(rounds(), 2)
