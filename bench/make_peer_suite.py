"""Turn math-verify's own test cases into a data table for our tests and bench.

    pip download --no-deps --no-binary :all: math-verify==0.9.0 -d /tmp/mv
    tar xzf /tmp/mv/math_verify-0.9.0.tar.gz -C /tmp/mv
    python bench/make_peer_suite.py /tmp/mv/math_verify-0.9.0 \
        -o tests/verifiers/data/math_verify_cases.jsonl

Reads ``tests/*.py`` with ``ast`` (nothing is imported or executed) and keeps every
``@pytest.mark.parametrize`` case of a test whose arguments include ``gold`` and ``pred``, i.e.
every case that compares a gold answer with a prediction. Each output line holds ``gold``,
``pred``, ``expected`` ("correct"/"incorrect", as math-verify's test states it), ``source``
("file::test[index]") and the options that test passes to math-verify (``match_types``,
``precision``, ``strict``, ``allow_set_relation_comp``) so math-verify can be re-run exactly as
its own test runs it. Cases whose gold or pred is not a string literal are skipped and counted.
The copied cases are math-verify's (Apache-2.0; test files also carry an MIT header from the
HuggingFace team); see tests/verifiers/data/LICENSE-math-verify.
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

_DEFAULTS = {"match_types": ["latex", "expr"], "precision": 6, "strict": True,
             "allow_set_relation_comp": False}


def _call_options(fn: ast.FunctionDef) -> dict:
    """Keyword options the test body passes to compare_strings (literal ones only)."""
    opts: dict = {}
    uses_compare = False
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "compare_strings":
                uses_compare = True
                for kw in node.keywords:
                    try:
                        opts[kw.arg] = ast.literal_eval(kw.value)
                    except ValueError:
                        opts[kw.arg] = ("param", getattr(kw.value, "id", None))
    if not uses_compare:  # plain parse(gold) / parse(pred) with math-verify's defaults
        opts["match_types"] = ["latex", "expr"]
        opts["plain_parse"] = True
    return opts


def _cases(path: Path) -> tuple[list[dict], int]:
    tree = ast.parse(path.read_text())
    out, skipped = [], 0
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                continue
            names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
            if "gold" not in names or "pred" not in names:
                continue
            opts = _call_options(fn)
            for i, elt in enumerate(dec.args[1].elts):
                try:
                    values = ast.literal_eval(elt)
                except ValueError:
                    skipped += 1
                    continue
                row = dict(zip(names, values))
                exp = row.get("expected", row.get("result"))
                if not isinstance(row["gold"], str) or not isinstance(row["pred"], str):
                    skipped += 1
                    continue
                rec = {"gold": row["gold"], "pred": row["pred"],
                       "expected": "correct" if exp else "incorrect",
                       "source": f"{path.name}::{fn.name}[{i}]"}
                for k, d in _DEFAULTS.items():
                    v = opts.get(k, d)
                    if isinstance(v, tuple) and v[0] == "param":
                        v = row.get(v[1], d)  # e.g. precision=precision from parametrize
                    rec[k] = v
                if opts.get("plain_parse"):
                    rec["plain_parse"] = True
                out.append(rec)
    return out, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sdist", type=Path, help="unpacked math_verify-0.9.0 directory")
    ap.add_argument("-o", "--output", type=Path,
                    default=Path(__file__).resolve().parent.parent
                    / "tests/verifiers/data/math_verify_cases.jsonl")
    args = ap.parse_args()
    rows, skipped = [], 0
    for f in sorted((args.sdist / "tests").glob("test_*.py")):
        r, s = _cases(f)
        rows += r
        skipped += s
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} cases -> {args.output} ({skipped} non-literal cases skipped)")


if __name__ == "__main__":
    main()
