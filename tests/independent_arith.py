"""An independent, deliberately simple arithmetic checker for written solutions.

It shares no code with verifiers/ or selfplay/: tests and the measurement command use it to confirm
that chosen paths state no false arithmetic and end in an evaluated answer.  It is conservative: it
reads only plain statements ``A op B [op C ...] = R`` of literal numbers and skips anything that may
be part of a larger expression, so what it reports is false as written.

    python -m tests.independent_arith RUN_DIR [RUN_DIR ...]

prints, per run, the counts over RUN_DIR/round_*/pairs.jsonl as one JSON object (with --examples, up to
10 examples of each count as well).
"""
from __future__ import annotations

import json
import re
import sys
from fractions import Fraction
from math import gcd
from pathlib import Path

_NUM = r"\$?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?)"
_OP = r"[-+*/x×÷−]"
# words after which a number is the second half of a phrase ("3 times 4", "the sum of 3 and 4"),
# so a statement starting there is partial; LaTeX operators are read the same way
_PARTIAL_WORDS = ("and", "of", "by", "than", "from", "times", "plus", "minus", "twice", "half", "x",
                  "dozen", "over", "per", "cdot", "div", "pm", "sqrt")
_NOT_AFTER_WORD = "".join(rf"(?<!\b{w}\s)" for w in _PARTIAL_WORDS)

STATEMENT = re.compile(
    # left side: not glued to a digit, letter, '.', ':', ',', an operator, '^', '%', ')' or '}';
    # not one space after a digit, an operator, ')' or '%'; not after a partial-phrase word
    r"(?<![\w.:,$%^*/+\-−×÷)\]}])"
    r"(?<![\d+\-−*/×÷^)%][ \t])"
    + _NOT_AFTER_WORD
    + rf"(?P<left>{_NUM}(?:[ \t]*{_OP}[ \t]*{_NUM})+)"
    + r"[ \t]*=[ \t]*"
    + rf"(?P<right>-?{_NUM})"
    # right side: not followed by a digit, '%', '/', '^', a digit glued by ',', '.' or ':', an operator
    # and a number, or a multiplier word
    r"(?![ \t]*(?:[\d%/^]|[,.:]\d"
    r"|(?:[-+*x×÷−]|\\times|\\cdot|times\b|plus\b|minus\b)[ \t]*\$?\d"
    r"|(?:hundred|thousand|million|billion|trillion|dozen)\b))",
    re.IGNORECASE,
)
_TOKEN = re.compile(rf"[ \t]*(?:(?P<num>{_NUM})|(?P<op>{_OP}))", re.IGNORECASE)


def _number(text: str) -> Fraction:
    return Fraction(text.replace("$", "").replace(",", ""))


def _decimals(text: str) -> int:
    text = text.replace("$", "").replace(",", "")
    return len(text.split(".", 1)[1]) if "." in text else 0


def _evaluate(left: str) -> Fraction | None:
    """Exact value of ``n op n op n ...`` with * and / before + and -; None on division by zero."""
    nums: list[Fraction] = []
    ops: list[str] = []
    for m in _TOKEN.finditer(left):
        if m.group("num") is not None:
            nums.append(_number(m.group("num")))
        else:
            ops.append({"x": "*", "X": "*", "×": "*", "÷": "/", "−": "-"}.get(m.group("op"), m.group("op")))
    terms = [nums[0]]
    signs = [1]
    for op, n in zip(ops, nums[1:]):
        if op == "*":
            terms[-1] *= n
        elif op == "/":
            if n == 0:
                return None
            terms[-1] /= n
        else:
            terms.append(n)
            signs.append(1 if op == "+" else -1)
    return sum((s * t for s, t in zip(signs, terms)), Fraction(0))


def _holds(value: Fraction, right: str) -> bool:
    stated = _number(right)
    if value == stated:
        return True
    places = _decimals(right)
    # a decimal right side with d places is true when the value rounds to it (ties either way)
    return places > 0 and abs(value - stated) <= Fraction(1, 2 * 10**places)


def statements(text: str) -> list[tuple[str, bool]]:
    """Every statement read in ``text`` with whether it holds."""
    out = []
    for m in STATEMENT.finditer(text):
        value = _evaluate(m.group("left"))
        if value is None:
            continue
        out.append((m.group(0), _holds(value, m.group("right"))))
    return out


def false_statements(text: str) -> list[str]:
    """The plain arithmetic statements in ``text`` whose two sides differ."""
    return [s for s, ok in statements(text) if not ok]


