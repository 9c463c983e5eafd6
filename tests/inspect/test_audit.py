"""`selfplay audit` and `verify.crosscheck`: math-verify re-checks pairs against their gold."""
import pytest

from selfplay.cli.main import main
from selfplay.core import io
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.inspect.audit import audit_run, audit_steps
from selfplay.verify.crosscheck import MathVerifyChecker, classify_pairs, crosscheck_filter, mv_text


@pytest.fixture(scope="module")
def checker():
    with MathVerifyChecker(timeout=10.0) as c:
        yield c


def pair(gold: str, chosen: str, rejected: str | None, pid: str = "p") -> Pair:
    return Pair(prompt=[{"role": "user", "content": "q"}],
                chosen=[{"role": "assistant", "content": f"So \\boxed{{{chosen}}}."}],
                rejected=[{"role": "assistant", "content": f"So \\boxed{{{rejected}}}." if rejected else "Hmm."}],
                metadata={"problem_id": pid, "gold": gold, "chosen_extracted": chosen,
                          "rejected_extracted": rejected})


def test_mv_text_wraps_bare_answers_only():
    assert mv_text(" 10, 4, 2 ") == "$10, 4, 2$"
    assert mv_text("$8$") == "$8$" and mv_text("\\boxed{8}") == "\\boxed{8}"


def test_checker_verdicts_screen_and_killed_overrun(checker):
    assert checker.check("\\frac{10}{3}", "3.3333333333333335") == "correct"
    assert checker.check("10, 4, 2", "4, 12, 2") == "incorrect"  # wrapped: not "last number 2 == 2"
    assert checker.check("8", "100000000!") == "too_large"         # never reaches math-verify
    proc = checker._proc
    checker.timeout = 1e-6  # no check fits: the child is killed and replaced
    try:
        assert checker.check("8", "8") == "timeout"
        assert proc.poll() is not None and checker._proc is None
    finally:
        checker.timeout = 10.0
    assert checker.check("8", "8") == "correct" and checker._proc is not None


def test_classify_pairs(checker):
    pairs = [pair("8", "8", "9"), pair("8", "9", "7"), pair("\\frac{1}{2}", "\\frac{1}{2}", "0.5"),
             pair("8", "100000000!", "7"), pair("8", "8.0", None)]
    classes = [c for c, _v in classify_pairs(pairs, checker)]
    assert classes == ["agree", "chosen_disputed", "rejected_disputed", "unparsed", "agree"]


def write_run(tmp_path):
    out = tmp_path / "run"
    (out / "round_0").mkdir(parents=True)
    (out / "round_1").mkdir()
    io.write_jsonl(out / "round_0" / "pairs.jsonl",
                   [pair("8", "8", "9", "a"), pair("8", "9", "7", "wrong-chosen"), pair("12", "12", "11", "c")])
    io.write_jsonl(out / "round_1" / "pairs.jsonl",
                   [pair("\\frac{1}{2}", "\\frac{1}{2}", "0.5", "right-rejected"), pair("5", "5", "6", "e")])
    return out


def test_audit_cli_prints_disagreements_by_class(tmp_path, capsys):
    out = write_run(tmp_path)
    assert main(["audit", str(out)]) == 0
    text = capsys.readouterr().out
    assert "round_0: 3 pairs, 2 agree, 1 disagree" in text
    assert "  chosen called wrong by math-verify: 1" in text and "wrong-chosen gold '8' chosen '9'" in text
    assert "round_1: 2 pairs, 1 agree, 1 disagree" in text and "right-rejected" in text
    assert text.rstrip().endswith("total: 5 pairs; chosen called wrong by math-verify: 1, rejected called right "
                                  "by math-verify: 1, math-verify can't parse: 0")
    assert main(["audit", str(out), "--round", "1"]) == 0
    assert "round_0" not in capsys.readouterr().out


