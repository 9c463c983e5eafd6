"""The sections of report.md and report.html: table cells (numbers, percentages with their 95%
intervals, shares), the Section record both pages render, and the sections after the per-round
table (held-out sets by kind and their paired gains, filters, pseudo-labels, step check,
diversity, collapse warnings), and what every row label means (the glossary at the end: each
meaning is read off the code that counts it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfplay.core.evalsets import KINDS, SHORT, describe, set_kind
from selfplay.core.fmt import pct as fmt_pct
from selfplay.core.metrics import gain_points, greedy_gain, pooled_greedy_gain


@dataclass
class Section:
    """One section of the report: a heading (none for the opening), paragraphs, an optional
    table, bullets and closing paragraphs. report.md and report.html render the same Section
    list, so both show the same numbers. Text may use Markdown's `code` and **bold**."""

    key: str
    title: str
    text: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def md(self) -> list[str]:
        out = [f"## {self.title}", ""] if self.title else []
        for t in self.text:
            out += [t, ""]
        if self.header:
            out += [table(self.header, self.rows), ""]
        if self.bullets:
            out += [f"- {b}" for b in self.bullets] + [""]
        for t in self.notes:
            out += [t, ""]
        return out


def eval_sets(run: dict[str, Any]) -> list[str]:
    """Every eval set of the run, in-distribution sets first, then out-of-distribution ones, each
    kind in the order the eval files list them."""
    names: list[str] = []
    for ev in [run["start_eval"]] + [r["eval"] for r in run["rounds"]]:
        for name in ((ev or {}).get("sets") or {}):
            if name not in names:
                names.append(name)
    return sorted(names, key=lambda n: KINDS.index(kind_of(run, n)))


def set_record(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The first eval.json record of set `name` (it may carry "kind" and "description")."""
    for ev in [run["start_eval"]] + [r["eval"] for r in run["rounds"]]:
        rec = ((ev or {}).get("sets") or {}).get(name)
        if isinstance(rec, dict):
            return rec
    return None


def kind_of(run: dict[str, Any], name: str) -> str:
    return set_kind(name, set_record(run, name))


def set_label(run: dict[str, Any], name: str) -> str:
    """`heldout_procedural (ID)`: a set's name with its kind, short."""
    return f"{name} ({SHORT[kind_of(run, name)]})"


def num(x: Any, fmt: str = "{:.3f}") -> str:
    if isinstance(x, bool) or x is None:
        return "-"
    return fmt.format(x) if isinstance(x, float) else str(x)


def set_cell(ev: dict[str, Any] | None, name: str, metric: str = "pass@1") -> str:
    s = ((ev or {}).get("sets") or {}).get(name) or {}
    return fmt_pct(s.get(metric), s.get(f"{metric}_ci"))


def share(part: int, whole: Any) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})" if whole else "-"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def contam_cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    return "clean" if c.get("clean") else f"LEAK {c.get('text_leaks', 0)}+{c.get('id_leaks', 0)}"


def counts_text(d: dict[str, Any]) -> str:
    return ", ".join(f"{a}: {b}" for a, b in d.items() if b and not isinstance(b, dict)) or "none"


# ---------------------------------------------------------------- held-out sets and gains

