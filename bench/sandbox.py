"""Sandbox rate with the allowed libraries preloaded in the server vs imported by each job.

    python bench/sandbox.py [--seconds S] [--workers W] [--mode bwrap|unisolated-UNSAFE]

For preload on and off (Sandbox(preload=...), default libraries): the server start time, then
exec/s for a trivial program and for a sympy program, each run for about S seconds of wall time
(at least 5 jobs), every output checked. One table, printed at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from selfplay_verifiers.sandbox import DEFAULT_LIBRARIES, Sandbox  # noqa: E402

PROGRAMS = {
    "trivial": ("print(1)", "1\n"),
    "sympy": ("import sympy; x=sympy.symbols('x'); print(sympy.factor(x**2-1))",
              "(x - 1)*(x + 1)\n"),
}


def rate(sb: Sandbox, code: str, want: str, seconds: float) -> tuple[float, int]:
    """(executions per wall second, jobs run); raises if any output is wrong."""
    for _ in range(2 * sb.workers):  # warm every server
        sb.run(code)
    n, t0 = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - t0 < seconds:
        batch = sb.run_many([code] * sb.workers)
        bad = [r for r in batch if r.stdout != want or not r.verdict.is_correct]
        if bad:
            raise SystemExit(f"wrong result: {bad[0].verdict} {bad[0].stdout!r} {bad[0].stderr[-300:]}")
        n += len(batch)
    return n / (time.perf_counter() - t0), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="wall time per measurement")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--mode", default="bwrap")
    args = ap.parse_args()
    rows = []
    for preload in (True, False):
        t0 = time.perf_counter()
        with Sandbox(workers=args.workers, mode=args.mode, preload=preload) as sb:
            start = time.perf_counter() - t0
            rates = {name: rate(sb, code, want, args.seconds)
                     for name, (code, want) in PROGRAMS.items()}
        rows.append((preload, start, rates))
    print(f"libraries={','.join(DEFAULT_LIBRARIES)} mode={args.mode} workers={args.workers} "
          f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print(f"{'preload':<8} {'start s':>8} " + " ".join(f"{n + ' exec/s':>16}" for n in PROGRAMS))
    for preload, start, rates in rows:
        cells = " ".join(f"{f'{r:.1f} ({k})':>16}" for r, k in rates.values())
        print(f"{'on' if preload else 'off':<8} {start:>8.2f} {cells}")


if __name__ == "__main__":
    main()
