import orjson

from selfplay.inspect.report import load_run, pass_rates, write_report


def _w(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(obj))


def _eval(p1, n=50):
    return {"model": "m", "sets": {
        "gsm8k_test": {"n": n, "pass@1": p1, "pass@1_ci": [max(0, p1 - 0.1), min(1, p1 + 0.1)], "k": 8,
                       "maj@k": p1 + 0.05, "maj@k_ci": [p1 - 0.05, p1 + 0.15], "pass@k": p1 + 0.2,
                       "pass@k_ci": [p1 + 0.1, p1 + 0.3]},
        "heldout_procedural": {"n": n, "pass@1": p1 + 0.2, "pass@1_ci": [p1 + 0.1, p1 + 0.3], "k": 0}}}


def make_run(tmp_path, rounds=3):
    out = tmp_path / "run"
    _w(out / "eval_base.json", _eval(0.10))
    for k in range(rounds):
        d = out / f"round_{k}"
        _w(d / "stats.json", {"problems": 40, "samples": 320, "correct": 100 + 10 * k, "incorrect": 200,
                              "unknown": 20 - k, "pct_correct": 33.3 + k, "pairs": 60 + k,
                              "verdict_reasons": {"ok": 100 + 10 * k, "wrong": 200, "no_answer": 20 - k,
                                                  "timeout": k},
                              "posed": {"attempted": 16, "kept": 5, "rejected": {"no_program": 8, "dup": 3}}})
        _w(d / "train_stats.json", {"n_pairs_in": 60, "n_dropped_too_long": 2, "n_dropped_identical": 1,
                                    "n_train": 57, "steps": 7, "train_loss": 0.69 - 0.05 * k,
                                    "rewards/accuracies": 0.6 + 0.1 * k, "rewards/margins": 0.1 * (k + 1)})
        _w(d / "eval.json", _eval(0.12 + 0.03 * k))
        _w(d / "contamination.json", {"clean": k != 1, "text_leaks": int(k == 1), "id_leaks": 0})
        lines = []
        for i in range(40):
            for j in range(8):
                label = "correct" if j < (i + k) % 9 else ("unknown" if j == 7 else "incorrect")
                lines.append(orjson.dumps({"problem_id": f"p{i}", "sample_index": j, "label": label}))
        (d / "rollouts.jsonl").write_bytes(b"\n".join(lines) + b"\n{torn")
    return out