def heldout_detail(run: dict[str, Any], sets: list[str]) -> list[Section]:
    if not sets:
        return [Section("heldout", "Held-out detail", ["No held-out evaluation in this run (`eval.enabled` is "
                                                       "false, no held-out set is configured, or no round was "
                                                       "trained: the loop evaluates trained models only).", ])]
    rows = []
    for label, ev in [("start", run["start_eval"])] + [(f"r{r['k']}", r["eval"]) for r in run["rounds"]]:
        for s in sets:
            d = ((ev or {}).get("sets") or {}).get(s)
            if d:
                rows.append([label, s, kind_of(run, s), num(d.get("n")), set_cell(ev, s), num(d.get("k")),
                             set_cell(ev, s, "maj@k"), set_cell(ev, s, "pass@k")])
    missing = [k for k in KINDS if not any(kind_of(run, s) == k for s in sets)]
    return [Section("heldout", "Held-out detail", [
        "Every evaluation set, labelled with its kind: *in-distribution* sets come from the generators the run "
        "trains on (their own held-out split: same forms, other problems); *out-of-distribution* sets from "
        "none of them, so only they show whether a gain transfers. pass@1 is the greedy answer; maj@k and "
        "pass@k use k sampled answers."],
        ["model", "set", "kind", "n", "pass@1 (greedy)", "k", "maj@k", "pass@k"], rows,
        bullets=[f"`{s}` ({kind_of(run, s)}): {describe(s, set_record(run, s))}" for s in sets],
        notes=[f"{k.capitalize()}: not evaluated in this run." for k in missing])]


def gains(run: dict[str, Any], sets: list[str]) -> list[dict[str, Any]]:
    """Per round and held-out set: greedy pass@1 change against the starting model on the same
    problems (metrics.paired_gain: paired bootstrap interval, exact McNemar p), with the set's kind."""
    out = []
    start_sets = (run["start_eval"] or {}).get("sets") or {}
    for r in run["rounds"]:
        for name in sets:
            before, after = start_sets.get(name), ((r["eval"] or {}).get("sets") or {}).get(name)
            if before and after:
                g = greedy_gain(before, after)
                if g["n"]:
                    out.append({"round": r["k"], "set": name, "kind": kind_of(run, name), **g,
                                "pair": (name, before, after)})
    return out


def pooled(gs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several sets' gains taken together (metrics.pooled_greedy_gain: their problems pooled, as
    the terminal round summary pools them); one set's gain as it is."""
    return gs[0] if len(gs) == 1 else pooled_greedy_gain([g["pair"] for g in gs])


def _kind_text(kind: str, gs: list[dict[str, Any]]) -> str:
    pts, ci = gain_points(pooled(gs))
    if len(gs) == 1:
        return f"{kind} {pts} pts {ci} ({gs[0]['set']})"
    each = ", ".join(f"{g['set']} {gain_points(g)[0]}" for g in gs)
    return f"{kind} {pts} pts {ci} ({len(gs)} sets pooled; per set: {each})"


def headline(run: dict[str, Any], sets: list[str]) -> str:
    """The report's opening line: the last evaluated round's paired gain, in-distribution and
    out-of-distribution side by side (a kind the run did not evaluate says so)."""
    head = "**Held-out gain**"
    if not sets:
        return f"{head}: not measured: this run has no held-out evaluation."
    gs = gains(run, sets)
    if not gs:
        why = ("no evaluation of the starting model (eval_base.json)" if not run["start_eval"]
               else "no round's evaluation shares per-problem records with the starting model's")
        return f"{head}: not measured: {why}."
    last = max(g["round"] for g in gs)
    parts = []
    for kind in KINDS:
        mine = [g for g in gs if g["round"] == last and g["kind"] == kind]
        if mine:
            parts.append(_kind_text(kind, mine))
        elif any(kind_of(run, s) == kind for s in sets):
            parts.append(f"{kind}: no paired result in round {last}")
        else:
            parts.append(f"{kind}: not evaluated in this run")
    return (f"**Gain after round {last}** (greedy pass@1 against the starting model on the same problems, "
            f"points with a 95% bootstrap interval): " + "; ".join(parts) + ".")