@pytest.mark.parametrize("setup,needle", [
    (lambda out: None, "is not a directory"),
    (lambda out: out.mkdir(), "no round_K/pairs.jsonl"),
    (lambda out: (out / "round_0").mkdir(parents=True) or (out / "round_0" / "pairs.jsonl").write_text("{oops\n"),
     "pairs.jsonl:1: invalid JSON"),
    (lambda out: (out / "round_0").mkdir(parents=True) or (out / "round_0" / "pairs.jsonl").write_text(
        '{"prompt": [], "chosen": [], "rejected": [], "metadata": {}}\n'), "pairs.jsonl:1: metadata.gold missing"),
])
def test_audit_bad_input_is_one_error_line(tmp_path, capsys, setup, needle):
    out = tmp_path / "run"
    setup(out)
    assert main(["audit", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfplay: error: audit") or err.startswith(f"selfplay: error: {out}")
    assert needle in err and len(err.strip().splitlines()) == 1


def test_audit_missing_round_is_an_error(tmp_path, capsys):
    out = write_run(tmp_path)
    assert main(["audit", str(out), "--round", "7"]) == 2
    assert "round_7/pairs.jsonl not found" in capsys.readouterr().err


def test_audit_run_returns_counts(tmp_path, checker, capsys):
    total = audit_run(write_run(tmp_path), checker=checker)
    assert total == {"pairs": 5, "agree": 3, "chosen_disputed": 1, "rejected_disputed": 1, "unparsed": 0}


# ---------------------------------------------------------------- verify.crosscheck at pair time

def test_crosscheck_filter_drops_disputed_and_marks_kept(checker):
    pairs = [pair("8", "8", "9"), pair("8", "9", "7"), pair("2", "2", "2.0"), pair("8", "100000000!", "7")]
    kept, dropped, info = crosscheck_filter(pairs, checker)
    assert dropped == {"chosen_disputed": 1, "rejected_disputed": 1} and info == {"checked": 4, "unparsed": 1}
    assert [p.metadata["crosscheck"] for p in kept] == ["agree", "unparsed"]
    assert crosscheck_filter([], checker) == ([], {"chosen_disputed": 0, "rejected_disputed": 0},
                                              {"checked": 0, "unparsed": 0})


def _rollout(pid: str, j: int, label: str, extracted: str) -> Rollout:
    return Rollout(problem_id=pid, sample_index=j, completion=f"Path {j}: so \\boxed{{{extracted}}}.",
                   finish_reason="stop", n_tokens=9, seed=j, label=label, reason="ok", extracted=extracted)


def test_stage_pair_crosscheck_counts_in_filters_stats_and_report(tmp_path):
    from selfplay.config import Config
    from selfplay.inspect.report import write_report
    from selfplay.run.context import RoundContext
    from selfplay.run.round import round_stats, stage_pair

    cfg = Config()
    cfg.verify.crosscheck = True
    cfg.filters.solve_band = False
    probs = [Problem(id="p", question="What is 3 + 5?", answer="8", origin="procedural", source="add")]
    # our verifier (mis)labelled path 1 correct although it says 9: math-verify disputes those pairs
    rollouts = {"p": [_rollout("p", 0, "correct", "8"), _rollout("p", 1, "correct", "9"),
                      _rollout("p", 2, "incorrect", "7"), _rollout("p", 3, "incorrect", "6")]}
    ctx = RoundContext(cfg=cfg, out=tmp_path, round_idx=0, model="m")
    ctx.dir.mkdir()
    io.write_jsonl(ctx.dir / "problems.jsonl", probs)  # the pair stage's inputs
    io.write_jsonl(ctx.dir / "rollouts.jsonl", rollouts["p"])
    pairs = stage_pair(ctx, probs, rollouts)
    assert [p.metadata["chosen_extracted"] for p in pairs] == ["8", "8"]
    filters = io.read_json(ctx.dir / "filters.json")
    assert filters["crosscheck"] == {"chosen_disputed": 2, "rejected_disputed": 0}
    assert filters["crosscheck_info"] == {"checked": 4, "unparsed": 0}
    stats = round_stats(ctx, probs, rollouts, pairs, {})
    assert stats["filters"]["crosscheck"] == {"chosen_disputed": 2, "rejected_disputed": 0}
    io.write_json(ctx.dir / "stats.json", stats)
    md = write_report(tmp_path).read_text()
    assert "| 0 | crosscheck | chosen_disputed: 2 |" in md


def test_crosscheck_is_off_by_default_and_validated(tmp_path):
    from selfplay.config import Config, load_config

    assert Config().verify.crosscheck is False
    f = tmp_path / "c.toml"
    f.write_text("[verify]\ncrosscheck = 1\n")
    with pytest.raises(ValueError, match="verify.crosscheck"):
        load_config(f)
    f.write_text("[verify]\ncrosscheck = true\n")
    assert load_config(f).verify.crosscheck is True


def test_audit_steps_lists_chosen_with_false_or_unreadable_steps(tmp_path, capsys):
    out = tmp_path / "run"
    clean = pair("8", "8", "9", pid="clean")
    false = Pair(prompt=clean.prompt, chosen=[{"role": "assistant", "content": "2 + 6 = 7, so 2 + 6 = 8."}],
                 rejected=[{"role": "assistant", "content": "2 + 6 = 9."}],
                 metadata={"problem_id": "false", "gold": "8", "chosen_extracted": "8", "rejected_extracted": "9"})
    echo = Pair(prompt=clean.prompt, chosen=[{"role": "assistant", "content": "twice 2 + 6 = 16. So it is 2 + 6."}],
                rejected=clean.rejected, metadata={"problem_id": "echo", "gold": "8", "chosen_extracted": "2 + 6",
                                                   "rejected_extracted": "9"})
    io.write_jsonl(out / "round_0" / "pairs.jsonl", [clean, false, echo])
    total = audit_steps(out)
    assert total == {"pairs": 3, "chosen_false": 1, "chosen_unknown": 1, "chosen_unevaluated": 1, "rejected_false": 1}
    text = capsys.readouterr().out
    assert "round_0/pairs.jsonl:2 false: '2 + 6 = 7' (wrong)" in text and "(partial)" in text
    assert main(["audit", str(out), "--steps", "--round", "0"]) == 0
    assert main(["audit", str(tmp_path / "nothing"), "--steps"]) == 2
