import orjson

from selfplay.report import load_run, pass_rates, write_report


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
    table = md.split("\n\n")[2].splitlines()
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
    assert sorted(rates) == [0.0, 0.5] and k == 2


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
    from selfplay.io import write_json
    from selfplay.report import write_report

    for k, d1 in ((0, 0.5), (1, 0.2)):
        write_json(tmp_path / f"round_{k}" / "stats.json", {
            "round": k, "problems": 4, "samples": 16, "pct_correct": 25.0, "pairs": 3,
            "filters": {"hygiene": {"unfinished": 2, "no_answer": 0}, "perplexity_info": {"no_logprob": 1}},
            "diversity": {"distinct_problems": 4, "distinct_1": d1, "answer_entropy": 1.5},
            "warnings": ["distinct_1 fell to 0.2 (< 0.7 x round 0's 0.5)"] if k else []})
    md = write_report(tmp_path).read_text()
    assert "## Filters (drops by reason)" in md and "| 0 | hygiene | unfinished: 2 |" in md
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
    assert len(rows) == 1 and "| heldout_procedural | 40 | +20.0 |" in rows[0] and "| 10/2 |" in rows[0]
    assert "| 0 |" not in section  # round 0's eval has no per-problem records: no row
