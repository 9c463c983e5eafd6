"""Pose stage (self-play): the model writes new problems, each with a Python program whose
printed output is the gold answer (docs/posing.md).

pose_problems overgenerates in batches until pose.target problems are kept or the budget is
spent. One attempt is a question from a prefilled prompt (selfplay/prompts.py: fewshot, mutation,
composition; program_first writes the program first, then its question), then its program. A
posed problem is kept only if check_posed accepts it: the question is a question (it ends with
"?") and not ill-posed (yes/no, an unknown such as 4x, two questions, a stated answer); every
number literal of its program appears in the question (apart from a few common constants), at
least one of the question's numbers is used (a program that prints 7 for "What is 5 - 1?" would
give a wrong gold) and every number the question writes in digits is; the program computes
something, runs in the sandbox, is deterministic (two runs print the same) and prints exactly one
parseable number that is exact (a float artefact such as 0.30000000000000004 is
"inexact_output"); the question is not a duplicate of a seed, a held-out problem or another
posed problem. Then its gold needs a second witness (a stated expression's exact value, a second
program, the solver majority). Every rejection is counted by reason.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from fractions import Fraction
from typing import Any, Callable, Iterable, Sequence

from selfplay.config.enums import Witness, names
from seeds.text import normalize_question  # the one normaliser (operators kept): also pose dedup's
from selfplay.backends.base import Backend, SamplingParams
from selfplay.prompts import (POSE_KINDS, PROGRAM_STOP, QUESTION_STOP, answer_value, pose_messages,
                              program_messages, question_messages)
from selfplay.core.records import Problem
from selfplay.core.rng import derive_seed, rng_for

_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:/\d+)?$")
MAX_QUESTION_CHARS = 600
_MARKER = re.compile(r"(?:New\s+)?(?:Problem|Question)\s*:\s*(?:\*\*)?", re.I)
_QNUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                      "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
# literals a program may use without the question stating them (rounding, percent, unit steps)
COMMON_CONSTANTS = frozenset({Fraction(0), Fraction(1), Fraction(2), Fraction(10), Fraction(100)})


def clean_question(text: str) -> str | None:
    """The question in a posing completion's line: after a last "Problem:"/"Question:" marker,
    cut after its last "?" (chatter after the question, "What is 5 - 4? Python Code:", is not
    part of it), whitespace and bold marks collapsed; None when nothing is left."""
    head = text.replace("**", " ")
    markers = list(_MARKER.finditer(head))
    if markers:  # "Here is a new problem. Question: What is ...?" -> the part after the last marker
        head = head[markers[-1].end():]
    if "?" in head:
        head = head[:head.rfind("?") + 1]
    return " ".join(head.split()) or None


def question_numbers(question: str) -> set[Fraction]:
    """Numbers a question states: digits (1,000 = 1000) and the words zero..twenty."""
    nums = digit_numbers(question)
    nums.update(Fraction(_WORDS[w]) for w in re.findall(r"[a-z]+", question.lower()) if w in _WORDS)
    return nums


def _no_thousands(text: str) -> str:
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000


def digit_numbers(question: str) -> set[Fraction]:
    """The numbers a question writes in digits (1,000 = 1000): a program must use every one."""
    return {Fraction(m.group()) for m in _QNUM.finditer(_no_thousands(question))}


_YES_NO = re.compile(r"^(?:is|are|does|do|did|can|could|will|would|was|were|should|has|have)\b", re.I)
_VARIABLE = re.compile(r"\b\d+[a-z]\b")  # 4x, 2y (5th, 2nd and 3rd have two letters)


def ill_posed(question: str) -> str | None:
    """Why a question cannot have one numeric gold, as seen from the embedded model: a yes/no
    question ("Is 200 a multiple of 4?" got gold 0), two questions in one, an unknown ("What is 4x + 1?" got 5), or a
    question that states an answer ('The answer to "What is 27 minus 1?" is 27. How many...')."""
    if _YES_NO.match(question.strip()):
        return "yes_no_question"
    if len(re.findall(r"\b(?:what|how\s+many|how\s+much|which)\b", question, re.I)) > 1:
        return "two_questions"  # "What is 5 - 2, and what is 5?" got gold 3
    if _VARIABLE.search(question):
        return "has_variable"
    if re.search(r"\banswer", question, re.I):
        return "mentions_answer"
    return None


def program_numbers(program: str) -> set[Fraction] | None:
    """Number literals of a Python program (tokenized: names like x1 and strings do not count);
    None if it does not tokenize."""
    import io as _io
    import tokenize

    out: set[Fraction] = set()
    try:
        for tok in tokenize.generate_tokens(_io.StringIO(program).readline):
            if tok.type == tokenize.NUMBER:
                try:
                    out.add(Fraction(tok.string.replace("_", "")))
                except (ValueError, ZeroDivisionError):
                    return None  # hex, complex...: not a plain arithmetic literal
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return out


# A printed decimal this short is the value the program meant: Python prints the shortest text
# that round-trips, so 0.1 prints "0.1". Longer ones are binary-float artefacts
# (3.3333333333333335, 0.30000000000000004) that must not become golds as printed.
MAX_EXACT_DECIMALS = 6
MAX_DENOMINATOR = 1000


def program_answer(stdout: str) -> tuple[str | None, str]:
    """(answer, "ok") for a program's output that is one exact number, normalised (12.0 -> 12,
    6/4 -> \\frac{3}{2}, 3.3333333333333335 -> \\frac{10}{3}); else (None, reason): "no_output",
    "unparseable_output", or "inexact_output" for a long float that is not the nearest double of
    a fraction with denominator <= MAX_DENOMINATOR (0.30000000000000004: 3/10 prints as 0.3)."""
    lines = [ln.strip() for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines:
        return None, "no_output"
    if len(lines) != 1 or not _NUMBER.match(lines[0]) or len(lines[0]) > 40:
        return None, "unparseable_output"
    text = lines[0]
    try:
        v = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None, "unparseable_output"
    if "." in text and len(text.partition(".")[2]) > MAX_EXACT_DECIMALS:
        near = v.limit_denominator(MAX_DENOMINATOR)
        if float(near) != float(text):  # the printed float is not near's own double: inexact
            return None, "inexact_output"
        v, text = near, ""
    if v.denominator == 1:
        return str(v.numerator), "ok"
    if "." in text:
        return text.rstrip("0").rstrip("."), "ok"
    sign = "-" if v < 0 else ""
    return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}", "ok"


def canonical_answer(stdout: str) -> str | None:
    """The answer of program_answer, or None when it rejects the output."""
    return program_answer(stdout)[0]


def run_answer(sandbox: Any, program: str) -> tuple[str | None, str, Any]:
    """(answer, "ok", run) for a program that runs and prints one exact number (program_answer);
    else (None, reason, run): "program_<verdict reason>" for a failed run, or program_answer's."""
    run = sandbox.run(program)
    if run.verdict.label != "correct":
        return None, f"program_{run.verdict.reason}", run
    answer, reason = program_answer(run.stdout)
    return answer, reason, run


