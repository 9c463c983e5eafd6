"""The Markdown of report.md: table cells (numbers, percentages with their 95% intervals, shares),
tables, and the sections after the per-round table (filters, pseudo-labels, diversity, collapse
warnings, paired held-out gains)."""
from __future__ import annotations

from typing import Any

from selfplay.core.fmt import pct as fmt_pct
from selfplay.core.metrics import gain_points, greedy_gain


def eval_sets(run: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for ev in [run["start_eval"]] + [r["eval"] for r in run["rounds"]]:
        for name in ((ev or {}).get("sets") or {}):
            if name not in names:
                names.append(name)
    return names


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


_DIVERSITY_KEYS = ("distinct_problems", "posed_similarity", "distinct_1", "distinct_2", "distinct_3",
                   "answer_entropy", "answer_entropy_global")


def quality_sections(run: dict[str, Any]) -> list[str]:
    """Filter drop counts, diversity metrics and collapse-guard warnings, one row per round."""
    stats = [(r["k"], r["stats"] or {}) for r in run["rounds"]]
    md: list[str] = []
    frows = []
    for k, st in stats:
        for name, counts in (st.get("filters") or {}).items():
            if isinstance(counts, dict) and not name.endswith(("_info", "_precision")):
                dropped = ", ".join(f"{a}: {b}" for a, b in counts.items() if b) or "none"
                frows.append([str(k), name, dropped])
    if frows:
        md += ["## Filters (drops by reason)", "", table(["round", "filter", "dropped"], frows), ""]
    prows = []
    for k, st in stats:
        f = st.get("filters") or {}
        prec, info = f.get("pseudo_label_precision") or {}, f.get("pseudo_label_info") or {}
        if prec.get("problems") or info.get("relabelled"):
            prows.append([str(k), num(info.get("relabelled", 0)), num(prec.get("problems")), num(prec.get("agree")),
                          num(prec.get("precision"))])
    if prows:
        md += ["## Pseudo-labels (majority vote)", "", "Problems without a gold labelled by the vote of their "
               "paths; the same vote on problems with a gold measures its precision (majority = gold).", "",
               table(["round", "pseudo-labelled", "gold problems voted", "majority = gold", "precision"], prows), ""]
    md += step_check_section({k: {name: (st.get("filters") or {}).get(name) for name in ("steps", "steps_info", "format_info")}
                              for k, st in stats if (st.get("filters") or {}).get("steps_info")})
    drows = [[str(k)] + [num((st.get("diversity") or {}).get(key)) for key in _DIVERSITY_KEYS]
             for k, st in stats if st.get("diversity")]
    if drows:
        md += ["## Diversity (collapse guard)", "", table(["round", *_DIVERSITY_KEYS], drows), ""]
    warns = list(dict.fromkeys(f"- {w}" if w.startswith("round ") else f"- round {k}: {w}"
                               for k, st in stats for w in st.get("warnings") or []))  # older runs repeated them
    if warns:
        md += ["## Collapse warnings", ""] + warns + [""]
    return md


def step_check_section(steps: dict[int, dict[str, Any]]) -> list[str]:
    """Per round: the chosen step check (paths checked, statements by verdict, flawed right-answer
    paths by flaw and what was done with them) and \\boxed{} adherence."""
    if not steps:
        return []
    out = ["## Chosen paths: right all the way", "",
           "Every correct reasoning path was step-checked before pairing (`selfplay_verifiers.steps`): a path "
           "with a false arithmetic statement (`false_step`) or whose answer is a computation left undone "
           "(`unevaluated_answer`, e.g. \"the answer is 3 + 7\") is never `chosen`.", "",
           "| round | paths checked | statements true / false / unknown | flawed (never chosen) | kept as rejected "
           "| boxed: paths / chosen | step pairs |", "|---|---|---|---|---|---|---|"]
    for k, st in steps.items():
        si, fi = st.get("steps_info") or {}, st.get("format_info") or {}
        stm = si.get("statements") or {}
        flawed = ", ".join(f"{a}: {b}" for a, b in (st.get("steps") or {}).items() if b) or "none"
        out.append(f"| {k} | {si.get('checked', '-')} | {stm.get('true', '-')} / {stm.get('false', '-')} / "
                   f"{stm.get('unknown', '-')} | {flawed} | {si.get('kept_as_rejected', 0)} | "
                   f"{fi.get('paths_boxed', '-')} / {fi.get('chosen_boxed', '-')} | {fi.get('step_pairs', 0)} |")
    return out + [""]


def gains(run: dict[str, Any], sets: list[str]) -> list[dict[str, Any]]:
    """Per round and held-out set: greedy pass@1 change against the starting model on the same
    problems (metrics.paired_gain: paired bootstrap interval, exact McNemar p)."""
    out = []
    start_sets = (run["start_eval"] or {}).get("sets") or {}
    for r in run["rounds"]:
        for name in sets:
            before, after = start_sets.get(name), ((r["eval"] or {}).get("sets") or {}).get(name)
            if before and after:
                g = greedy_gain(before, after)
                if g["n"]:
                    out.append({"round": r["k"], "set": name, **g})
    return out


def gain_section(run: dict[str, Any], sets: list[str]) -> list[str]:
    rows = [[str(g["round"]), g["set"], str(g["n"]), *gain_points(g), f"{g['gained']}/{g['lost']}",
             f"{g['mcnemar_p']:.3g}"] for g in gains(run, sets)]
    if not rows:
        return []
    return ["## Held-out gain against the starting model (paired)", "",
            "Both models answer the same held-out problems, so the change is measured per problem: "
            "points of greedy pass@1 gained, a 95% bootstrap interval over problems, problems newly "
            "right / newly wrong, and the exact McNemar p-value (small = unlikely to be noise).", "",
            table(["round", "set", "n", "gain (pts)", "95% CI", "newly right/wrong", "McNemar p"], rows), ""]
