"""Command line: ``python -m verifiers math IN.jsonl`` and ``python -m verifiers run-code F.py``."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter, deque
from concurrent.futures import Future
from typing import IO, Any, Iterator

from .verdict import UNKNOWN, Verdict

_DESCRIPTION = """\
Verify model answers.

  math IN.jsonl      check every line's `pred` (a full completion or a bare answer) against its
                     `gold`; write each line back with verdict/reason/extracted/seconds
  run-code FILE.py   run one program in the bubblewrap sandbox; print its stdout, then one JSON
                     line with the verdict (with --gold: its last output line vs the gold)
"""

_MATH_EPILOG = """\
Output: every input line, in input order, with all its fields plus "verdict"
(correct/incorrect/unknown), "reason" (ok, wrong, no_answer, ambiguous, parse_error, timeout,
too_large, error), "extracted" and "seconds". A malformed line (bad JSON, missing or non-string gold/pred)
is reported on stderr as IN.jsonl:LINE: ... and written with verdict unknown, reason
parse_error ({"line": N, "raw": ...} when it is not a JSON object). Exit status 0 when the
output was written (malformed lines included), 2 on usage or I/O errors."""


def _dumps(obj: dict[str, Any]) -> bytes:
    import orjson
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _records(path: str, lines: Iterator[bytes]) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record or None, error or None) for each non-blank line."""
    import orjson
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            yield n, {"line": n, "raw": raw.decode("utf-8", "replace").rstrip("\r\n")}, \
                f"invalid JSON ({str(e).split(':', 1)[0]})"
            continue
        if not isinstance(rec, dict):
            yield n, {"line": n, "raw": raw.decode("utf-8", "replace").rstrip("\r\n")}, \
                f"expected a JSON object, got {type(rec).__name__}"
            continue
        missing = [k for k in ("gold", "pred") if k not in rec]
        if missing:
            yield n, rec, f"missing field {', '.join(repr(k) for k in missing)}"
            continue
        bad = [k for k in ("gold", "pred") if not isinstance(rec[k], str)]
        if bad:
            yield n, rec, f"field {bad[0]!r} must be a string, got {type(rec[bad[0]]).__name__}"
            continue
        yield n, rec, None


def _open_out(path: str | None) -> tuple[IO[bytes], str | None]:
    if path is None or path == "-":
        return sys.stdout.buffer, None
    if os.path.isdir(path):  # checked first: the rename at the end would fail after all the work
        raise IsADirectoryError(21, "is a directory; give a file name", path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + ".", dir=d)
    return os.fdopen(fd, "wb"), tmp


