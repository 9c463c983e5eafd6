"""Command line: ``python -m selfplay_verifiers math IN.jsonl``, ``python -m selfplay_verifiers steps IN.jsonl`` and
``python -m selfplay_verifiers run-code F.py ...``."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter, deque
from concurrent.futures import Future
from contextlib import contextmanager
from typing import IO, Any, Iterator

from .verdict import UNKNOWN, Verdict

_DESCRIPTION = """\
Verify model answers.

  math IN.jsonl      check every line's `pred` (a full completion or a bare answer) against its
                     `gold`; write each line back with verdict/reason/extracted/seconds
  steps IN.jsonl     find and judge every arithmetic statement of each line's `text` (2 + 6 = 7,
                     "3 plus 4 is 7", chains); write each line back with its steps
  run-code FILE.py [FILE.py ...]
                     run programs, in order, in one bubblewrap sandbox; print each one's stdout,
                     then one JSON line with its verdict (with --gold: last output line vs gold)
"""

_MATH_EPILOG = """\
Output: every input line, in input order, with all its fields plus "verdict"
(correct/incorrect/unknown), "reason" (ok, wrong, no_answer, ambiguous, parse_error, timeout,
too_large, error), "extracted" and "seconds". gold and pred are strings; a number (not a
boolean) is read as its decimal text (18 -> "18"). A malformed line (bad JSON, a missing
gold/pred, one of another type) is reported on stderr as IN.jsonl:LINE: ... and written with
verdict unknown, reason parse_error ({"line": N, "raw": ...} when it is not a JSON object).
An input without records writes nothing and warns "IN.jsonl: no records" on stderr.
Exit status 0 when the output was written (malformed lines and an empty input included), 2 on
usage or I/O errors."""

_STEPS_EPILOG = """\
Output: every input line, in input order, with all its fields plus "steps" (a list of
{start, end, text, verdict, reason, left, right}: verdict true / false / unknown, start/end
character offsets into the text), "first_false" (the first false step or null), "counts"
({true, false, unknown}) and "truncated". A malformed line (bad JSON, no string field --field)
is reported on stderr as IN.jsonl:LINE: ... and written with "steps": null. The policy (what is
a statement, when it is unknown): docs/verifiers.md, "Step checker". A summary line with the
statements per second goes to stderr. Exit status 0 when the output was written, 2 on usage
or I/O errors."""

_RUN_EPILOG = """\
Each program runs as a separate job of ONE sandbox server (workers=1), in the order given, as
the pipeline runs them: its stdout, then one JSON line {file, verdict, reason, extracted,
exit_code, seconds, stderr}. --gold applies to every program. Reasons: ok; wrong (--gold, the
last line is not the gold); no_output (the program printed nothing); syntax_error (it does not
compile); runtime_error; timeout; memory; output_limit; killed; sandbox_error (unknown).

Libraries: the standard library plus {libraries} (with what they need at import);
--library NAME adds one (repeatable), --no-libraries starts from the standard library only.

Exit status: 0 every program correct; 1 at least one incorrect; 3 at least one unknown (the
sandbox failed; the worst of 0 < 1 < 3 wins); 2 usage or I/O error, sandbox unavailable, or
an unknown library (nothing is run)."""

_EXIT = {"correct": 0, "incorrect": 1, "unknown": 3}
_WINDOW = 8192  # lines held in memory at most while a verdict is pending


def _dumps(obj: dict[str, Any]) -> bytes:
    import orjson
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _records(path: str, lines: Iterator[bytes], fields: tuple[str, ...] = ("gold", "pred"),
             numbers: bool = True) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, record or None, error or None) for each non-blank line whose `fields` are
    strings (or numbers, with `numbers`)."""
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
        missing = [k for k in fields if k not in rec]
        if missing:
            yield n, rec, f"missing field {', '.join(repr(k) for k in missing)}"
            continue
        kinds = (str, int, float) if numbers else str
        bad = [k for k in fields if not isinstance(rec[k], kinds) or isinstance(rec[k], bool)]
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


