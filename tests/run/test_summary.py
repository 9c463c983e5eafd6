"""The terminal round summary (selfplay.run.summary): long lists as compact tables, and the
held-out sets by kind, in-distribution and out-of-distribution side by side under a headline
with each kind's paired gain against the start model."""
import re

from selfplay.core import log as runlog
from selfplay.core.metrics import greedy_gain, pooled_greedy_gain
from selfplay.run.summary import count_table, format_summary, kind_headline


def _set(prefix, n, right, kind=None):
    s = {"n": n, "pass@1": len(right) / n, "pass@1_ci": [0.1, 0.9], "k": 0,
         "problems": [{"id": f"{prefix}{i}", "greedy": {"label": "correct" if i in right else "incorrect"}}
                      for i in range(n)]}
    if kind:
        s["kind"] = kind
    return s


REJECTED = {"program_ignores_question": 63, "duplicate": 26, "not_a_question": 19, "no_computation": 18,
            "golds_disagree": 16, "over_target": 12, "question_number_unused": 10, "two_questions": 9,
            "heldout": 4, "no_output": 1}


def _stats(**kw):
    s = {"round": 0, "problems": 72, "by_origin": {"procedural": 32, "posed": 40},
         "posed": {"attempted": 256, "kept": 40, "rejected": REJECTED},
         "samples": 576, "correct": 216, "incorrect": 338, "unknown": 22, "pairs": 190, "problems_with_pairs": 48,
         "verdict_reasons": {"wrong": 278, "ok": 216, "no_answer": 60, "ambiguous": 20, "parse_error": 2}}
    s.update(kw)
    return s


def test_a_long_list_is_a_table_largest_first():
    text = format_summary(_stats())
    lines = text.splitlines()
    assert lines[1] == ("problems: 72 (32 procedural, 40 posed); posed: kept 40 of 256 attempted; "
                        "rejected (10 kinds, 178 in all):")
    table = lines[2:6]
    assert [line.split()[:2] for line in table] == [["program_ignores_question", "63"], ["no_computation", "18"],
                                                    ["question_number_unused", "10"], ["no_output", "1"]]
    assert len(table[0].split()) == 6  # three name-count cells a row
    # columns line up: every row's second cell starts at the same place
    assert len({line.index(line.split()[2]) for line in table[:3]}) == 1
    assert "verdict reasons: 278 wrong, 216 ok, 60 no_answer, 20 ambiguous, 2 parse_error" in lines  # short: inline
    assert "{" not in text and all(len(line) <= runlog.MAX_LINE for line in lines)


def test_a_short_list_stays_on_its_line():
    text = format_summary(_stats(posed={"attempted": 12, "kept": 1, "rejected": {"no_program": 3, "not_a_question": 8}}))
    assert text.splitlines()[1] == ("problems: 72 (32 procedural, 40 posed); posed: kept 1 of 12 attempted "
                                    "(rejected: 3 no_program, 8 not_a_question)")


def test_count_table_leaves_out_zero_counts():
    assert count_table({"a": 0, "b": 2, "c": 5}, columns=2) == ["  c 5   b 2"]
    assert count_table({}) == []


def test_in_and_out_of_distribution_side_by_side_with_a_headline():
    start = {"sets": {"heldout_procedural": _set("h", 50, set(range(15))),
                      "ood_arith": _set("a", 20, set(range(5))), "svamp": _set("s", 30, set(range(6)))}}
    after = {"sets": {"heldout_procedural": _set("h", 50, set(range(26))),
                      "ood_arith": _set("a", 20, set(range(6))), "svamp": _set("s", 30, set(range(3, 10)))}}
    lines = format_summary(_stats(eval=after), start).splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("held-out"))
    head = lines[i]
    # ID: 11 newly right of 50 -> +22.0 pts; OOD pooled: a 6-5 = +1, svamp 7-6 = +1 (3 lost, 4 gained) of 50
    assert re.search(r"ID \+22\.0 pts \[\+\d+\.\d, \+\d+\.\d\] \(heldout_procedural; n 50, McNemar p 0\.000977\)", head)
    assert re.search(r"OOD \+4\.0 pts \[-?\+?\d+\.\d, \+\d+\.\d\] \(ood_arith, svamp; n 50, McNemar p ", head), head
    assert head.index("ID ") < head.index(" | OOD ")
    labels, cols = lines[i + 1], lines[i + 2]
    assert labels.strip().startswith("ID (in-distribution)") and "| OOD (out-of-distribution)" in labels
    assert cols.count("pass@1 [95% CI]") == 2  # both halves have their columns
    rows = lines[i + 3:]
    assert rows[0].split("|")[0].split()[:3] == ["heldout_procedural", "50", "52.0%"]
    assert rows[0].split("|")[1].split()[:3] == ["ood_arith", "20", "30.0%"]
    assert rows[1].split("|")[1].split()[:3] == ["svamp", "30", "23.3%"] and not rows[1].split("|")[0].strip()
    assert "+22.0 [" in rows[0].split("|")[0] and "+5.0 [" in rows[0].split("|")[1]
    # every "|" at the same column: the halves line up
    assert len({line.index("|") for line in lines[i + 1:]}) == 1


