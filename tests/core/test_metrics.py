import math
import statistics

import pytest

from selfplay.core.metrics import (
    bootstrap_ci,
    maj_at_k,
    majority_vote,
    pass_at_k,
    pass_counts,
    pass_rate,
    pass_rates,
    summarize,
    wilson_interval,
)
from selfplay.core.records import Rollout
from selfplay_verifiers import answer_key


@pytest.mark.parametrize("k,expected", [(1, 0.4), (2, 0.7), (3, 0.9), (4, 1.0), (5, 1.0)])
def test_pass_at_k_n5_c2_hand_values(k, expected):
    # 1 - C(3,k)/C(5,k): C(3,1)/C(5,1)=3/5, C(3,2)/C(5,2)=3/10, C(3,3)/C(5,3)=1/10, then 0
    assert pass_at_k(5, 2, k) == pytest.approx(expected)


def test_pass_at_k_edges_and_errors():
    assert pass_at_k(8, 0, 8) == 0.0
    assert pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - math.comb(7, 4) / math.comb(10, 4))
    for args in [(5, 6, 1), (5, 2, 6), (5, 2, 0), (0, 0, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*args)


@pytest.mark.parametrize("x,n,lo,hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634),
                                        (8, 10, 0.4902, 0.9433), (10, 10, 0.7225, 1.0)])
def test_wilson_known_values(x, n, lo, hi):
    a, b = wilson_interval(x, n)
    assert a == pytest.approx(lo, abs=1e-4) and b == pytest.approx(hi, abs=1e-4)


def test_wilson_empty_and_invalid():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_bootstrap_is_seeded_and_brackets_mean():
    vals = [((i * 7919) % 101) / 101 for i in range(30)]  # distinct values, so quantiles move with the seed
    a = bootstrap_ci(vals, seed=3)
    assert a == bootstrap_ci(vals, seed=3)
    assert a != bootstrap_ci(vals, seed=4)
    assert a[0] < sum(vals) / len(vals) < a[1]
    assert bootstrap_ci([0.5, 0.5]) == (0.5, 0.5)


# maj@k votes with selfplay_verifiers.answer_key (tests/pair/test_one_key.py has the table); since it is the
# verifier's normal form, "\\frac{1}{2}" is now the vote of "0.5" and "X = 4." the vote of "4".
@pytest.mark.parametrize("raw,norm", [("18.0", "18"), ("$18$", "18"), ("1,000", "1000"), (" 0.50 ", "0.5"),
                                      ("\\boxed{7}", "7"), ("+3", "3"), ("-0", "0"), ("\\frac{1}{2}", "0.5"),
                                      ("X = 4.", "4"), ("", None), (None, None)])
def test_answer_key_of_the_vote(raw, norm):
    assert answer_key(raw) == norm
    if norm is not None:
        assert majority_vote([raw], ["correct"])["answer"] == norm


def test_pass_rate_counts_verdicts_only():
    C, I, U = "correct", "incorrect", "unknown"
    assert pass_counts([C, I, U, None, C]) == (2, 3)
    assert pass_rate([C, I, U, None, C]) == 2 / 3
    assert pass_rate([U, None]) is None and pass_rate([]) is None

    def ro(pid, label):
        return Rollout(problem_id=pid, sample_index=0, completion="", finish_reason="stop", n_tokens=1, seed=0,
                       label=label)

    rates = pass_rates([ro("a", C), ro("b", U), ro("a", I), ro("a", U)])
    assert rates == {"a": 0.5, "b": None} and list(rates) == ["a", "b"]


def test_maj_at_k_majority_and_tie_break():
    C, I = "correct", "incorrect"
    # clear majority of a wrong answer
    assert majority_vote(["5", "6", "6", None], [C, I, I, "unknown"]) == {"answer": "6", "votes": 2, "correct": False}
    # tie 2-2: the answer seen first wins, whichever order the labels come in
    assert maj_at_k(["7", "8", "8", "7.0"], [C, I, I, C]) is True
    assert maj_at_k(["8", "7", "7", "8"], [I, C, C, I]) is False
    # only the first k samples vote
    assert maj_at_k(["1", "2", "2", "2"], [C, I, I, I], k=1) is True
    # nobody extracted an answer
    assert majority_vote([None, ""], ["unknown", "unknown"]) == {"answer": None, "votes": 0, "correct": False}


def _rec(greedy, labels, answers):
    return {"greedy": {"label": greedy}, "samples": [{"label": l, "extracted": a} for l, a in zip(labels, answers)]}


def test_summarize():
    C, I = "correct", "incorrect"
    recs = [_rec(C, [C, C, I, I], ["1", "1", "2", "2"]),  # tie -> "1" (first) correct
            _rec(I, [I, I, I, C], ["3", "3", "3", "4"]),
            _rec("unknown", [I, I, I, I], ["5", "6", "7", "8"]),
            _rec(C, [C, C, C, C], ["9", "9", "9", "9"])]
    s = summarize(recs)
    assert s["n"] == 4 and s["k"] == 4
    assert s["pass@1"] == 0.5 and s["greedy_unknown"] == 1
    assert s["pass@1_ci"] == pytest.approx(list(wilson_interval(2, 4)))
    assert s["maj@k"] == 0.5
    assert s["pass@k"] == 0.75  # pass@4 with n=4 is "any correct"
    assert s["pass@1_sampled"] == pytest.approx((0.5 + 0.25 + 0 + 1) / 4)
    assert s["pass@k_curve"]["1"] == pytest.approx(s["pass@1_sampled"])
    assert s["pass@k_ci"][0] <= s["pass@k"] <= s["pass@k_ci"][1]
    # greedy only
    g = summarize([{"greedy": {"label": C}, "samples": []}])
    assert g["pass@1"] == 1.0 and g["maj@k"] is None