class _IOFailed(Exception):
    """An input or output could not be opened or moved into place (its one error line is printed)."""


@contextmanager
def _jsonl_io(args: argparse.Namespace) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """(input, output) of a JSONL command: args.input ('-': stdin), args.output (atomic, see
    _open_out / _close_out). Raises _IOFailed after printing `error: cannot read/write ...`."""
    try:
        fin = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    except OSError as e:
        print(f"error: cannot read {args.input}: {e.strerror}", file=sys.stderr)
        raise _IOFailed from None
    try:
        out, tmp = _open_out(args.output)
    except OSError as e:
        print(f"error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        if fin is not sys.stdin.buffer:
            fin.close()
        raise _IOFailed from None
    ok = False
    try:
        yield fin, out
        out.flush()
        ok = True
    finally:
        if fin is not sys.stdin.buffer:
            fin.close()
        failed = _close_out(out, tmp, args.output, ok) != 0
    if failed:
        raise _IOFailed


def _count_lines(path: str) -> int | None:
    """Non-blank lines of a file (None for stdin): one cheap pass so a bar can show an ETA."""
    if path == "-":
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _close_out(out: IO[bytes], tmp: str | None, target: str | None, ok: bool) -> int:
    """Finish an output opened by _open_out: move the temp file into place (atomic: readers
    never see a half-written file) when `ok`, else remove it. 2 when the move failed."""
    if tmp is None:
        return 0
    out.close()
    if not ok:
        os.unlink(tmp)
        return 0
    try:
        os.replace(tmp, target)
    except OSError as e:  # e.g. the target became a directory meanwhile: one line, no temp left
        os.unlink(tmp)
        print(f"error: cannot write {target}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def cmd_math(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .pool import MathVerifier
    counts: Counter = Counter()
    try:
        with _jsonl_io(args) as (fin, out), MathVerifier(workers=args.workers, timeout=args.timeout) as mv, \
                tqdm(total=_count_lines(args.input), unit="line", file=sys.stderr, disable=args.quiet,
                     dynamic_ncols=True) as bar:
            window: deque[tuple[dict, Future | Verdict]] = deque()
            # Lines wait here, in input order, until their verdict is known. The bound is
            # generous on purpose: while the first sympy case waits for the workers to start
            # (about a second: they import sympy), the lines after it are read and answered
            # by the fast path in this process instead of waiting behind it.
            limit = max(_WINDOW, 16 * mv.workers)

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
                else:  # a number is read as its text; the record keeps its own value
                    window.append((rec, mv.submit(str(rec["gold"]), str(rec["pred"]))))
                flush(block=False)
            flush(block=True)
    except _IOFailed:
        return 2
    if not counts:
        print(f"{args.input}: no records", file=sys.stderr)
        return 0
    summary = ", ".join(f"{lab}/{why}={c}" for (lab, why), c in sorted(counts.items()))
    print(f"verifiers math: {sum(counts.values())} lines: {summary}", file=sys.stderr)
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    import time

    from .steps import check_steps
    counts: Counter = Counter()
    lines, busy = 0, 0.0
    try:
        with _jsonl_io(args) as (fin, out):
            for n, rec, err in _records(args.input, fin, fields=(args.field,), numbers=False):
                lines += 1
                if err is not None:
                    print(f"{args.input}:{n}: {err}", file=sys.stderr)
                    out.write(_dumps({**(rec or {}), "steps": None}))
                    continue
                t0 = time.perf_counter()
                report = check_steps(rec[args.field])
                busy += time.perf_counter() - t0
                counts.update(report.counts)
                first = report.first_false
                out.write(_dumps({**rec, "steps": [st.to_dict() for st in report.steps],
                                  "first_false": first.to_dict() if first else None,
                                  "counts": report.counts, "truncated": report.truncated}))
    except _IOFailed:
        return 2
    if not lines:
        print(f"{args.input}: no records", file=sys.stderr)
        return 0
    total = sum(counts.values())
    rate = f", {total / busy:.0f} statements/s" if busy > 0 and total else ""
    print(f"verifiers steps: {lines} lines, {total} statements: true={counts['true']}, "
          f"false={counts['false']}, unknown={counts['unknown']}{rate}", file=sys.stderr)
    return 0


def cmd_run_code(args: argparse.Namespace) -> int:
    import json

    codes = []
    for path in args.files:  # read every file first: an unreadable one runs nothing
        try:
            with open(path, encoding="utf-8") as f:
                codes.append(f.read())
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: cannot read {path}: {e}", file=sys.stderr)
            return 2
    from .sandbox import DEFAULT_LIBRARIES, Sandbox, SandboxUnavailable
    libraries = [] if args.no_libraries else list(DEFAULT_LIBRARIES)
    libraries += [n for n in args.library if n not in libraries]
    mode = "unisolated-UNSAFE" if args.unisolated_UNSAFE else "bwrap"
    try:
        sb = Sandbox(timeout=args.timeout, mode=mode, workers=1, libraries=libraries)
    except (SandboxUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    mv = None
    try:
        for path, code in zip(args.files, codes):
            res = sb.run(code)
            sys.stdout.write(res.stdout)
            if res.stdout and not res.stdout.endswith("\n"):
                sys.stdout.write("\n")
            v, extracted = res.verdict, None
            if v.is_correct:  # the program ran; now judge what it printed
                lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
                if not lines:
                    v = Verdict("incorrect", "no_output", None, v.seconds)
                elif args.gold is not None:
                    extracted = lines[-1].strip()
                    if mv is None:
                        from .pool import MathVerifier
                        mv = MathVerifier(workers=1, timeout=args.timeout)
                    v = mv.verify(args.gold, extracted, extract=False)
            print(json.dumps({"file": path, "verdict": v.label, "reason": v.reason,
                              "extracted": extracted, "exit_code": res.exit_code,
                              "seconds": round(res.seconds, 6), "stderr": res.stderr[-2000:]}),
                  flush=True)
            status = max(status, _EXIT[v.label])
    finally:
        sb.close()
        if mv is not None:
            mv.close()
    return status


def build_parser() -> argparse.ArgumentParser:
    from .sandbox import DEFAULT_LIBRARIES
    libraries = ", ".join(DEFAULT_LIBRARIES)
    p = argparse.ArgumentParser(prog="python -m selfplay_verifiers", description=_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{math,steps,run-code}")
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
    st = sub.add_parser("steps", help="judge the arithmetic statements of texts from a JSONL file",
                        description="Find and judge every arithmetic statement of each line's text.",
                        epilog=_STEPS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("input", metavar="IN.jsonl", help="input JSONL with a string field `text` ('-' for stdin)")
    st.add_argument("-o", "--output", metavar="OUT.jsonl", default=None,
                    help="output file, written atomically (default: stdout)")
    st.add_argument("--field", default="text", help="the field holding the text (default: text)")
    st.set_defaults(func=cmd_steps)
    r = sub.add_parser("run-code", help="run programs in the sandbox",
                       description="Run each FILE.py in one bubblewrap sandbox, in order; print "
                       "its stdout and a JSON line with its verdict.",
                       epilog=_RUN_EPILOG.replace("{libraries}", libraries),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("files", nargs="+", metavar="FILE.py", help="the programs to run")
    r.add_argument("--gold", default=None,
                   help="compare each program's last non-empty output line to this answer")
    r.add_argument("--library", action="append", default=[], metavar="NAME",
                   help="also allow this top-level package (repeatable; default allow-list: "
                   f"{libraries})")
    r.add_argument("--no-libraries", action="store_true",
                   help="start from the standard library only (--library still adds)")
    r.add_argument("--timeout", type=float, default=5.0,
                   help="wall-clock limit for each program in seconds (default: 5)")
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