def test_a_set_is_placed_by_the_kind_its_record_carries():
    ev = {"sets": {"heldout_procedural": _set("h", 10, {1}), "my_file": _set("f", 10, {1, 2}, kind="in-distribution")}}
    head = kind_headline(ev["sets"], {})
    assert head == "ID pass@1 15.0% (heldout_procedural, my_file; n 20) | OOD none evaluated"
    lines = format_summary(_stats(eval=ev)).splitlines()
    assert "no start evaluation to compare" in lines[-5]
    assert lines[-1].strip().startswith("my_file") and lines[-1].strip().endswith("-")


def test_pooled_gain_of_one_set_is_that_set_s_gain():
    before, after = _set("h", 40, set(range(10))), _set("h", 40, set(range(5, 22)))
    one = pooled_greedy_gain([("heldout_procedural", before, after)])
    g = greedy_gain(before, after)
    assert {k: one[k] for k in g} == g and one["sets"] == ["heldout_procedural"]
    # two sets with the same ids are told apart by name: 80 problems
    two = pooled_greedy_gain([("a", before, after), ("b", before, after)])
    assert two["n"] == 80 and two["gained"] == 2 * g["gained"] and two["gain"] == g["gain"]
    assert pooled_greedy_gain([("a", before, {"problems": []})])["n"] == 0


def test_the_training_set_line_says_how_many_pairs_training_saw():
    from selfplay.run.summary import training_set_text

    mix = {"mix": {"per_round": {"0": 100, "1": 50}}, "n_pairs_in": 150, "n_train": 150}
    every = {**mix, "pairs_seen": 150, "pair_slots": 150}
    assert training_set_text(1, every) == "trained 150 = this round 50 + earlier 100 (rounds 0-1); every pair seen (1 epoch)"
    capped = {**mix, "pairs_seen": 96, "pair_slots": 96}
    assert training_set_text(1, capped).endswith("; training saw 96 of 150 pairs (96 pair slots, train.max_steps)")
    # a run made before pairs_seen was recorded: steps x batch x grad_accum
    old = {**mix, "steps": 12, "config": {"batch_size": 2, "grad_accum": 4}}
    assert training_set_text(1, old).endswith("training saw 96 of 150 pairs (96 pair slots, train.max_steps)")
    assert training_set_text(1, {**mix, "steps": 40, "config": {"batch_size": 2, "grad_accum": 4}}).endswith(
        "every pair seen (2.13 epochs)")
    assert training_set_text(0, {"n_train": 5}) == "trained 5"


def test_the_train_line_says_where_the_reference_log_probs_came_from():
    from selfplay.run.summary import reference_text

    assert reference_text({"ref_logps": {"engine": 103, "forward": 25, "engine_agreed": True}}) == (
        "; reference log-probs: engine 103, forward 25")
    assert reference_text({"ref_logps": {"engine": 0, "forward": 128, "engine_agreed": False}}).endswith(
        "forward 128 (the engine's failed the check)")
    assert reference_text({"ref_logps": {"engine": 0, "forward": 16}}) == "; reference log-probs: engine 0, forward 16"
    assert reference_text({"n_train": 5}) == ""  # stats written before the engine's log-probs
