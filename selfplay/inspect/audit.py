"""Audit preference pairs with a second, independent checker: math-verify (`math_verify`).

Our verifier labelled each pair's chosen path correct and its rejected path incorrect. math-verify
(its own LaTeX/sympy parsing and comparison) re-checks both answers against the pair's gold
(metadata["gold"]). A pair lands in one class, first match wins:

    chosen_disputed    math-verify calls the chosen answer wrong
    rejected_disputed  math-verify calls the rejected answer right
    unparsed           math-verify cannot judge (it parses nothing, times out, runs out of memory,
                       the size screen refuses the answer, or it fails)
    agree              both checkers agree

`selfplay audit OUT` prints the disagreements by class; `verify.crosscheck = true` drops the
disputed pairs at pair time (crosscheck_filter). Both use classify_pairs.

Why a child process: math-verify's own timeouts use signal.alarm, which fails off the main thread
and cannot interrupt C code (gmpy2 on \\boxed{100000000!} ran 33 s and took 1 GB here). So it runs
with its alarms off in one child process under RLIMIT_AS; the parent gives every check `timeout`
seconds of wall clock, then kills and restarts the child. Answers that verifiers' size screen
flags never reach it.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from selfplay.core.records import Pair
from verifiers.numbers import screen

CLASSES = {"chosen_disputed": "chosen called wrong by math-verify",
           "rejected_disputed": "rejected called right by math-verify",
           "unparsed": "math-verify can't parse"}
INSTALL = "pip install math-verify==0.9.0"

# The child: parse + verify with math-verify's alarms off (the parent's kill is the timeout).
# A check that raises is reported as "error", the verdict of a checker that could not judge.
_CHILD = r"""
import json, logging, resource, sys
limit = int(sys.argv[1]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from math_verify import parse, verify
logging.getLogger("math_verify").setLevel(logging.CRITICAL)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    try:
        gold, pred = parse(req["gold"], parsing_timeout=None), parse(req["pred"], parsing_timeout=None)
        if not gold or not pred:
            out = "unparsed"
        else:
            out = "correct" if verify(gold, pred, timeout_seconds=None) else "incorrect"
    except MemoryError:
        out = "too_large"
    except Exception as e:  # reported to the parent as a verdict, never swallowed
        out = "error:" + type(e).__name__
    print(json.dumps({"r": out}), flush=True)
"""


def mv_text(answer: str) -> str:
    """math-verify needs a bare LaTeX answer inside $...$; without it, it falls back to the last
    number of the text (then "10, 4, 2" matches "4, 12, 2")."""
    a = answer.strip()
    return a if a.startswith("$") or "\\boxed" in a else f"${a}$"


class MathVerifyChecker:
    """math-verify in a killable child process: check(gold, answer) -> "correct" | "incorrect" |
    "unparsed" | "timeout" | "too_large" | "error:<exception>". Never hangs; not thread-safe."""

    def __init__(self, timeout: float = 5.0, memory_mb: int = 2048, start_timeout: float = 120.0) -> None:
        self.timeout, self.memory_mb, self.start_timeout = timeout, memory_mb, start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._err: Any = None
        self._buf = b""

    def _start(self) -> None:
        # stderr goes to a file: a chatty child can never block on a full pipe
        if self._err is not None:
            self._err.close()
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(self.memory_mb)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._err)
        self._buf = b""
        if self._read_line(self.start_timeout) is None:
            self._kill()
            self._err.seek(0)
            err = self._err.read()[-2000:]
            last = (err.decode(errors="replace").strip().splitlines() or ["no reply"])[-1]
            raise RuntimeError(f"audit: math-verify did not start ({last}); {INSTALL}")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for f in (self._proc.stdin, self._proc.stdout):
                if f is not None:
                    f.close()
        self._proc = None

    def _read_line(self, timeout: float) -> dict[str, Any] | None:
        """The child's next reply, or None if it is silent for `timeout` s or has exited."""
        assert self._proc is not None and self._proc.stdout is not None
        fd, deadline = self._proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the child died (killed by the memory limit, or crashed)
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def check(self, gold: str, answer: str) -> str:
        if screen(gold) or screen(answer):
            return "too_large"
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"gold": mv_text(gold), "pred": mv_text(answer)}).encode() + b"\n")
            self._proc.stdin.flush()
            reply = self._read_line(self.timeout)
        except BrokenPipeError:  # the child is gone: this check has no verdict
            reply = None
        if reply is None:
            dead = self._proc.poll() is not None
            self._kill()  # the next check starts a fresh child
            return "error:died" if dead else "timeout"
        return str(reply["r"])

    def close(self) -> None:
        self._kill()
        if self._err is not None:
            self._err.close()
            self._err = None

    def __enter__(self) -> "MathVerifyChecker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answer(pair: Pair, side: str) -> str | None:
    """The answer our verifier read from one side (metadata), else extracted from its text."""
    from verifiers import extract_answer

    md = pair.metadata.get(f"{side}_extracted")
    if isinstance(md, str) and md.strip():
        return md
    msgs = getattr(pair, side)
    return extract_answer(str(msgs[-1].get("content", ""))) if msgs else None


