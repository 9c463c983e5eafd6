"""`selfplay audit`: pairs re-checked by a second, independent checker, and posed problems to judge.

`selfplay audit OUT` re-checks every pair's answers with math-verify against the pair's gold and
prints the disagreements by class (the harness and the classes: selfplay.verify.crosscheck, which
the pair stage's `verify.crosscheck = true` uses too). `selfplay audit OUT --posed N` draws N posed
problems with what a person needs to judge their gold (posed_sample, print_posed).
`selfplay audit OUT --steps` step-checks every cot pair (selfplay_verifiers.steps) and lists the chosen with
a false or unreadable statement, or an unevaluated answer (audit_steps).
"""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from selfplay.core import io
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.pair.process import unevaluated
from selfplay.pair.pseudo import majority_witness, majority_witnessed, uses_majority_witness
from selfplay.run.layout import run_config
from selfplay.run.round import load_rollouts, paths_per_problem
from selfplay.verify.crosscheck import CLASSES, MathVerifyChecker, classify_pairs, pair_answer
from selfplay_verifiers.steps import FALSE, UNKNOWN_STEP, check_steps


def _load_pairs(path: Path) -> list[tuple[int, Pair]]:
    out = []
    for lineno, d in io.iter_jsonl(path, numbered=True):
        try:
            pair = Pair.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
        gold = pair.metadata.get("gold")
        if not isinstance(gold, str) or not gold.strip():
            raise ValueError(f"{path}:{lineno}: metadata.gold missing or empty")
        out.append((lineno, pair))
    return out