def gain_section(run: dict[str, Any], sets: list[str]) -> list[Section]:
    gs = gains(run, sets)
    if not gs:
        return []
    rows = []
    for k in sorted({g["round"] for g in gs}):
        for kind in KINDS:
            mine = [g for g in gs if g["round"] == k and g["kind"] == kind]
            if len(mine) > 1:
                mine.append({**pooled(mine), "set": f"{len(mine)} sets pooled"})
            rows += [[str(k), SHORT[kind], g["set"], str(g["n"]), *gain_points(g), f"{g['gained']}/{g['lost']}",
                      f"{g['mcnemar_p']:.3g}"] for g in mine]
    missing = [k for k in KINDS if not any(g["kind"] == k for g in gs)]
    return [Section("gain", "Held-out gain against the starting model (paired)", [
        "Both models answer the same held-out problems, so the change is measured per problem: "
        "points of greedy pass@1 gained, a 95% bootstrap interval over problems, problems newly "
        "right / newly wrong, and the exact McNemar p-value (small = unlikely to be noise). ID = "
        "in-distribution, OOD = out-of-distribution; a kind with several sets also gets them pooled "
        "(their problems taken together, as the terminal round summary does)."],
        ["round", "kind", "set", "n", "gain (pts)", "95% CI", "newly right/wrong", "McNemar p"], rows,
        notes=[f"{k.capitalize()}: " + ("not evaluated in this run." if not any(kind_of(run, s) == k for s in sets)
                                        else "no per-problem records shared with the starting model.")
               for k in missing])]


def eval_header(run: dict[str, Any], sets: list[str]) -> list[str]:
    return [f"{set_label(run, s)} pass@1 [95% CI]" for s in sets]


# ---------------------------------------------------------------- filters and the rest

_DIVERSITY_KEYS = ("distinct_problems", "posed_similarity", "distinct_1", "distinct_2", "distinct_3",
                   "answer_entropy", "answer_entropy_global")


def filter_rows(run: dict[str, Any]) -> list[list[str]]:
    """round | filter | dropped | counted, not dropped | what it checks."""
    rows = []
    for r in run["rounds"]:
        for name, counts in ((r["stats"] or {}).get("filters") or {}).items():
            if isinstance(counts, dict) and not name.endswith(("_info", "_precision")):
                keep = NOT_DROPS.get(name, ())
                rows.append([str(r["k"]), name, counts_text({a: b for a, b in counts.items() if a not in keep}),
                             counts_text({a: b for a, b in counts.items() if a in keep}) if keep else "-",
                             FILTERS.get(name, "-")])
    return rows


def quality_sections(run: dict[str, Any]) -> list[Section]:
    """Filter drop counts, pseudo-labels, the step check, diversity metrics and collapse-guard
    warnings, one row per round."""
    stats = [(r["k"], r["stats"] or {}) for r in run["rounds"]]
    out: list[Section] = []
    frows = filter_rows(run)
    if frows:
        out.append(Section("filters", "Filters (drops by reason)", [
            "What each filter dropped in each round, by reason (every reason is explained under \"Reasons\"). "
            "Path filters drop sampled paths before pairing; problem filters drop a problem with all its paths."],
            ["round", "filter", "dropped", "counted, not dropped", "what it checks"], frows))
    out += pseudo_section(stats)
    out += step_check_section({k: {name: (st.get("filters") or {}).get(name) for name in ("steps", "steps_info",
                                                                                         "format_info")}
                               for k, st in stats if (st.get("filters") or {}).get("steps_info")})
    drows = [[str(k)] + [num((st.get("diversity") or {}).get(key)) for key in _DIVERSITY_KEYS]
             for k, st in stats if st.get("diversity")]
    if drows:
        out.append(Section("diversity", "Diversity (collapse guard)", [
            "distinct_problems: distinct questions; posed_similarity: mean word-overlap (Jaccard) between posed "
            "questions; distinct_1/2/3: distinct n-grams over all n-grams of the sampled paths; answer_entropy: "
            "entropy (bits) of the extracted answers per problem, averaged, and over the whole round (global). "
            "Falling values warn of collapse."], ["round", *_DIVERSITY_KEYS], drows))
    warns = list(dict.fromkeys(w if w.startswith("round ") else f"round {k}: {w}"
                               for k, st in stats for w in st.get("warnings") or []))  # older runs repeated them
    if warns:
        out.append(Section("warnings", "Collapse warnings", bullets=warns))
    return out