def classify_pairs(pairs: Sequence[Pair], checker: MathVerifyChecker) -> list[tuple[str, dict[str, str]]]:
    """(class, {"chosen": verdict, "rejected": verdict}) per pair, in order; see the module doc.
    A rejected path without any answer cannot be called right, so it never disputes."""
    out = []
    for p in pairs:
        gold = str(p.metadata.get("gold", ""))
        chosen, rejected = _answer(p, "chosen"), _answer(p, "rejected")
        v = {"chosen": checker.check(gold, chosen) if chosen else "unparsed",
             "rejected": checker.check(gold, rejected) if rejected else "no_answer"}
        if v["chosen"] == "incorrect":
            cls = "chosen_disputed"
        elif v["rejected"] == "correct":
            cls = "rejected_disputed"
        elif v["chosen"] != "correct" or v["rejected"] not in ("incorrect", "no_answer"):
            cls = "unparsed"
        else:
            cls = "agree"
        out.append((cls, v))
    return out


def crosscheck_filter(pairs: Sequence[Pair], checker: MathVerifyChecker | None = None
                      ) -> tuple[list[Pair], dict[str, int], dict[str, int]]:
    """(kept, dropped, info): drop the pairs math-verify disputes ("chosen_disputed",
    "rejected_disputed"); keep the others with metadata["crosscheck"] = their class. info counts
    the pairs checked and those math-verify could not judge ("unparsed", kept)."""
    dropped = {"chosen_disputed": 0, "rejected_disputed": 0}
    info = {"checked": len(pairs), "unparsed": 0}
    if not pairs:
        return [], dropped, info
    own = checker is None
    checker = checker or MathVerifyChecker()
    try:
        classes = classify_pairs(pairs, checker)
    finally:
        if own:
            checker.close()
    kept = []
    for p, (cls, _v) in zip(pairs, classes):
        if cls in dropped:
            dropped[cls] += 1
            continue
        info["unparsed"] += cls == "unparsed"
        kept.append(replace(p, metadata={**p.metadata, "crosscheck": cls}))
    return kept, dropped, info


def _load_pairs(path: Path) -> list[tuple[int, Pair]]:
    from selfplay.core import io

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


def audit_run(out: str | Path, round_idx: int | None = None, *, show: int = 20,
              checker: MathVerifyChecker | None = None) -> dict[str, Any]:
    """Re-check every pair of OUT (or of OUT/round_K) with math-verify; print the disagreements by
    class (at most `show` examples per class and round) and return the counts. A missing
    directory or a bad pairs file raises ValueError naming it."""
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
    loaded = [(f, _load_pairs(f)) for f in files]  # every file is read (and refused) before any check
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
                          f"chosen {_answer(p, 'chosen')!r} ({v['chosen']}) "
                          f"rejected {_answer(p, 'rejected')!r} ({v['rejected']})")
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
    import random
    from collections import Counter

    from selfplay.core import io
    from selfplay.core.records import Problem, Rollout

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
    from selfplay.run.layout import run_config
    from selfplay.pair.pseudo import majority_witness, majority_witnessed, uses_majority_witness
    from selfplay.run.round import load_rollouts, paths_per_problem

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