def test_mcnemar_exact_known_values():
    from selfplay.core.metrics import mcnemar_exact_p

    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == 1.0
    # 0 lost, 6 gained: 2 * (1/2)^6
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)
    # 1 vs 9: 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(9, 1) == mcnemar_exact_p(1, 9)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def test_paired_gain_counts_only_shared_ids_and_brackets_the_gain():
    from selfplay.core.metrics import paired_gain

    before = {f"p{i}": i < 30 for i in range(100)}  # 30% right
    after = {f"p{i}": i < 30 or 50 <= i < 65 for i in range(100)}  # + 15 new, none lost
    after["extra"] = True  # not in `before`: ignored
    g = paired_gain(before, after)
    assert g["n"] == 100 and g["gained"] == 15 and g["lost"] == 0
    assert g["gain"] == pytest.approx(0.15)
    lo, hi = g["gain_ci"]
    assert 0.0 < lo < 0.15 < hi < 0.3
    assert g["mcnemar_p"] < 0.001
    flat = paired_gain(before, dict(before))
    assert flat["gain"] == 0 and flat["gain_ci"] == [0.0, 0.0] and flat["mcnemar_p"] == 1.0
    assert paired_gain({}, after)["gain"] is None


def test_greedy_correct_by_id_reads_eval_sets():
    from selfplay.core.metrics import greedy_correct_by_id

    s = {"problems": [{"id": "a", "greedy": {"label": "correct"}}, {"id": "b", "greedy": {"label": "unknown"}},
                      {"id": "c", "greedy": {"label": "incorrect"}}]}
    assert greedy_correct_by_id(s) == {"a": True, "b": False, "c": False}


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1000])
def test_wilson_always_holds_its_proportion(n):
    """0 of n and n of n sit exactly on their bounds (the formula left 5.6e-17 for 0 of 3, which
    put the proportion outside its own interval and broke the report's error bars)."""
    for x in range(n + 1):
        lo, hi = wilson_interval(x, n)
        assert 0.0 <= lo <= x / n <= hi <= 1.0
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_the_heldout_plot_draws_a_set_at_zero(tmp_path):
    """A set with none right (its recorded interval 1e-17 above 0, as runs before the fix wrote)."""
    pytest.importorskip("matplotlib")
    from selfplay.core import io
    from selfplay.inspect.plots import plot_heldout
    from selfplay.inspect.report import load_run

    out = tmp_path / "run"
    rec = {"n": 3, "pass@1": 0.0, "pass@1_ci": [5.551115123125783e-17, 0.56], "k": 1, "problems": []}
    io.write_json(out / "eval_base.json", {"sets": {"svamp": rec}})
    io.write_json(out / "round_0" / "stats.json", {"problems": 1, "samples": 1, "pairs": 0})
    io.write_json(out / "round_0" / "eval.json", {"sets": {"svamp": rec}})
    assert plot_heldout(load_run(out), out / "heldout.png")
    assert (out / "heldout.png").stat().st_size > 0


@pytest.mark.parametrize("q,df,table", [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182),
                                        (0.975, 9, 2.262), (0.975, 29, 2.045), (0.995, 4, 4.604),
                                        (0.95, 6, 1.943)])
def test_t_quantile_matches_the_printed_tables(q, df, table):
    from selfplay.core.metrics import t_quantile
    assert t_quantile(q, df) == pytest.approx(table, abs=1e-3)  # the three-decimal tables of any statistics text


def test_t_quantile_refuses_what_it_cannot_give():
    from selfplay.core.metrics import t_quantile
    for q, df in [(0.5, 3), (1.0, 3), (0.975, 0)]:
        with pytest.raises(ValueError, match="t_quantile needs"):
            t_quantile(q, df)


def test_across_seeds_treats_each_seed_as_one_replicate():
    from selfplay.core.metrics import across_seeds, t_quantile
    a = across_seeds([-0.037, -0.030, -0.027, -0.037])
    assert a["n"] == 4 and a["below"] == 4 and a["above"] == 0
    assert a["signflip_p"] == pytest.approx(2 / 16)  # all four the same sign: 2 of the 16 sign patterns
    half = t_quantile(0.975, 3) * statistics.stdev([-0.037, -0.030, -0.027, -0.037]) / 2
    assert a["ci"] == pytest.approx([a["mean"] - half, a["mean"] + half])
    mixed = across_seeds([0.02, -0.01, 0.03])  # |mean| 0.0133 or more: +++, ---, +-+ and -+- (4 of 8)
    assert mixed["signflip_p"] == pytest.approx(4 / 8)
    assert mixed["ci"][0] < 0 < mixed["ci"][1]
    one = across_seeds([0.05])
    assert one["ci"] is None and one["signflip_p"] is None and one["above"] == 1
    with pytest.raises(ValueError, match="at least one gain"):
        across_seeds([])
    with pytest.raises(ValueError, match="21 seeds"):
        across_seeds([0.01] * 21)
