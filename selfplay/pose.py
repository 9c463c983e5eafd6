"""Pose stage (self-play): the model writes new problems, each with a Python program whose
printed output is the answer.

A posed problem is kept only if its question is a question (it ends with "?": the text after
the last "Problem:"/"Question:" marker, cut after its last "?"), every number literal of its
program appears in the question (apart from a few common constants) and at least one of the
question's numbers is used (a program that prints 7 for "What is 5 - 1?" would give a wrong gold
answer), its program runs in the sandbox, is deterministic
(two runs print the same), prints exactly one parseable number that is exact (a float artefact
such as 0.30000000000000004 is "inexact_output"), and its question is not a
duplicate of a seed, a held-out problem or another posed problem. Every rejection is counted by
reason.
"""
from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from typing import Any, Iterable, Sequence

from seeds.text import normalize_question  # the one normaliser (operators kept): also pose dedup's
from selfplay.backends.base import Backend, SamplingParams
from selfplay.prompts import pose_messages
from selfplay.records import Problem
from selfplay.rng import derive_seed, rng_for

_CODE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:/\d+)?$")
MAX_QUESTION_CHARS = 600
_MARKER = re.compile(r"(?:New\s+)?(?:Problem|Question)\s*:\s*(?:\*\*)?", re.I)
_QNUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                      "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
# literals a program may use without the question stating them (rounding, percent, unit steps)
COMMON_CONSTANTS = frozenset({Fraction(0), Fraction(1), Fraction(2), Fraction(10), Fraction(100)})


def parse_posed(text: str) -> tuple[str | None, str | None]:
    """(question, program) from a posing completion; None for a part that is missing."""
    m = _CODE.search(text)
    program = m.group(1).strip() if m else None
    head = text[:m.start()] if m else text
    head = re.split(r"\n\s*Program\s*:?", head, flags=re.I)[0]
    head = re.sub(r"^\s*(?:\*\*)?(?:New )?Problem\s*:?\s*(?:\*\*)?", "", head.strip(), flags=re.I).strip()
    markers = list(_MARKER.finditer(head))
    if markers:  # "Here is a new problem. Question: What is ...?" -> the part after the last marker
        head = head[markers[-1].end():]
    if "?" in head:  # chatter after the question ("What is 5 - 4? Python Code:") is not the question
        head = head[:head.rfind("?") + 1]
    head = " ".join(head.split())
    return (head or None), (program or None)


def question_numbers(question: str) -> set[Fraction]:
    """Numbers a question states: digits (1,000 = 1000) and the words zero..twenty."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", question)
    nums = {Fraction(m.group()) for m in _QNUM.finditer(text)}
    nums.update(Fraction(_WORDS[w]) for w in re.findall(r"[a-z]+", text.lower()) if w in _WORDS)
    return nums


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


def check_posed(question: str | None, program: str | None, sandbox: Any, seen: set[str],
                require_program: bool = True) -> tuple[str | None, str]:
    """(answer, "ok") or (None, rejection reason) for one posed problem. Without a program and
    with require_program=False: ("", "unlabelled"), a question whose gold the round's majority
    vote decides (selfplay.pseudo)."""
    if not question or len(question) < 8:  # "What is 5 - 4?" is a question
        return None, "no_question"
    if len(question) > MAX_QUESTION_CHARS:
        return None, "question_too_long"
    if not program and require_program:
        return None, "no_program"
    if not question.rstrip().endswith("?"):
        return None, "not_a_question"
    if not program:
        return (None, "duplicate") if normalize_question(question) in seen else ("", "unlabelled")
    used, stated = program_numbers(program), question_numbers(question)
    telling = (stated - COMMON_CONSTANTS) or stated  # "What is 1 + 2?" has only small numbers
    if used is None or not used - COMMON_CONSTANTS <= stated or not used & telling:
        return None, "program_ignores_question"
    if normalize_question(question) in seen:
        return None, "duplicate"
    first = sandbox.run(program)
    if first.verdict.label != "correct":
        return None, f"program_{first.verdict.reason}"
    answer, reason = program_answer(first.stdout)
    if answer is None:
        return None, reason
    second = sandbox.run(program)
    if second.verdict.label != "correct" or second.stdout != first.stdout:
        return None, "nondeterministic"
    return answer, "ok"


def pose_problems(backend: Backend, sandbox: Any, examples: Sequence[Problem], *, attempts: int, shots: int,
                  params: SamplingParams, seed: int, round_idx: int, existing: Iterable[str] = (),
                  model: str = "", progress: Any = None, require_program: bool = True,
                  ) -> tuple[list[Problem], dict[str, Any]]:
    """Ask for `attempts` new problems; return the kept ones and stats {attempted, kept, rejected,
    unlabelled}; unlabelled ones (no program, require_program=False) have answer "" and
    meta gold_trusted false."""
    shot_pool = [e for e in examples if e.program]
    if not shot_pool or attempts <= 0:
        return [], {"attempted": 0, "kept": 0, "rejected": {}}
    prompts, seeds = [], []
    for a in range(attempts):
        rng = rng_for(seed, round_idx, "pose-shots", a)
        picks = rng.sample(shot_pool, min(shots, len(shot_pool)))
        prompts.append(pose_messages([(p.question, p.program or "") for p in picks]))
        seeds.append([derive_seed(seed, round_idx, "pose", a)])
    one = SamplingParams(n=1, temperature=params.temperature, top_p=params.top_p,
                         max_new_tokens=params.max_new_tokens)
    outs = backend.generate(prompts, one, seeds)
    seen = {normalize_question(q) for q in existing}
    kept: list[Problem] = []
    reasons: Counter[str] = Counter()
    for a, comps in enumerate(outs):
        question, program = parse_posed(comps[0].text)
        answer, reason = check_posed(question, program, sandbox, seen, require_program)
        if progress is not None:
            progress.update(1)
        if answer is None:
            reasons[reason] += 1
            continue
        seen.add(normalize_question(question or ""))
        meta: dict[str, Any] = {"round": round_idx, "attempt": a}
        if reason == "unlabelled":
            meta["gold_trusted"] = False
        kept.append(Problem(id=f"posed-r{round_idx}-{a:05d}", question=question or "", answer=answer,
                            origin="posed", source=model, program=program, meta=meta))
    return kept, {"attempted": attempts, "kept": len(kept), "rejected": dict(sorted(reasons.items())),
                  "unlabelled": sum(p.answer == "" for p in kept)}