def pseudo_section(stats: list[tuple[int, dict[str, Any]]]) -> list[Section]:
    """Majority-vote pseudo-labels. When no problem lacked a gold, nothing was pseudo-labelled:
    the table then shows only what the vote is worth on problems with a gold, and says so."""
    prows, relabelled = [], 0
    for k, st in stats:
        f = st.get("filters") or {}
        prec, info = f.get("pseudo_label_precision") or {}, f.get("pseudo_label_info") or {}
        relabelled += int(info.get("relabelled") or 0)
        if prec.get("problems") or info.get("relabelled"):
            prows.append([str(k), num(info.get("relabelled", 0)), num(prec.get("problems")), num(prec.get("agree")),
                          num(prec.get("precision"))])
    if not prows:
        return []
    if not relabelled:
        return [Section("pseudo", "Majority vote on problems with a gold (no pseudo-labels needed)", [
            "Every problem of this run had a trusted gold (procedural seeds, seed lines with an answer, posed "
            "problems with a program), so no gold came from a majority vote. The vote still runs on the problems "
            "with a gold, to measure what pseudo-labels would be worth: its precision is the share of voted "
            "problems whose majority answer equals the gold."],
            ["round", "gold problems voted", "majority = gold", "precision"], [[r[0], *r[2:]] for r in prows])]
    return [Section("pseudo", "Pseudo-labels (majority vote)", [
        "Problems without a gold labelled by the vote of their paths; the same vote on problems with a gold "
        "measures its precision (majority = gold)."],
        ["round", "pseudo-labelled", "gold problems voted", "majority = gold", "precision"], prows)]


def step_check_section(steps: dict[int, dict[str, Any]]) -> list[Section]:
    """Per round: the chosen step check (paths checked, statements by verdict, flawed right-answer
    paths by flaw and what was done with them) and \\boxed{} adherence."""
    if not steps:
        return []
    rows = []
    for k, st in steps.items():
        si, fi = st.get("steps_info") or {}, st.get("format_info") or {}
        stm = si.get("statements") or {}
        rows.append([str(k), str(si.get("checked", "-")),
                     f"{stm.get('true', '-')} / {stm.get('false', '-')} / {stm.get('unknown', '-')}",
                     counts_text(st.get("steps") or {}), str(si.get("kept_as_rejected", 0)),
                     f"{fi.get('paths_boxed', '-')} / {fi.get('chosen_boxed', '-')}", str(fi.get("step_pairs", 0))])
    return [Section("steps", "Chosen paths: right all the way", [
        "Every correct reasoning path was step-checked before pairing (`selfplay_verifiers.steps`): a path "
        "with a false arithmetic statement (`false_step`) or whose answer is a computation left undone "
        "(`unevaluated_answer`, e.g. \"the answer is 3 + 7\") is never `chosen`. kept as rejected: flawed "
        "paths kept as a `rejected` (`pair.flawed_chosen = \"rejected\"`; 0 when they are dropped); boxed: the "
        "share of labelled paths and of kept chosen that write \\boxed{}; step pairs: Step-DPO pairs "
        "(`pair.step_pairs`; 0 when off)."],
        ["round", "paths checked", "statements true / false / unknown", "flawed (never chosen)", "kept as rejected",
         "boxed: paths / chosen", "step pairs"], rows)]


def glossary_section(run: dict[str, Any]) -> list[Section]:
    """Every reason the report's tables name, with what it means."""
    rows = [[where, reason, meaning] for where, reason, meaning in filter_reasons(run)]
    if not rows:
        return []
    return [Section("reasons", "Reasons", ["What each reason in the tables above means (verdicts, posing "
                                           "rejections, filter drops)."], ["where", "reason", "meaning"], rows)]