def _loaded(out: str | Path, round_idx: int | None) -> list[tuple[Path, list[tuple[int, Pair]]]]:
    """The pairs of OUT/round_K (or of every round), every file read (and refused) before any check."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"audit: {out} is not a directory")
    if round_idx is not None:
        files = [out / f"round_{round_idx}" / "pairs.jsonl"]
        if not files[0].is_file():
            raise ValueError(f"audit: {files[0]} not found")
    else:
        rounds = sorted((int(d.name[6:]), d) for d in out.glob("round_*") if d.name[6:].isdigit())
        files = [d / "pairs.jsonl" for _k, d in rounds if (d / "pairs.jsonl").is_file()]
        if not files:
            raise ValueError(f"audit: no round_K/pairs.jsonl under {out}")
    return [(f, _load_pairs(f)) for f in files]


def audit_steps(out: str | Path, round_idx: int | None = None, *, show: int = 20) -> dict[str, int]:
    """Step-check every cot pair of OUT (or of OUT/round_K): print the chosen with a false
    statement, with a statement the checker cannot read (unknown), or with an unevaluated answer
    (at most `show` of each per round, with file:line), and return the counts over all rounds,
    rejected with a false statement included."""
    total = {"pairs": 0, "chosen_false": 0, "chosen_unknown": 0, "chosen_unevaluated": 0, "rejected_false": 0}
    for f, rows in _loaded(out, round_idx):
        hits: dict[str, list[str]] = {"chosen_false": [], "chosen_unknown": [], "chosen_unevaluated": []}
        n_cot = rejected_false = 0
        for n, p in rows:
            if p.metadata.get("mode", "cot") != "cot":
                continue
            n_cot += 1
            where = f"{f.parent.name}/{f.name}:{n} {p.metadata.get('problem_id')}"
            chosen = check_steps(str(p.chosen[-1]["content"]))
            for verdict, key in ((FALSE, "chosen_false"), (UNKNOWN_STEP, "chosen_unknown")):
                bad = [st for st in chosen.steps if st.verdict == verdict]
                if bad:
                    hits[key].append(f"{where}: {bad[0].text!r} ({bad[0].reason})")
            answer = p.metadata.get("chosen_extracted")
            if unevaluated(str(p.metadata.get("gold", "")), answer):
                hits["chosen_unevaluated"].append(f"{where}: answer {answer!r}, gold {p.metadata.get('gold')!r}")
            rejected_false += check_steps(str(p.rejected[-1]["content"])).first_false is not None
        total["pairs"] += n_cot
        total["rejected_false"] += rejected_false
        print(f"{f.parent.name}: {n_cot} cot pairs; chosen with a false statement {len(hits['chosen_false'])}, "
              f"an unreadable one {len(hits['chosen_unknown'])}, an unevaluated answer "
              f"{len(hits['chosen_unevaluated'])}; rejected with a false statement {rejected_false}")
        for key, lines in hits.items():
            total[key] += len(lines)
            for line in lines[:show]:
                print(f"  {key}: {line}")
            if len(lines) > show:
                print(f"  {key}: ... and {len(lines) - show} more")
    print("total: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    return total


def audit_run(out: str | Path, round_idx: int | None = None, *, show: int = 20,
              checker: MathVerifyChecker | None = None) -> dict[str, Any]:
    """Re-check every pair of OUT (or of OUT/round_K) with math-verify; print the disagreements by
    class (at most `show` examples per class and round) and return the counts. A missing
    directory or a bad pairs file raises ValueError naming it."""
    loaded = _loaded(out, round_idx)
    own = checker is None
    checker = checker or MathVerifyChecker()
    total = {"pairs": 0, "agree": 0, **{c: 0 for c in CLASSES}}
    try:
        for f, rows in loaded:
            classes = classify_pairs([p for _n, p in rows], checker)
            counts = {c: sum(cls == c for cls, _v in classes) for c in ("agree", *CLASSES)}
            total["pairs"] += len(rows)
            for c, n in counts.items():
                total[c] += n
            print(f"{f.parent.name}: {len(rows)} pairs, {counts['agree']} agree, "
                  f"{len(rows) - counts['agree']} disagree")
            for c, label in CLASSES.items():
                print(f"  {label}: {counts[c]}")
                hits = [(n, p, v) for (n, p), (cls, v) in zip(rows, classes) if cls == c]
                for n, p, v in hits[:show]:
                    md = p.metadata
                    print(f"    {f.parent.name}/{f.name}:{n} {md.get('problem_id')} gold {md.get('gold')!r} "
                          f"chosen {pair_answer(p, 'chosen')!r} ({v['chosen']}) "
                          f"rejected {pair_answer(p, 'rejected')!r} ({v['rejected']})")
                if len(hits) > show:
                    print(f"    ... and {len(hits) - show} more")
    finally:
        if own:
            checker.close()
    print(f"total: {total['pairs']} pairs; " + ", ".join(f"{label}: {total[c]}" for c, label in CLASSES.items()))
    return total


def posed_sample(out: str | Path, n: int, round_idx: int | None = None, seed: int = 0,
                 verifier: Any = None) -> list[dict[str, Any]]:
    """N posed problems of OUT (or OUT/round_K) drawn at random (seeded: the same draw every time),
    each with what a person needs to judge its gold: question, program, gold, second witness
    (program and answer, or the solver majority), the solver's answers with their labels and
    the pairs it gave. With a verifier, the draw is among the golds the run trusted: a problem
    the solver-majority witness rejected (run's pose.witness majority | both | auto) is left
    out. A missing run or round raises ValueError naming it."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"audit: {out} is not a directory")
    if n < 1:
        raise ValueError(f"audit: --posed must be >= 1, got {n}")
    rounds = [round_idx] if round_idx is not None else sorted(
        int(d.name[6:]) for d in out.glob("round_*") if d.name[6:].isdigit())
    posed: list[tuple[int, Problem]] = []
    for k in rounds:
        path = out / f"round_{k}" / "problems.jsonl"
        if not path.is_file():
            raise ValueError(f"audit: {path} not found")
        posed.extend((k, p) for p in io.read_records(path, Problem.from_dict) if p.origin == "posed")
    if not posed:
        raise ValueError(f"audit: no posed problems under {out}" + (f"/round_{round_idx}" if round_idx is not None else ""))
    if verifier is not None:
        posed = _majority_accepted(out, posed, verifier)
    picks = sorted(random.Random(seed).sample(range(len(posed)), min(n, len(posed)))) if posed else []
    wanted = {posed[i][1].id for i in picks}
    answers: dict[str, Counter[tuple[str, str]]] = {pid: Counter() for pid in wanted}
    pairs: Counter[str] = Counter()
    for k in sorted({posed[i][0] for i in picks}):
        rdir = out / f"round_{k}"
        if (rdir / "rollouts.jsonl").is_file():
            for r in io.read_records(rdir / "rollouts.jsonl", Rollout.from_dict, repair=True):
                if r.problem_id in wanted:
                    answers[r.problem_id][(r.extracted or "-", r.label or "-")] += 1
        if (rdir / "pairs.jsonl").is_file():
            for d in io.iter_jsonl(rdir / "pairs.jsonl"):
                if d.get("metadata", {}).get("problem_id") in wanted:
                    pairs[d["metadata"]["problem_id"]] += 1
    rows = []
    for i in picks:
        k, p = posed[i]
        rows.append({"round": k, "id": p.id, "kind": p.meta.get("kind"), "level": p.meta.get("level"),
                     "question": p.question, "program": p.program, "gold": p.answer,
                     "witness": p.meta.get("witness"), "expression_witness": p.meta.get("expression_witness"),
                     "solver": answers[p.id].most_common(), "pairs": pairs[p.id]})
    return rows


def _majority_accepted(out: Path, posed: list[tuple[int, Any]], verifier: Any) -> list[tuple[int, Any]]:
    """The posed problems the run's solver-majority witness accepted (all of them when the run's
    witness does not use it), by the same function the pair stage used."""
    cfg = run_config(out)
    if not uses_majority_witness(cfg.pose.witness):
        return posed
    only = majority_witnessed(cfg.pose.witness)
    kept = []
    for k in sorted({k for k, _ in posed}):
        problems = [p for kk, p in posed if kk == k]
        rollouts = load_rollouts(out / f"round_{k}" / "rollouts.jsonl", paths_per_problem(cfg))
        accepted, _ = majority_witness(problems, rollouts, verifier, cfg.pair.pseudo_agreement, only)
        kept += [(k, p) for p in accepted]
    return kept


def print_posed(rows: Sequence[dict[str, Any]]) -> None:
    """The posed sample as Markdown a person can judge quickly (one section per problem)."""
    for j, r in enumerate(rows, 1):
        w = r["witness"] or {}
        print(f"### {j}. {r['id']} (round {r['round']}, {r['kind']}, level {r['level']})")
        print(f"- question: {r['question']}")
        print(f"- program: `{'; '.join((r['program'] or '').splitlines())}` -> gold **{r['gold']}**")
        if w:
            print(f"- witness ({w.get('route')}): `{'; '.join((w.get('program') or '').splitlines())}` -> "
                  f"{w.get('answer')} ({'agrees' if w.get('agree') else 'disagrees'})")
        e = r.get("expression_witness")
        if e:
            print(f"- stated expression: `{e['expression']}` = {e['value']} "
                  f"({'agrees' if e['agree'] else 'disagrees'})")
        solved = ", ".join(f"{a} x{c} ({lab})" for (a, lab), c in r["solver"]) or "not solved"
        print(f"- solver answers: {solved}; pairs: {r['pairs']}")
        print()
