"""Benchmark the math verifier against math-verify, and the sandbox's execution rate.

    python bench/verifiers.py [bench/cases.jsonl] [--workers N] [--timeout S] [--sandbox-seconds S]
    python bench/verifiers.py --suite FILE [FILE...]     # agreement per suite, ours vs math-verify
    python bench/verifiers.py --speed [FILE] [--repeat-to 3000] [--rounds N] [--ours-root DIR ...]

Cases are JSONL with string ``gold`` and ``pred`` (a completion or a bare answer) and an optional
``expected`` (correct/incorrect). In one run it measures:

- ours: ``selfplay_verifiers.MathVerifier`` with default workers, cases streamed through ``verify_many``
  after the pool is warm (the one-time worker start is reported separately); each problem's
  gold is parsed once, as the library is meant to be used;
- math-verify: ``math_verify.parse`` + ``math_verify.verify`` with their defaults, one process,
  the gold parsed per case and wrapped in ``$...$`` when bare (without delimiters math-verify
  reads only the last number of a LaTeX answer);
- agreement of each with ``expected``; an ``unknown`` verdict counts as disagreement;
- the slowest case of each, and whether any of ours ran past its budget + 0.5 s;
- sandbox executions/s of ``print(1)`` through ``selfplay_verifiers.sandbox.Sandbox`` (skipped, with a
  note, when bubblewrap is unavailable).

The last line is machine-readable:
``verifier_speedup=X agree_ours=N/M agree_mathverify=N/M sandbox_exec_per_s=Z``.

``--suite`` prints, for each file, ``agree=N/M false_pos=F false_neg=G`` for ours and for
math-verify side by side (a false positive: we say correct where ``expected`` is not; a false
negative: anything but correct where ``expected`` is correct). Rows that carry math-verify test
options (``match_types``, ``precision``, ``strict``, ``allow_set_relation_comp``; see
bench/make_peer_suite.py) run math-verify exactly as its own test does.

``--speed`` times whole processes, start-up included: ``python -m selfplay_verifiers math`` (ours; with
``--ours-root`` another copy of the package, e.g. the code before a change; repeat it to time
several copies) against a one-shot math-verify script (``--mathverify-oneshot``), on FILE's rows
(default bench/cases.jsonl) repeated to ``--repeat-to`` lines. The programs run in turn, round
after round, so that each sees the same machine load; the best round of each is compared. It
also times the CLI's start-up alone (one fast-path line; one line that needs sympy, i.e. the
worker start). The last line is
``whole_process_speedup=X (python -m selfplay_verifiers math A s from ROOT, math-verify one-shot B s, N lines)``
for the first root (this tree by default), preceded by ``whole_process_speedup[ROOT]=X`` for the
others.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere without installing


def load(path: Path) -> list[dict]:
    cases = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        c = json.loads(line)
        if not isinstance(c.get("gold"), str) or not isinstance(c.get("pred"), str):
            raise SystemExit(f"{path}:{n}: gold and pred must be strings")
        cases.append(c)
    return cases


def run_ours(cases: list[dict], workers: int | None, timeout: float) -> dict:
    from selfplay_verifiers import MathVerifier
    t0 = time.perf_counter()
    mv = MathVerifier(workers=workers, timeout=timeout)
    mv.verify("x^2-1", "(x-1)(x+1)")  # start the workers outside the timed loop
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    verdicts = list(mv.verify_many((c["gold"], c["pred"]) for c in cases))
    elapsed = time.perf_counter() - t0
    mv.close()
    return {"labels": [v.label for v in verdicts], "seconds": [v.seconds for v in verdicts],
            "reasons": [v.reason for v in verdicts], "elapsed": elapsed, "startup": startup,
            "workers": mv.workers}


def _mv_gold(gold: str) -> str:
    g = gold.strip()
    return g if g.startswith("$") or "\\boxed" in g else f"${g}$"


def run_mathverify(cases: list[dict]) -> dict:
    import math_verify
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every timeout/error
    math_verify.verify(math_verify.parse("$1$"), math_verify.parse("1"))  # warm its imports
    labels, seconds = [], []
    t0 = time.perf_counter()
    for c in cases:
        t = time.perf_counter()
        try:
            ok = math_verify.verify(math_verify.parse(_mv_gold(c["gold"])),
                                    math_verify.parse(c["pred"]))
        except Exception:
            ok = None
        seconds.append(time.perf_counter() - t)
        labels.append("unknown" if ok is None else ("correct" if ok else "incorrect"))
    return {"labels": labels, "seconds": seconds, "elapsed": time.perf_counter() - t0}


def _mv_compare(c: dict) -> bool | None:
    """math-verify on one row: as its own test runs it when the row carries test options."""
    import math_verify as mv
    if "match_types" not in c:
        return mv.verify(mv.parse(_mv_gold(c["gold"])), mv.parse(c["pred"]))
    if c.get("plain_parse"):
        return mv.verify(mv.parse(c["gold"]), mv.parse(c["pred"]))
    cfg = [mv.LatexExtractionConfig(boxed_match_priority=0) if t == "latex"
           else mv.ExprExtractionConfig() for t in c["match_types"]]
    return mv.verify(mv.parse(c["gold"], cfg), mv.parse(c["pred"], cfg),
                     float_rounding=c.get("precision", 6), strict=c.get("strict", True),
                     allow_set_relation_comp=c.get("allow_set_relation_comp", False))


def mathverify_labels(cases: list[dict]) -> list[str]:
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    out = []
    for c in cases:
        try:
            ok = _mv_compare(c)
        except Exception:
            ok = None
        out.append("unknown" if ok is None else ("correct" if ok else "incorrect"))
    return out


def tally(labels: list[str], cases: list[dict]) -> str:
    agree = fp = fn = 0
    for lab, c in zip(labels, cases):
        agree += lab == c["expected"]
        fp += lab == "correct" and c["expected"] != "correct"
        fn += c["expected"] == "correct" and lab != "correct"
    return f"agree={agree}/{len(cases)} false_pos={fp} false_neg={fn}"


def run_suites(paths: list[Path], workers: int | None, timeout: float, show: bool) -> None:
    from selfplay_verifiers import MathVerifier
    with MathVerifier(workers=workers, timeout=timeout) as mv:
        for path in paths:
            cases = [c for c in load(path) if c.get("expected")]
            ours = [v.label for v in mv.verify_many((c["gold"], c["pred"]) for c in cases)]
            theirs = mathverify_labels(cases)
            print(f"{path}: ours {tally(ours, cases)} | math-verify {tally(theirs, cases)}")
            if show:
                for c, lo, lt in zip(cases, ours, theirs):
                    if lo != c["expected"] or lt != c["expected"]:
                        print(f"  expected={c['expected']} ours={lo} mv={lt} "
                              f"{c.get('source', '')} gold={c['gold'][:50]!r}")


def _timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None,
           stdin: str | None = None) -> float:
    import subprocess
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, input=stdin, text=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - t0


def run_speed(path: Path, repeat_to: int, ours_roots: list[Path], rounds: int) -> None:
    """Whole processes, start-up included, interleaved round by round so that every program
    sees the same machine load; each program's best round is compared."""
    import tempfile
    rows = [json.dumps({k: c[k] for k in c if k != "expected"}) for c in load(path)]
    distinct = len(rows)
    rows = (rows * (repeat_to // len(rows) + 1))[:repeat_to]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(rows) + "\n")
    roots = [r.resolve() for r in ours_roots] or [ROOT]
    envs = []
    for root in roots:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(root)  # "python -m" imports from its cwd first: run it there too
        envs.append(env)
    fast = json.dumps({"gold": "18", "pred": "So the answer is 18."}) + "\n"
    slow = json.dumps({"gold": "x^2-1", "pred": "(x-1)(x+1)"}) + "\n"
    cli = [sys.executable, "-m", "selfplay_verifiers", "math", "-", "-q"]
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for root, env in zip(roots, envs):
            times.setdefault(f"{root} start, fast path only", []).append(
                _timed(cli, env, root, fast))
            times.setdefault(f"{root} start, one sympy case", []).append(
                _timed(cli, env, root, slow))
            times.setdefault(str(root), []).append(
                _timed([sys.executable, "-m", "selfplay_verifiers", "math", f.name, "-q"], env, root))
        times.setdefault("math-verify", []).append(
            _timed([sys.executable, str(Path(__file__).resolve()), "--mathverify-oneshot", f.name]))
    os.unlink(f.name)
    best = {k: min(v) for k, v in times.items()}
    print(f"{len(rows)} lines ({distinct} distinct rows of {path} repeated), whole processes "
          f"(start-up included), {rounds} interleaved rounds, best of each:")
    for k, v in times.items():
        print(f"  {k:60s} {best[k]:6.2f} s  (rounds: {' '.join(f'{t:.2f}' for t in v)})")
    theirs = best["math-verify"]
    for root in roots[1:]:
        print(f"whole_process_speedup[{root}]={theirs / best[str(root)]:.1f}")
    print(f"whole_process_speedup={theirs / best[str(roots[0])]:.1f} (python -m selfplay_verifiers math "
          f"{best[str(roots[0])]:.2f} s from {roots[0]}, math-verify one-shot {theirs:.2f} s, "
          f"{len(rows)} lines)")


def mathverify_oneshot(path: Path) -> None:
    """What a user of math-verify would run: one process, parse + verify each line."""
    labels = mathverify_labels(load(path))
    print(json.dumps({k: labels.count(k) for k in set(labels)}))


def run_sandbox(seconds: float) -> tuple[float | None, str]:
    try:
        from selfplay_verifiers.sandbox import Sandbox
    except ImportError as e:
        return None, f"sandbox skipped: selfplay_verifiers.sandbox not importable ({e})"
    try:
        sb = Sandbox(timeout=5.0)
    except Exception as e:  # SandboxUnavailable: bubblewrap missing or unusable
        return None, f"sandbox skipped: {e}"
    with sb:
        sb.run("print(1)")  # warm
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            res = sb.run("print(1)")
            if res.stdout.strip() != "1":
                return None, f"sandbox run failed: {res.verdict.reason} {res.stderr[-200:]!r}"
            n += 1
        rate = n / (time.perf_counter() - t0)
    return rate, f"sandbox: {n} runs of print(1), one at a time, {rate:.0f} exec/s"


def agreement(labels: list[str], cases: list[dict]) -> tuple[int, int]:
    scored = [(lab, c["expected"]) for lab, c in zip(labels, cases) if c.get("expected")]
    return sum(a == b for a, b in scored), len(scored)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="?", type=Path, default=Path(__file__).with_name("cases.jsonl"))
    ap.add_argument("--workers", type=int, default=None, help="default: CPUs available")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--sandbox-seconds", type=float, default=2.0)
    ap.add_argument("--show-disagreements", action="store_true")
    ap.add_argument("--suite", type=Path, nargs="+", help="agreement per suite, ours vs math-verify")
    ap.add_argument("--speed", type=Path, nargs="?", metavar="FILE",
                    const=Path(__file__).with_name("cases.jsonl"),
                    help="whole-process timing on this file's rows (default: bench/cases.jsonl)")
    ap.add_argument("--repeat-to", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ours-root", type=Path, action="append", default=[],
                    help="directory holding the verifiers package to use (default: this tree); "
                    "with --speed repeatable: the first one gives the last line's ratio, the "
                    "others (e.g. the code before a change) are timed in the same rounds")
    ap.add_argument("--mathverify-oneshot", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ours_root and not args.speed:
        if len(args.ours_root) > 1:
            ap.error("--ours-root is repeatable only with --speed")
        root = args.ours_root[0]
        sys.path.insert(0, str(root))  # e.g. /tmp/verifiers_orig: the code before
        os.environ["PYTHONPATH"] = str(root)  # and for the pool's worker processes,
        args.suite = [p.resolve() for p in args.suite or []]
        os.chdir(root)  # which run "python -m" and so import from their cwd first
    if args.mathverify_oneshot:
        return mathverify_oneshot(args.mathverify_oneshot)
    if args.suite:
        return run_suites(args.suite, args.workers, args.timeout, args.show_disagreements)
    if args.speed:
        return run_speed(args.speed, args.repeat_to, args.ours_root, args.rounds)
    cases = load(args.cases)
    print(f"{len(cases)} cases from {args.cases}; {os.cpu_count()} CPUs")

    ours = run_ours(cases, args.workers, args.timeout)
    theirs = run_mathverify(cases)
    rate_ours = len(cases) / ours["elapsed"]
    rate_theirs = len(cases) / theirs["elapsed"]
    a_ours, a_theirs = agreement(ours["labels"], cases), agreement(theirs["labels"], cases)
    print(f"ours:        {rate_ours:9.1f} verdicts/s ({ours['elapsed']:.3f} s, "
          f"{ours['workers']} workers, warm; one-time worker start {ours['startup']:.2f} s, "
          f"{len(cases) / (ours['elapsed'] + ours['startup']):.1f} verdicts/s if counted)")
    print(f"math-verify: {rate_theirs:9.1f} verdicts/s ({theirs['elapsed']:.3f} s, 1 process)")
    print(f"agreement with expected: ours {a_ours[0]}/{a_ours[1]}, "
          f"math-verify {a_theirs[0]}/{a_theirs[1]}")
    reasons: dict[str, int] = {}
    for r in ours["reasons"]:
        reasons[r] = reasons.get(r, 0) + 1
    print("our reasons: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
    for name, res in (("ours", ours), ("math-verify", theirs)):
        i = max(range(len(cases)), key=lambda k: res["seconds"][k])
        print(f"slowest {name}: {res['seconds'][i]:.3f} s  gold={cases[i]['gold'][:40]!r} "
              f"pred=...{cases[i]['pred'][-50:]!r}")
    over = sum(s > args.timeout + 0.5 for s in ours["seconds"])
    print(f"ours over budget+0.5 s ({args.timeout + 0.5:.1f} s): {over}")
    if args.show_disagreements:
        for c, lo, lt in zip(cases, ours["labels"], theirs["labels"]):
            if c.get("expected") and (lo != c["expected"] or lt != c["expected"]):
                print(f"  expected={c['expected']} ours={lo} mv={lt} gold={c['gold']!r} "
                      f"pred=...{c['pred'][-70:]!r}")

    rate_sb, note = run_sandbox(args.sandbox_seconds)
    print(note)
    sb = f"{rate_sb:.1f}" if rate_sb is not None else "skipped"
    print(f"verifier_speedup={rate_ours / rate_theirs:.1f} agree_ours={a_ours[0]}/{a_ours[1]} "
          f"agree_mathverify={a_theirs[0]}/{a_theirs[1]} sandbox_exec_per_s={sb}")


if __name__ == "__main__":
    main()