# ---------------------------------------------------------------- what the row labels mean

# What each filter of filters.json checks (selfplay/pair/curate.py, pseudo.py, process.py)
FILTERS = {
    "hygiene": "paths: cut off, too long, a copy of the prompt's worked example, no final answer, repetition",
    "perplexity": "paths: mean token log-probability outside [filters.min_logprob, filters.max_logprob]",
    "solve_band": "posed problems: pass rate outside [filters.band_low, filters.band_high]",
    "steps": "correct reasoning paths: never chosen with a false statement or an answer left undone",
    "majority_witness": "posed problems whose gold also needs the solver majority (pose.witness: under auto, "
                        "those that state no single arithmetic expression): the majority answer must be the gold",
    "pseudo_label": "problems without a gold: the majority answer of their paths becomes the gold",
    "pseudo_label_band": "pseudo-labelled problems: pass rate against the voted gold outside the band",
    "keep_best": "pairs: beyond the per-problem cap, or below filters.keep_fraction by quality score",
    "crosscheck": "pairs an independent checker (math-verify) disputes (verify.crosscheck)",
}
# counts a filter records that are not drops
NOT_DROPS = {"majority_witness": ("posed", "agree")}

_BAND = {"too_easy": "pass rate above filters.band_high: always solved, nothing to learn",
         "too_hard": "pass rate below filters.band_low: (almost) never solved; no chosen path, maybe a wrong gold",
         "no_verdicts": "no path with a correct or incorrect verdict"}
_SANDBOX = {"runtime_error": "raised an exception", "syntax_error": "is not valid Python", "timeout": "ran out of time",
            "memory": "ran out of memory", "output_limit": "printed too much", "killed": "was killed by a signal",
            "sandbox_error": "could not run (the sandbox failed)",
            "no_output": "printed nothing", "nondeterministic": "printed different output on two runs",
            "unparseable_output": "did not print exactly one number",
            "inexact_output": "printed a float artefact (0.30000000000000004), not an exact number",
            "no_program": "was not written"}
