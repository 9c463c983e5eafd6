"""Benchmark the math verifier against math-verify, and the sandbox's execution rate.

    python bench/verifiers.py [bench/cases.jsonl] [--workers N] [--timeout S] [--sandbox-seconds S]

Cases are JSONL with string ``gold`` and ``pred`` (a completion or a bare answer) and an optional
``expected`` (correct/incorrect). In one run it measures:

- ours: ``verifiers.MathVerifier`` with default workers, cases streamed through ``verify_many``
  after the pool is warm (the one-time worker start is reported separately); each problem's
  gold is parsed once, as the library is meant to be used;
- math-verify: ``math_verify.parse`` + ``math_verify.verify`` with their defaults, one process,
  the gold parsed per case and wrapped in ``$...$`` when bare (without delimiters math-verify
  reads only the last number of a LaTeX answer);
- agreement of each with ``expected``; an ``unknown`` verdict counts as disagreement;
- the slowest case of each, and whether any of ours ran past its budget + 0.5 s;
- sandbox executions/s of ``print(1)`` through ``verifiers.sandbox.Sandbox`` (skipped, with a
  note, when bubblewrap is unavailable).

The last line is machine-readable:
``verifier_speedup=X agree_ours=N/M agree_mathverify=N/M sandbox_exec_per_s=Z``.
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
    from verifiers import MathVerifier
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


def run_sandbox(seconds: float) -> tuple[float | None, str]:
    try:
        from verifiers.sandbox import Sandbox
    except ImportError as e:
        return None, f"sandbox skipped: verifiers.sandbox not importable ({e})"
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
    args = ap.parse_args()
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