def check_posed(question: str | None, program: str | None, sandbox: Any, seen: set[str],
                require_program: bool = True) -> tuple[str | None, str]:
    """(answer, "ok") or (None, rejection reason) for one posed problem. Without a program and
    with require_program=False: ("", "unlabelled"), a question whose gold the round's majority
    vote decides (selfplay.pair.pseudo)."""
    if not question or len(question) < 8:  # "What is 5 - 4?" is a question
        return None, "no_question"
    if len(question) > MAX_QUESTION_CHARS:
        return None, "question_too_long"
    if not question.rstrip().endswith("?"):
        return None, "not_a_question"
    ill = ill_posed(question)
    if ill:
        return None, ill
    if normalize_question(question) in seen:
        return None, "duplicate"
    if not program:
        return (None, "no_program") if require_program else ("", "unlabelled")
    used, stated = program_numbers(program), question_numbers(question)
    telling = (stated - COMMON_CONSTANTS) or stated  # "What is 1 + 2?" has only small numbers
    if used is None or not used - COMMON_CONSTANTS <= stated or not used & telling:
        return None, "program_ignores_question"
    if not digit_numbers(question) <= used:  # "What is 7 + 5 - 4 + 2?" -> print(7 + 5 + 2): 14
        return None, "question_number_unused"
    if program_steps(program) == 0:  # print(111) for "What is 111?": nothing to solve
        return None, "no_computation"
    answer, reason, first = run_answer(sandbox, program)
    if answer is None:
        return None, reason
    second = sandbox.run(program)
    if second.verdict.label != "correct" or second.stdout != first.stdout:
        return None, "nondeterministic"
    return answer, "ok"