REASONS: dict[str, dict[str, str]] = {
    "verdict": {
        "ok": "the final answer is equivalent to the gold",
        "wrong": "the final answer is not equivalent to the gold",
        "no_answer": "no final answer could be read from the path",
        "ambiguous": "the path states different final answers",
        "parse_error": "the answer (or the gold) could not be parsed",
        "too_large": "a number too large to compare safely (screened before sympy)",
        "timeout": "the check or the program ran out of time",
        "error": "the checker failed on this path (or its problem failed on a worker)",
        "false_step": "a right answer after a false statement, kept as a rejected (pair.flawed_chosen)",
        "unevaluated_answer": "a right answer left as a computation, kept as a rejected (pair.flawed_chosen)",
        "no_boxed": "a right answer without \\boxed{}, kept as a rejected (pair.require_boxed)",
        **{k: f"a program path: the program {v}" for k, v in _SANDBOX.items() if k != "no_program"},
    },
    "posing": {
        "no_question": "no question found (or under 8 characters)",
        "question_too_long": "the question is over 600 characters",
        "not_a_question": "the question does not end with \"?\"",
        "yes_no_question": "a yes/no question: no numeric gold",
        "two_questions": "two questions in one",
        "has_variable": "an unknown such as 4x",
        "mentions_answer": "the question states an answer",
        "duplicate": "the same question as a seed or one posed earlier this round",
        "program_ignores_question": "the program's numbers are not the question's (a literal the question does "
                                    "not state, besides 0, 1, 2, 10, 100; or none of its numbers)",
        "question_number_unused": "a number the question writes in digits is missing from the program",
        "no_computation": "the program computes nothing (print(111))",
        "golds_disagree": "the second witness (another program, or the expression the question states) "
                          "gave another answer",
        "heldout": "an exact or near copy of a held-out question",
        "dedup_duplicate": "the same question as a seed, an earlier round's or an earlier posed problem",
        "dedup_near_duplicate": "a near copy (word-shingle Jaccard >= filters.near_threshold) of a seed, "
                                "an earlier round's or an earlier posed problem",
        "dedup_heldout_near_duplicate": "a near copy of a held-out question",
        "dedup_empty": "empty once normalised",
        "over_target": "posed beyond pose.target in the last batch, not used",
        **{f"program_{k}": f"the program {v}" for k, v in _SANDBOX.items()},
        **{k: f"the program {v}" for k, v in _SANDBOX.items() if k.endswith("_output") or k == "nondeterministic"},
        **{f"witness_{k}": f"the second (witness) program {v}" for k, v in _SANDBOX.items()},
        **{f"witness_program_{k}": f"the second (witness) program {v}" for k, v in _SANDBOX.items()},
    },
    "hygiene": {
        "unfinished": "cut off at solve.max_new_tokens (finish_reason length)",
        "too_long": "longer than filters.max_chars characters",
        "copies_example": "reproduces the solve prompt's worked example",
        "no_answer": "labelled, but no final answer was extracted (reasoning paths)",
        "repetition": "a repetition loop (a repeated substring or line, or few distinct 4-grams)",
    },
    "perplexity": {"low_logprob": "mean token log-probability below filters.min_logprob: incoherent",
                   "high_logprob": "mean token log-probability above filters.max_logprob: generic or memorised"},
    "solve_band": _BAND,
    "pseudo_label_band": _BAND,
    "steps": {"false_step": "states a false arithmetic statement (selfplay_verifiers.steps)",
              "unevaluated_answer": "its answer is a computation left undone (\"the answer is 3 + 7\")",
              "no_boxed": "no \\boxed{} answer (pair.require_boxed)"},
    "majority_witness": {
        "posed": "posed problems that needed this witness (checked; not a drop)",
        "agree": "kept: their majority answer is the gold (not a drop)",
        "golds_disagree": "dropped: the majority answer is not the gold, or there is no clear majority (fewer "
                          "than 2 answers, a tie, or a share below pair.pseudo_agreement)"},
    "pseudo_label": {"no_answers": "fewer than 2 extracted answers", "tie": "two answers share the top count",
                     "low_agreement": "the top answer's share is below pair.pseudo_agreement"},
    "keep_best": {"per_problem_cap": "beyond the cap of pairs per problem",
                  "low_quality": "below the kept fraction (filters.keep_fraction) by quality score"},
    "crosscheck": {"chosen_disputed": "math-verify calls the chosen answer wrong",
                   "rejected_disputed": "math-verify calls the rejected answer right"},
}


def reason_meaning(where: str, reason: str) -> str:
    """What `reason` means where it was counted ("verdict", "posing" or a filter's name)."""
    return REASONS.get(where, {}).get(reason) or "(not described: a reason this version of the report does not know)"


def filter_reasons(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, reason, meaning) for every reason the run's tables show with a count."""
    seen: dict[tuple[str, str], None] = {}
    for r in run["rounds"]:
        st = r["stats"] or {}
        for reason, n in (st.get("verdict_reasons") or {}).items():
            if n:
                seen[("verdict", str(reason))] = None
        for reason, n in ((st.get("posed") or {}).get("rejected") or {}).items():
            if n:
                seen[("posing", str(reason))] = None
        for name, counts in (st.get("filters") or {}).items():
            if isinstance(counts, dict) and not name.endswith(("_info", "_precision")):
                seen.update({(name, str(a)): None for a, b in counts.items() if b and not isinstance(b, dict)})
    wheres = list(dict.fromkeys(where for where, _ in seen))  # verdicts, posing, then the filters as met
    return [(where, reason, reason_meaning(where, reason))
            for where, reason in sorted(seen, key=lambda x: wheres.index(x[0]))]