def test_report_on_synthetic_run(tmp_path):
    out = make_run(tmp_path, rounds=3)
    path = write_report(out)
    assert path == out / "report.md"
    md = path.read_text()
    table = md.split("## Per round\n\n")[1].split("\n\n")[1].splitlines()
    assert table[0].startswith("| round |") and len(table) == 2 + 1 + 3  # header, rule, start, 3 rounds
    assert table[2].startswith("| start |") and "10.0% [0.0, 20.0]" in table[2]
    assert table[3].startswith("| 0 |") and "33.3%" in table[3] and "| 57 |" in table[3]
    assert "LEAK 1+0" in table[4] and "clean" in table[5]
    assert "## Held-out detail" in md and "## Posed problems" in md
    for png in ("heldout.png", "pass_rates.png", "verdict_reasons.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({png})" in md


def test_pass_rates_counts_labelled_only(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(b"\n".join(orjson.dumps(x) for x in [
        {"problem_id": "a", "label": "correct"}, {"problem_id": "a", "label": "incorrect"},
        {"problem_id": "a", "label": None}, {"problem_id": "b", "label": "unknown"}]) + b"\n")
    rates, k = pass_rates(p)
    assert sorted(rates) == [0.5] and k == 2  # b has only an unknown label: no pass rate


def test_report_tolerates_missing_and_broken_files(tmp_path):
    out = tmp_path / "run"
    (out / "round_0").mkdir(parents=True)
    (out / "round_1").mkdir()
    _w(out / "round_1" / "stats.json", {"problems": 3, "samples": 24, "pct_correct": 12.5, "pairs": 0})
    (out / "round_1" / "train_stats.json").write_text("{not json")
    path = write_report(out)
    md = path.read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| round")]
    assert len(rows) == 2  # no start eval, two rounds
    assert "12.5%" in rows[1] and "train_stats.json" in md  # the unreadable file is named
    assert not (out / "heldout.png").exists()  # nothing to plot
    assert load_run(out)["rounds"][0]["stats"] is None


def test_report_shows_filters_diversity_and_warnings(tmp_path):
    from selfplay.core.io import write_json
    from selfplay.inspect.report import write_report

    for k, d1 in ((0, 0.5), (1, 0.2)):
        write_json(tmp_path / f"round_{k}" / "stats.json", {
            "round": k, "problems": 4, "samples": 16, "pct_correct": 25.0, "pairs": 3,
            "filters": {"hygiene": {"unfinished": 2, "no_answer": 0}, "perplexity_info": {"no_logprob": 1}},
            "diversity": {"distinct_problems": 4, "distinct_1": d1, "answer_entropy": 1.5},
            "warnings": ["distinct_1 fell to 0.2 (< 0.7 x round 0's 0.5)"] if k else []})
    md = write_report(tmp_path).read_text()
    assert "## Filters (drops by reason)" in md and "| 0 | hygiene | unfinished: 2 | - | paths: cut off, " in md
    assert "perplexity_info" not in md
    assert "## Diversity (collapse guard)" in md and "0.200" in md
    assert "## Collapse warnings" in md and "round 1: distinct_1 fell" in md


def test_report_shows_paired_gain_against_start(tmp_path):
    out = make_run(tmp_path, rounds=2)

    def problems(right):
        return [{"id": f"h{i}", "greedy": {"label": "correct" if i in right else "incorrect"}} for i in range(40)]

    base = _eval(0.10)
    base["sets"]["heldout_procedural"]["problems"] = problems(set(range(10)))
    _w(out / "eval_base.json", base)
    ev = _eval(0.3)
    ev["sets"]["heldout_procedural"]["problems"] = problems(set(range(2, 20)))  # +10 new, 2 lost
    _w(out / "round_1" / "eval.json", ev)
    md = write_report(out).read_text()
    section = md.split("## Held-out gain against the starting model (paired)")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 1 and "| ID | heldout_procedural | 40 | +20.0 |" in rows[0] and "| 10/2 |" in rows[0]
    assert "| 0 |" not in section  # round 0's eval has no per-problem records: no row


def _train_stats(k, this, earlier, dropped=0):
    per_round = {"0": earlier, "1": this} if k else {"0": this}
    total = this + (earlier if k else 0)
    return {"trained": True, "n_pairs_in": total, "n_train": total - dropped, "n_dropped_too_long": dropped,
            "n_dropped_identical": 0, "n_dropped_duplicate": 0, "steps": 12, "train_loss": 1.3301608463128407,
            "rewards/accuracies": 0.625, "rewards/accuracies_mean": 0.5625, "rewards/margins": 0.2168794590979,
            "mix": {"per_round": per_round, "total": total, "rounds_used": sorted(int(r) for r in per_round)}}


def test_report_explains_accumulation_reward_accuracy_and_modes(tmp_path):
    from selfplay.core.io import write_json

    by_mode = {"cot": {"samples": 120, "correct": 50, "pct_correct": 41.67},
               "pot": {"samples": 152, "correct": 51, "pct_correct": 33.55}}
    for k, (this, earlier, dropped) in enumerate([(90, 0, 0), (96, 90, 4)]):
        write_json(tmp_path / f"round_{k}" / "stats.json", {"round": k, "problems": 34, "samples": 272, "correct": 101,
                                                            "incorrect": 153, "pct_correct": 39.76, "pairs": this,
                                                            **({"by_mode": by_mode} if k else {})})
        write_json(tmp_path / f"round_{k}" / "train_stats.json", _train_stats(k, this, earlier, dropped))
    md = write_report(tmp_path).read_text()
    rows = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert "| 182 |" in rows[0] and "| 0.62 / 0.56 |" in rows[0]  # trained, reward accuracy last / mean
    assert "39.8% [33.9, 45.9]" in rows[0]  # % correct of labelled with its Wilson interval
    section = md.split("## Training sets")[1].split("##")[0]
    assert "- round 0: trained 90 = this round 90\n" in section
    assert "- round 1: trained 182 of 186 = this round 96 + earlier 90 (rounds 0-1); dropped 4 (4 too long)" in section
    modes = md.split("## % correct by mode")[1].split("##")[0]
    assert "| 1 | cot | 41.7% correct of labelled (50 correct, 120 samples) |" in modes
    assert "| 1 | pot | 33.5% correct of labelled (51 correct, 152 samples) |" in modes
    assert "| 0 |" not in modes  # round 0 has no by_mode key: nothing invented


def test_round_summary_is_formatted_like_the_report(capsys):
    import re

    from selfplay.run.summary import format_summary, print_summary

    def ev(p1, ci, right):
        return {"sets": {"heldout_procedural": {
            "n": 50, "pass@1": p1, "pass@1_ci": ci, "k": 2, "maj@k": 0.48, "maj@k_ci": [0.3477, 0.6159],
            "problems": [{"id": f"h{i}", "greedy": {"label": "correct" if i in right else "incorrect"}}
                         for i in range(50)]}}}

    s = {"round": 1, "problems": 33, "by_origin": {"procedural": 32, "posed": 1},
         "posed": {"attempted": 12, "kept": 1, "rejected": {"no_program": 3, "not_a_question": 8}},
         "samples": 264, "correct": 50, "incorrect": 200, "unknown": 14, "pct_correct": 20.0,
         "by_mode": {"cot": {"samples": 120, "correct": 30, "pct_correct": 25.0},
                     "pot": {"samples": 144, "correct": 20, "pct_correct": 13.89}},
         "pairs": 96, "problems_with_pairs": 24, "verdict_reasons": {"wrong": 190, "ok": 50, "no_answer": 24},
         "timing": {"solve_seconds": 80.0712, "samples_per_s": 3.39712, "tokens_per_s": 160.71234},
         "train": _train_stats(1, 96, 90), "eval": ev(0.52, [0.4231657776522397, 0.615354482419481], set(range(26)))}
    text = format_summary(s, ev(0.3, [0.19, 0.44], set(range(15))))
    lines = text.splitlines()
    assert lines[0] == "== round 1 summary =="
    assert lines[1] == ("problems: 33 (32 procedural, 1 posed); posed: kept 1 of 12 attempted "
                        "(rejected: 3 no_program, 8 not_a_question)")
    assert lines[2] == "samples: 264: 50 correct, 200 incorrect, 14 unknown; 20.0% [15.5, 25.4] correct of labelled"
    assert lines[3] == ("by mode: cot 25.0% correct of labelled (30 correct, 120 samples); "
                        "pot 13.9% correct of labelled (20 correct, 144 samples)")
    assert "verdict reasons: 190 wrong, 50 ok, 24 no_answer" in lines
    assert "solve+verify: 1 min 20 s, 3.4 samples/s, 161 tok/s" in lines
    assert ("train: trained 186 = this round 96 + earlier 90 (rounds 0-1); 12 steps, loss 1.33, "
            "reward accuracy last 0.625, mean 0.562") in lines
    # 26 right after vs 15 before, 11 newly right, none lost: exact McNemar p = 2 * 0.5**11 = 0.000977; the
    # held-out lines name each set's kind (in-distribution here; out-of-distribution: none evaluated)
    [head] = [line for line in lines if line.startswith("held-out (")]
    assert re.search(r": ID \+22\.0 pts \[\+\d+\.\d, \+\d+\.\d\] \(heldout_procedural; n 50, "
                     r"McNemar p 0\.000977\)", head), head
    assert "OOD none evaluated" in head
    assert re.search(r"heldout_procedural +50 +52\.0% \[42\.3, 61\.5\] +48\.0% @2 +\+22\.0 \[", text), text
    assert "{" not in text and "}" not in text  # no Python dicts
    floats = re.findall(r"\d+\.\d+", text)
    assert floats and all(len(f.replace(".", "").lstrip("0")) <= 3 for f in floats), floats  # 3 significant digits
    print_summary(s)
    assert capsys.readouterr().out.startswith("== round 1 summary ==\nproblems: 33")


# ---- eval sets by kind: in-distribution and out-of-distribution side by side

def _set(right, n, kind=None):
    """An eval.json set record with per-problem greedy verdicts (problems in `right` correct)."""
    rec = {"n": n, "pass@1": len(right) / n, "pass@1_ci": [0.0, 1.0], "k": 2,
           "problems": [{"id": f"q{i}", "greedy": {"label": "correct" if i in right else "incorrect"}}
                        for i in range(n)]}
    if kind:
        rec["kind"] = kind
    return rec


def _kinds_run(tmp_path, ood=True):
    out = tmp_path / "run"
    before = {"heldout_procedural": _set(set(range(10)), 40)}
    after = {"heldout_procedural": _set(set(range(26)), 40)}  # +16 right, none lost: +40 points
    if ood:
        before.update(svamp=_set(set(range(5)), 20, "out-of-distribution"), ood_word=_set(set(range(4)), 20),
                      ood_arith=_set(set(range(6)), 20))
        after.update(svamp=_set(set(range(6)), 20, "out-of-distribution"), ood_word=_set(set(range(6)), 20),
                     ood_arith=_set(set(range(3, 8)), 20))  # +5, +10, -5 points (2 newly right, 3 newly wrong)
    _w(out / "eval_base.json", {"sets": before})
    _w(out / "round_0" / "stats.json", {"problems": 4, "samples": 16, "pairs": 2})
    _w(out / "round_0" / "eval.json", {"sets": after})
    return out


def test_headline_and_tables_show_in_and_out_of_distribution_side_by_side(tmp_path):

    out = _kinds_run(tmp_path)
    md = write_report(out).read_text()
    head = md.split("\n\n")[1]
    assert head.startswith("**Gain after round 0**")
    assert "in-distribution +40.0 pts [" in head and "(heldout_procedural)" in head
    assert "; out-of-distribution +3.3 pts [" in head
    assert head.endswith("(3 sets pooled; per set: svamp +5.0, ood_word +10.0, ood_arith -5.0).")
    header = md.split("## Per round\n\n")[1].split("\n\n")[1].splitlines()[0]
    assert header.index("heldout_procedural (ID) pass@1") < header.index("svamp (OOD) pass@1")
    detail = md.split("## Held-out detail")[1].split("\n## ")[0]
    assert "| r0 | heldout_procedural | in-distribution | 40 |" in detail
    assert "| r0 | svamp | out-of-distribution | 20 |" in detail
    assert "- `svamp` (out-of-distribution): SVAMP test" in detail
    gain = md.split("## Held-out gain against the starting model (paired)")[1].split("\n## ")[0]
    assert "| 0 | ID | heldout_procedural | 40 | +40.0 |" in gain and "| 16/0 |" in gain
    assert "| 0 | OOD | svamp | 20 | +5.0 |" in gain and "| 0 | OOD | ood_arith | 20 | -5.0 |" in gain
    [both] = [line for line in gain.splitlines() if "3 sets pooled" in line]
    assert both.startswith("| 0 | OOD | 3 sets pooled | 60 | +3.3 |") and "| 5/3 |" in both
    html = (out / "report.html").read_text()
    assert "Gain after round 0" in html and "out-of-distribution +3.3 pts" in html


def test_a_kinds_sets_are_pooled_as_the_terminal_summary_pools_them(tmp_path):
    from selfplay.core.metrics import pooled_greedy_gain
    from selfplay.inspect.report_tables import gains, pooled

    out = tmp_path / "run"
    _w(out / "eval_base.json", {"sets": {"svamp": _set(set(), 30), "ood_word": _set(set(), 10)}})
    _w(out / "round_0" / "eval.json", {"sets": {"svamp": _set(set(range(30)), 30), "ood_word": _set(set(), 10)}})
    gs = gains(load_run(out), ["svamp", "ood_word"])
    both = pooled(gs)  # 30 of 40 problems newly right: +75 points, not the mean of +100 and +0
    assert both["gain"] == 0.75 and both["n"] == 40 and (both["gained"], both["lost"]) == (30, 0)
    assert both["gain_ci"] == pooled_greedy_gain([g["pair"] for g in gs])["gain_ci"]
    assert pooled(gs[:1]) is gs[0]


def test_an_older_run_with_only_the_procedural_split_says_ood_was_not_evaluated(tmp_path):
    out = _kinds_run(tmp_path, ood=False)
    md = write_report(out).read_text()
    head = md.split("\n\n")[1]
    assert "in-distribution +40.0 pts" in head and "out-of-distribution: not evaluated in this run" in head
    assert "Out-of-distribution: not evaluated in this run." in md.split("## Held-out detail")[1]


def test_a_run_without_evaluation_says_so(tmp_path):
    out = tmp_path / "run"
    _w(out / "round_0" / "stats.json", {"problems": 4, "samples": 16, "pairs": 2})
    md = write_report(out).read_text()
    assert md.split("\n\n")[1] == "**Held-out gain**: not measured: this run has no held-out evaluation."
    assert "No held-out evaluation in this run" in md.split("## Held-out detail")[1]


def test_status_and_card_show_the_eval_kind(tmp_path):
    from selfplay.inspect.export_card import evaluation_text
    from selfplay.inspect.status import _eval_text

    out = _kinds_run(tmp_path)
    assert _eval_text("svamp", {"pass@1": 0.25, "pass@1_ci": [0.1, 0.5], "kind": "out-of-distribution"}) == \
        "svamp (out-of-distribution) pass@1 25.0% [10.0, 50.0]"
    assert _eval_text("heldout_procedural", {"pass@1": 0.5, "pass@1_ci": None}).startswith(
        "heldout_procedural (in-distribution) pass@1 50.0%")
    card = "\n".join(evaluation_text(out, [0]))
    assert card.startswith("## Evaluation") and "in-distribution +40.0 pts" in card
    assert "out-of-distribution +3.3" in card
    assert "### Held-out detail" in card and "| r0 | svamp | out-of-distribution | 20 |" in card
    assert "| 0 | OOD | 3 sets pooled | 60 | +3.3 |" in card


# ---- every row label explained

def test_every_reason_of_a_run_is_explained_and_empty_tables_say_why(tmp_path):
    from selfplay.inspect.report_tables import REASONS

    out = tmp_path / "run"
    _w(out / "round_0" / "stats.json", {
        "problems": 72, "samples": 576, "correct": 140, "incorrect": 390, "unknown": 46, "pairs": 150,
        "verdict_reasons": {"wrong": 291, "ok": 140, "no_answer": 99, "ambiguous": 43, "parse_error": 3},
        "posed": {"attempted": 320, "kept": 40, "level": 0, "level_reason": "start", "rejected": {
            "duplicate": 21, "golds_disagree": 22, "has_variable": 2, "heldout": 3, "inexact_output": 1,
            "mentions_answer": 9, "no_computation": 17, "no_question": 6, "not_a_question": 33, "over_target": 3,
            "program_ignores_question": 100, "program_runtime_error": 5, "program_syntax_error": 2,
            "question_number_unused": 20, "question_too_long": 1, "two_questions": 19, "unparseable_output": 1,
            "witness_no_output": 2, "witness_program_runtime_error": 3, "witness_program_syntax_error": 4,
            "witness_unparseable_output": 1, "yes_no_question": 5, "dedup_duplicate": 5}},
        "filters": {"hygiene": {"unfinished": 28, "too_long": 0, "copies_example": 7, "no_answer": 77, "repetition": 1},
                    "perplexity": {"low_logprob": 1, "high_logprob": 0}, "solve_band": {"too_easy": 1, "too_hard": 13},
                    "steps": {"false_step": 10, "unevaluated_answer": 1},
                    "majority_witness": {"posed": 8, "agree": 3, "golds_disagree": 5},
                    "pseudo_label_precision": {"problems": 27, "agree": 24, "precision": 0.8889}}})
    md = write_report(out).read_text()
    glossary = md.split("## Reasons")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in glossary.splitlines() if line.startswith("| ") and "---" not in line][1:]
    named = {(r[0][2:], r[1]) for r in rows}
    assert ("majority_witness", "posed") in named and ("verdict", "ambiguous") in named
    assert ("posing", "witness_program_syntax_error") in named and ("hygiene", "copies_example") in named
    assert not [r for r in rows if "not described" in r[2]], rows
    assert len(named) == 5 + 23 + 4 + 1 + 2 + 2 + 3  # every reason with a count, once
    # majority_witness's "posed" and "agree" are counted, not dropped
    [mw] = [line for line in md.splitlines() if line.startswith("| 0 | majority_witness |")]
    assert mw.startswith("| 0 | majority_witness | golds_disagree: 5 | posed: 8, agree: 3 | posed problems whose gold")
    assert REASONS["majority_witness"]["posed"].startswith("posed problems that needed this witness")
    # no problem lacked a gold: the vote's table says why nothing was pseudo-labelled
    assert "## Majority vote on problems with a gold (no pseudo-labels needed)" in md
    assert "| 0 | 27 | 24 | 0.889 |" in md
    assert "pseudo-labelled" not in md.split("## Majority vote")[1].split("\n## ")[0]
    # verdicts are named correct / incorrect / unknown, levels are explained
    assert "| 0 | 140 | 390 | 46 |" in md.split("## Verdicts")[1]
    assert "**0 = as the examples**" in md and "Seed problems have their own levels, **1 and up**" in md


def test_the_verdict_plot_names_the_verdicts(tmp_path):
    from selfplay.inspect.plots import verdict_counts

    out = make_run(tmp_path, rounds=1)
    (out / "round_0" / "rollouts.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in [
        {"problem_id": "a", "label": "correct", "reason": "ok"},
        {"problem_id": "a", "label": "incorrect", "reason": "wrong"},
        {"problem_id": "b", "label": "unknown", "reason": "ambiguous"},
        {"problem_id": "b", "label": "incorrect", "reason": "no_answer"}]))
    run = load_run(out)
    assert verdict_counts(run["rounds"][0]) == {("correct", "ok"): 1, ("incorrect", "wrong"): 1,
                                                ("unknown", "ambiguous"): 1, ("incorrect", "no_answer"): 1}
    write_report(out)
    assert (out / "verdict_reasons.png").read_bytes()[:4] == b"\x89PNG"