# auto: a second program always; then a question that states one arithmetic expression is
# witnessed by its exact value, any other question by the solver majority (docs/posing.md)
WITNESSES = names(Witness)  # pose.witness (selfplay/config/enums.py)

_WORD_OPS = ((r"\bmultiplied\s+by\b", "*"), (r"\bdivided\s+by\b", "/"), (r"\btimes\b", "*"),
             (r"\bplus\b", "+"), (r"\bminus\b", "-"), (r"[×x](?=\s*\d)", "*"), (r"÷", "/"))
_OPERAND = r"\(*\s*-?\d+(?:\.\d+)?\s*\)*"
_EXPRESSION = re.compile(rf"{_OPERAND}(?:\s*[-+*/]\s*{_OPERAND})+")


def stated_expressions(question: str) -> list[str]:
    """The arithmetic expressions a question writes out ("What is 7 + 5 - 4 + 2?", "3 times 4"):
    runs of numbers joined by + - * / (and plus, minus, times, multiplied by, divided by, x)."""
    text = _no_thousands(question)
    for pattern, op in _WORD_OPS:
        text = re.sub(pattern, op, text, flags=re.I)
    return [m.group().strip() for m in _EXPRESSION.finditer(text)]


def expression_value(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression of numbers, + - * / and parentheses (Fractions,
    so 0.1 + 0.2 is 3/10); None when it is not one or divides by zero."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError("not arithmetic")

    try:
        return ev(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None


def expression_witness(p: Problem, reasons: Counter[str]) -> bool | None:
    """The exact witness of a question that states one arithmetic expression: its value must be
    the gold (recorded in p.meta["expression_witness"]; a mismatch counts as golds_disagree).
    None when the question states no expression or several (another route must witness it)."""
    exprs = stated_expressions(p.question)
    value = expression_value(exprs[0]) if len(exprs) == 1 else None
    if value is None:
        return None
    agree = value == answer_value(p.answer)
    p.meta["expression_witness"] = {"expression": exprs[0], "value": str(value), "agree": agree}
    if not agree:
        reasons["golds_disagree"] += 1
    return agree


def _texts(backend: Backend, prompts: Sequence[Any], temperature: float, top_p: float, max_new_tokens: int,
           stop: tuple[str, ...], seeds: Sequence[int]) -> list[str]:
    if not prompts:
        return []
    params = SamplingParams(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop)
    return [comps[0].text for comps in backend.generate(list(prompts), params, [[s] for s in seeds])]


def _clean_program(text: str) -> str | None:
    return text.strip("\n").rstrip() or None


def pose_problems(backend: Backend, sandbox: Any, examples: Sequence[Problem], *, attempts: int, shots: int,
                  params: SamplingParams, seed: int, round_idx: int, existing: Iterable[str] = (),
                  model: str = "", progress: Any = None, require_program: bool = True, target: int = 0,
                  batch: int = 32, kinds: Sequence[str] = ("fewshot", "program_first"), level: int = 0,
                  witness: str = "auto", witness_temperature: float = 0.7, max_seconds: float = 0.0,
                  accept: Callable[[list[Problem]], tuple[list[Problem], dict[str, int]]] | None = None,
                  ) -> tuple[list[Problem], dict[str, Any]]:
    """Overgenerate, then keep: pose in batches of `batch` attempts until `target` problems are
    kept (0: make every attempt), `attempts` (the budget) are spent or `max_seconds` have passed.
    Attempt a uses prompt kind kinds[a % len(kinds)] (selfplay/prompts.py) at curriculum `level`.

    Per attempt: a question (program_first: a program, then its question), then its program
    (greedy, from seed shots), then check_posed. Then the witnesses (docs/posing.md): unless
    witness is "none", a question that states one arithmetic expression must have it evaluate to
    the gold; with "auto", "program" or "both" a second program is written from the question
    alone (other shots, sampled at witness_temperature) and must print the same value. A
    disagreement is counted as golds_disagree; the solver-majority witness ("majority", "both",
    "auto" for questions without an expression) runs after solving (selfplay.pair.pseudo). Last,
    `accept` (the round's held-out gate and near-duplicate filter) returns the kept ones and its
    rejection counts.
    Stats: attempted, kept, rejected (reason -> count), by_kind, golds_disagree, target, level,
    witness, stopped; unlabelled problems (no program, require_program=False) have answer "" and
    gold_trusted false."""
    if witness not in WITNESSES:
        raise ValueError(f"pose.witness must be one of {WITNESSES}, got {witness!r}")
    for k in kinds:
        if k not in POSE_KINDS:
            raise ValueError(f"pose.prompts: unknown kind {k!r}; choose from {sorted(POSE_KINDS)}")
    shot_pool = [e for e in examples if e.program]
    stats: dict[str, Any] = {"attempted": 0, "kept": 0, "rejected": {}, "target": target, "level": level,
                             "witness": witness, "golds_disagree": 0,
                             "by_kind": {k: {"attempted": 0, "kept": 0} for k in dict.fromkeys(kinds)}}
    if not shot_pool or attempts <= 0 or not kinds:
        return [], stats
    seen = {normalize_question(q) for q in existing}
    kept: list[Problem] = []
    reasons: Counter[str] = Counter()
    t0 = time.monotonic()
    a0 = 0

    def shots_for(a: int, role: str, n: int | None) -> list[tuple[str, str]]:
        picks = rng_for(seed, round_idx, role, a).sample(shot_pool, min(n or shots, len(shot_pool)))
        return [(p.question, p.program or "") for p in picks]

    def gen(prompts: list[Any], idx: list[int], role: str, temperature: float, stop: tuple[str, ...]) -> list[str]:
        return _texts(backend, prompts, temperature, params.top_p, params.max_new_tokens, stop,
                      [derive_seed(seed, round_idx, role, a) for a in idx])

    while a0 < attempts and (target <= 0 or len(kept) < target):
        if max_seconds and time.monotonic() - t0 >= max_seconds:
            stats["stopped"] = "max_seconds"
            break
        idx = list(range(a0, min(attempts, a0 + max(1, batch))))
        a0 = idx[-1] + 1
        kind_of = {a: kinds[a % len(kinds)] for a in idx}
        for a in idx:
            stats["by_kind"][kind_of[a]]["attempted"] += 1
        question: dict[int, str | None] = {}
        program: dict[int, str | None] = {}
        pf = [a for a in idx if kind_of[a] == "program_first"]
        qf = [a for a in idx if kind_of[a] != "program_first"]
        for a, text in zip(pf, gen([pose_messages("program_first", shots_for(a, "pose-shots", None), level)
                                    for a in pf], pf, "pose", params.temperature, PROGRAM_STOP)):
            program[a] = _clean_program(text)
        asked = [a for a in pf if program[a]]
        for a, text in zip(asked, gen([question_messages(shots_for(a, "pose-question-shots", None), program[a] or "")
                                       for a in asked], asked, "pose-question", 0.0, QUESTION_STOP)):
            question[a] = clean_question(text)
        for a, text in zip(qf, gen([pose_messages(kind_of[a], shots_for(a, "pose-shots", POSE_KINDS[kind_of[a]]),
                                                  level) for a in qf], qf, "pose", params.temperature,
                                   QUESTION_STOP)):
            question[a] = clean_question(text)
        # a program only for a question that passes the question checks
        need = [a for a in qf if check_posed(question[a], None, sandbox, seen, False)[1] == "unlabelled"]
        for a, text in zip(need, gen([program_messages(shots_for(a, "pose-program-shots", None), question[a] or "")
                                      for a in need], need, "pose-program", 0.0, PROGRAM_STOP)):
            program[a] = _clean_program(text)
        fresh: list[Problem] = []
        for a in idx:
            q, prog = question.get(a), program.get(a)
            answer, reason = check_posed(q, prog, sandbox, seen, require_program)
            if answer is None:
                reasons[reason] += 1
                continue
            seen.add(normalize_question(q or ""))
            meta: dict[str, Any] = {"round": round_idx, "attempt": a, "kind": kind_of[a], "level": level,
                                    "steps": program_steps(prog or "")}
            if reason == "unlabelled":
                meta["gold_trusted"] = False
            fresh.append(Problem(id=f"posed-r{round_idx}-{a:05d}", question=q or "", answer=answer,
                                 origin="posed", source=model, program=prog, meta=meta))
        if witness != "none":  # a stated expression's exact value, whatever the route
            fresh = [p for p in fresh if not p.answer or expression_witness(p, reasons) is not False]
        if witness in ("auto", "program", "both"):
            labelled = [p for p in fresh if p.answer]
            ids = [p.meta["attempt"] for p in labelled]
            texts = gen([program_messages(shots_for(a, "pose-witness-shots", None), p.question)
                         for a, p in zip(ids, labelled)], ids, "pose-witness", witness_temperature, PROGRAM_STOP)
            agreed = {p.id: _witness(p, _clean_program(t), sandbox, reasons) for p, t in zip(labelled, texts)}
            fresh = [p for p in fresh if agreed.get(p.id, True)]
        if accept is not None and fresh:
            fresh, dropped = accept(fresh)
            reasons.update({k: v for k, v in dropped.items() if v})
        kept.extend(fresh)
        if progress is not None:
            progress.update(len(idx))
    if target > 0 and len(kept) > target:  # the last batch overshot: keep the first `target`
        reasons["over_target"] += len(kept) - target
        kept = kept[:target]
    for p in kept:
        stats["by_kind"][p.meta["kind"]]["kept"] += 1
    stats.update(attempted=a0, kept=len(kept), rejected=dict(sorted(reasons.items())),
                 unlabelled=sum(p.answer == "" for p in kept), golds_disagree=reasons.get("golds_disagree", 0))
    if target > 0 and len(kept) < target and "stopped" not in stats:
        stats["stopped"] = "attempts"
    return kept, stats


def _witness(p: Problem, program: str | None, sandbox: Any, reasons: Counter[str]) -> bool:
    """Run the second program; record it in p.meta["witness"]; True when it prints p's gold."""
    answer, why = (None, "no_program") if program is None else run_answer(sandbox, program)[:2]
    agree = answer is not None and answer == p.answer  # both canonical (program_answer)
    p.meta["witness"] = {"route": "program", "program": program, "answer": answer, "agree": agree}
    if answer is None:
        reasons[f"witness_{why}"] += 1
    elif not agree:
        reasons["golds_disagree"] += 1
    return agree


_OPS = re.compile(r"\*\*|//|[-+*/%]")


def program_steps(program: str) -> int:
    """Arithmetic steps of a posed program: its binary operators (a - b counts; -3 counts too)."""
    import io as _io
    import tokenize

    try:
        return sum(1 for tok in tokenize.generate_tokens(_io.StringIO(program).readline)
                   if tok.type == tokenize.OP and _OPS.fullmatch(tok.string))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return 0