def cmd_math(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pool import MathVerifier
    try:
        fin = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    except OSError as e:
        print(f"error: cannot read {args.input}: {e.strerror}", file=sys.stderr)
        return 2
    total = None
    if fin is not sys.stdin.buffer:
        with open(args.input, "rb") as f:  # one cheap pass so the bar can show an ETA
            total = sum(1 for line in f if line.strip())
    try:
        out, tmp = _open_out(args.output)
    except OSError as e:
        print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 2
    counts: Counter = Counter()
    ok = False
    try:
        with MathVerifier(workers=args.workers, timeout=args.timeout) as mv, \
                tqdm(total=total, unit="line", file=sys.stderr, disable=args.quiet,
                     dynamic_ncols=True) as bar:
            window: deque[tuple[dict, Future | Verdict]] = deque()
            limit = max(64, 16 * mv.workers)

            def flush(block: bool) -> None:
                while window and (block or len(window) >= limit
                                  or not isinstance(window[0][1], Future) or window[0][1].done()):
                    rec, res = window.popleft()
                    v = res.result() if isinstance(res, Future) else res
                    rec.update(verdict=v.label, reason=v.reason, extracted=v.extracted,
                               seconds=round(v.seconds, 6))
                    counts[(v.label, v.reason)] += 1
                    out.write(_dumps(rec))
                    bar.update(1)

            for n, rec, err in _records(args.input, fin):
                if err is not None:
                    bar.write(f"{args.input}:{n}: {err}", file=sys.stderr)  # keeps the bar intact
                    window.append((rec, Verdict(UNKNOWN, "parse_error")))
                else:
                    window.append((rec, mv.submit(rec["gold"], rec["pred"])))
                flush(block=False)
            flush(block=True)
        out.flush()
        ok = True
    finally:
        if fin is not sys.stdin.buffer:
            fin.close()
        if tmp is not None:
            out.close()
            if ok:
                try:
                    os.replace(tmp, args.output)  # atomic: readers never see a half-written file
                except OSError as e:  # e.g. the target became a directory meanwhile: one line, no temp left
                    os.unlink(tmp)
                    print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
                    return 2
            else:
                os.unlink(tmp)
    summary = ", ".join(f"{lab}/{why}={c}" for (lab, why), c in sorted(counts.items()))
    print(f"verifiers math: {sum(counts.values())} lines: {summary}", file=sys.stderr)
    return 0


def cmd_run_code(args: argparse.Namespace) -> int:
    import json

    try:
        with open(args.file, encoding="utf-8") as f:
            code = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"error: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    from .sandbox import Sandbox, SandboxUnavailable
    mode = "unisolated-UNSAFE" if args.unisolated_UNSAFE else "bwrap"
    try:
        sb = Sandbox(timeout=args.timeout, mode=mode)
    except SandboxUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with sb:
        res = sb.run(code)
    sys.stdout.write(res.stdout)
    if res.stdout and not res.stdout.endswith("\n"):
        sys.stdout.write("\n")
    v = res.verdict
    extracted = None
    if args.gold is not None and v.is_correct:  # the program ran; now judge its answer
        lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
        extracted = lines[-1].strip() if lines else None
        if extracted is None:
            v = Verdict("incorrect", "no_answer", None, v.seconds)
        else:
            from .pool import MathVerifier
            with MathVerifier(workers=1, timeout=args.timeout) as mv:
                v = mv.verify(args.gold, extracted, extract=False)
    print(json.dumps({"verdict": v.label, "reason": v.reason, "extracted": extracted,
                      "exit_code": res.exit_code, "seconds": round(res.seconds, 6),
                      "stderr": res.stderr[-2000:]}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verifiers", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{math,run-code}")
    m = sub.add_parser("math", help="check gold/pred pairs from a JSONL file",
                       description="Check every (gold, pred) line of IN.jsonl in parallel.",
                       epilog=_MATH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("input", metavar="IN.jsonl", help="input JSONL with string fields gold, pred "
                   "('-' for stdin)")
    m.add_argument("-o", "--output", metavar="OUT.jsonl", default=None,
                   help="output file, written atomically (default: stdout)")
    m.add_argument("--workers", type=int, default=None,
                   help="worker processes for sympy comparisons (default: CPUs available)")
    m.add_argument("--timeout", type=float, default=3.0,
                   help="wall-clock budget per comparison in seconds (default: 3)")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_math)
    r = sub.add_parser("run-code", help="run one program in the sandbox",
                       description="Run FILE.py in the bubblewrap sandbox; print its stdout and a "
                       "last JSON line {verdict, reason, extracted, exit_code, seconds, stderr}. "
                       "Exit status 2 if the sandbox is unavailable.")
    r.add_argument("file", metavar="FILE.py", help="the program to run")
    r.add_argument("--gold", default=None,
                   help="compare the program's last non-empty output line to this answer")
    r.add_argument("--timeout", type=float, default=5.0,
                   help="wall-clock limit for the program in seconds (default: 5)")
    r.add_argument("--unisolated-UNSAFE", dest="unisolated_UNSAFE", action="store_true",
                   help="run WITHOUT bubblewrap isolation (network and host files reachable)")
    r.set_defaults(func=cmd_run_code)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        print("error: --workers must be >= 1", file=sys.stderr)
        return 2
    if getattr(args, "timeout", 1.0) <= 0:
        print("error: --timeout must be > 0", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