_PLAIN = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
_FRACTION = re.compile(r"-?(\d+)/(\d+)")
_EXPR_TOKEN = re.compile(r"\s*(?:(?P<num>\$?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+))"
                         r"|(?P<op>[-+*/x×÷−])|(?P<paren>[()]))", re.IGNORECASE)


def _strip_answer(text: str) -> str:
    s = str(text).strip().replace("$", "").rstrip(".").strip()
    while True:
        m = re.fullmatch(r"\\boxed\s*\{(.*)\}", s, re.DOTALL)
        if not m:
            break
        s = m.group(1).strip()
    for a, b in ((r"\times", "*"), (r"\cdot", "*"), (r"\div", "/"), (r"\left", ""), (r"\right", "")):
        s = s.replace(a, b)
    s = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)", s)
    s = s.strip()
    if s.endswith("."):
        s = s[:-1].rstrip()
    s = re.sub(r"^\(\s*(-?\d+)\s*\)/\(\s*(\d+)\s*\)$", r"\1/\2", s)
    return s


def _is_number(s: str) -> bool:
    if _PLAIN.fullmatch(s):
        return True
    m = _FRACTION.fullmatch(s.replace(" ", ""))
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        return b > 1 and gcd(a, b) == 1
    return False


def unevaluated_answer(extracted, gold) -> bool:
    """True when gold is a plain number and ``extracted`` is an arithmetic expression of numbers with a
    binary operator rather than one number."""
    if extracted is None or gold is None:
        return False
    if not _is_number(_strip_answer(gold)):
        return False
    s = _strip_answer(extracted)
    if not s or _is_number(s):
        return False
    pos, depth, binary = 0, 0, False
    prev = None  # "num", "op", "(" or ")"
    while pos < len(s):
        m = _EXPR_TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip() == "":
                break
            return False
        pos = m.end()
        if m.group("num") is not None:
            if prev in ("num", ")"):
                return False
            prev = "num"
        elif m.group("op") is not None:
            if prev in ("num", ")"):
                binary = True
            elif m.group("op") not in "-−":
                return False
            prev = "op"
        elif m.group("paren") == "(":
            if prev in ("num", ")"):
                return False
            depth += 1
            prev = "("
        else:
            if prev not in ("num", ")") or depth == 0:
                return False
            depth -= 1
            prev = ")"
    return binary and depth == 0 and prev in ("num", ")")


def _content(messages) -> str:
    if isinstance(messages, str):
        return messages
    return "\n".join(str(m.get("content", "")) for m in messages or [] if m.get("role") == "assistant")


def audit_pairs(path_or_paths) -> dict:
    """Counts over the cot pairs of one or more pairs.jsonl files, with up to 10 examples of each."""
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    counts = {"pairs": 0, "chosen_false": 0, "chosen_unevaluated": 0, "rejected_false": 0}
    examples: dict[str, list] = {"chosen_false": [], "chosen_unevaluated": [], "rejected_false": []}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                pair = json.loads(line)
                meta = pair.get("metadata") or {}
                if meta.get("mode", "cot") != "cot":
                    continue
                counts["pairs"] += 1
                where = {"file": str(path), "line": line_no, "problem_id": meta.get("problem_id")}
                chosen = _content(pair.get("chosen"))
                bad = false_statements(chosen)
                if bad:
                    counts["chosen_false"] += 1
                    if len(examples["chosen_false"]) < 10:
                        examples["chosen_false"].append({**where, "false": bad, "text": chosen})
                if unevaluated_answer(meta.get("chosen_extracted"), meta.get("gold")):
                    counts["chosen_unevaluated"] += 1
                    if len(examples["chosen_unevaluated"]) < 10:
                        examples["chosen_unevaluated"].append(
                            {**where, "extracted": meta.get("chosen_extracted"), "gold": meta.get("gold")})
                rejected = _content(pair.get("rejected"))
                bad = false_statements(rejected)
                if bad:
                    counts["rejected_false"] += 1
                    if len(examples["rejected_false"]) < 10:
                        examples["rejected_false"].append({**where, "false": bad, "text": rejected})
    return {**counts, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with_examples = "--examples" in argv
    run_dirs = [a for a in argv if a != "--examples"]
    if not run_dirs:
        print("usage: python -m tests.independent_arith [--examples] RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    out = {}
    for run_dir in run_dirs:
        paths = sorted(Path(run_dir).glob("round_*/pairs.jsonl"))
        if not paths:
            print(f"no round_*/pairs.jsonl under {run_dir}", file=sys.stderr)
            return 2
        result = audit_pairs(paths)
        out[run_dir] = result if with_examples else {k: v for k, v in result.items() if k != "examples"}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
