"""Procedural math generators with difficulty levels and exact gold answers.

Each generator maps a seeded `random.Random` and a level (1 = easiest) to
(question, answer, program): the program prints the answer, which makes these problems usable as
few-shot examples for posing. Answers are exact (integers or reduced fractions).
"""
from __future__ import annotations

import random
from fractions import Fraction
from typing import Callable, Collection, Iterator, Mapping, Sequence

from selfplay.core.records import Problem
from selfplay.core.rng import rng_for
from selfplay_seeds.text import normalize_question

Item = tuple[str, str, str]
_NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Zoe", "Raj", "Eva"]
_THINGS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards"]


def _hi(level: int) -> int:
    return {1: 9, 2: 20, 3: 50, 4: 100}.get(level, 10 ** min(level - 2, 6))


def add(r: random.Random, level: int) -> Item:
    a, b = r.randint(1, _hi(level)), r.randint(1, _hi(level))
    return f"What is {a} + {b}?", str(a + b), f"print({a} + {b})"


def sub(r: random.Random, level: int) -> Item:
    a, b = sorted((r.randint(1, _hi(level)), r.randint(1, _hi(level))), reverse=True)
    return f"What is {a} - {b}?", str(a - b), f"print({a} - {b})"


def mul(r: random.Random, level: int) -> Item:
    a, b = r.randint(2, max(3, _hi(level) // 3)), r.randint(2, 9 if level < 3 else 12)
    return f"What is {a} times {b}?", str(a * b), f"print({a} * {b})"


def two_step(r: random.Random, level: int) -> Item:
    a, b, c = (r.randint(1, _hi(level)) for _ in range(3))
    if r.random() < 0.5:
        return f"What is {a} + {b} + {c}?", str(a + b + c), f"print({a} + {b} + {c})"
    a = max(a, c) + b
    return f"What is {a} + {b} - {c}?", str(a + b - c), f"print({a} + {b} - {c})"


def word_add(r: random.Random, level: int) -> Item:
    n, t = r.choice(_NAMES), r.choice(_THINGS)
    a, b = r.randint(1, _hi(level)), r.randint(1, _hi(level))
    q = f"{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?"
    return q, str(a + b), f"have = {a}\ngot = {b}\nprint(have + got)"


def word_sub(r: random.Random, level: int) -> Item:
    n, t = r.choice(_NAMES), r.choice(_THINGS)
    a = r.randint(2, _hi(level) + 1)
    b = r.randint(1, a - 1)
    q = f"{n} had {a} {t} and gave away {b}. How many {t} are left?"
    return q, str(a - b), f"had = {a}\ngave = {b}\nprint(had - gave)"


def word_mul(r: random.Random, level: int) -> Item:
    n, t = r.choice(_NAMES), r.choice(_THINGS)
    a, b = r.randint(2, 9), r.randint(2, max(3, _hi(level) // 2))
    q = f"{n} buys {a} boxes with {b} {t} in each box. How many {t} does {n} buy?"
    return q, str(a * b), f"boxes = {a}\nper_box = {b}\nprint(boxes * per_box)"


def fraction_add(r: random.Random, level: int) -> Item:
    d1, d2 = r.randint(2, 4 + 2 * level), r.randint(2, 4 + 2 * level)
    a, b = Fraction(r.randint(1, d1 - 1), d1), Fraction(r.randint(1, d2 - 1), d2)
    s = a + b
    gold = str(s.numerator) if s.denominator == 1 else f"\\frac{{{s.numerator}}}{{{s.denominator}}}"
    prog = f"from fractions import Fraction\nprint(Fraction({a.numerator}, {a.denominator}) + Fraction({b.numerator}, {b.denominator}))"
    return f"What is {a} + {b}? Give the answer as a reduced fraction.", gold, prog


def linear(r: random.Random, level: int) -> Item:
    x, a = r.randint(-_hi(level) // 2, _hi(level)), r.randint(2, 3 + level)
    b = r.randint(1, _hi(level))
    return (f"Solve for x: {a}x + {b} = {a * x + b}.", str(x),
            f"a, b, c = {a}, {b}, {a * x + b}\nprint((c - b) // a)")


def word_mix(r: random.Random, level: int) -> Item:
    """One- and two-step word problems in many phrasings (objects, verbs, order of facts), so a
    run's word problems are not one template each. None of them is an out-of-distribution eval
    form (selfplay_seeds/ood.py; tests/seeds/test_ood.py compares the forms)."""
    n, m = r.sample(_NAMES, 2)
    a, b = r.randint(2, _hi(level) + 1), r.randint(1, _hi(level))
    c = r.randint(1, a + b - 1)
    big = a + b
    forms = [
        (f"{n} collected {a} shells at the beach and found {b} more the next day. "
         f"How many shells did {n} collect altogether?", a + b, f"print({a} + {b})"),
        (f"A farmer had {big} cows and sold {b} of them. How many cows does the farmer have now?",
         big - b, f"print({big} - {b})"),
        (f"There are {a} children on a bus. At the next stop {b} more children get on. "
         f"How many children are on the bus now?", a + b, f"print({a} + {b})"),
        (f"{n} baked {big} pies and gave {b} pies to the neighbours. How many pies are left?",
         big - b, f"print({big} - {b})"),
        (f"A library lent out {a} books on Saturday and {b} books on Sunday. "
         f"How many books did it lend out over the weekend?", a + b, f"print({a} + {b})"),
        (f"{n} is {a} years old. {m} is {b} years older than {n}. How old is {m}?", a + b, f"print({a} + {b})"),
        (f"A store had {a} hats. It got {b} more hats and then sold {c}. How many hats does the store have?",
         a + b - c, f"print({a} + {b} - {c})"),
        (f"{n} walked {a} blocks to the park and {b} blocks back home. How many blocks did {n} walk?",
         a + b, f"print({a} + {b})"),
        (f"A pond had {a} ducks. {b} ducks flew in and {c} ducks swam away. How many ducks are in the pond?",
         a + b - c, f"print({a} + {b} - {c})"),
        (f"There were {big} cupcakes at a party and the guests ate {b}. How many cupcakes were not eaten?",
         big - b, f"print({big} - {b})"),
        (f"{n} scored {a} points in the first game and {b} points in the second game. "
         f"How many points did {n} score in both games?", a + b, f"print({a} + {b})"),
        (f"{n} has {big} stickers, which is {b} more than {m}. How many stickers does {m} have?",
         big - b, f"print({big} - {b})"),
    ]
    q, ans, prog = r.choice(forms)
    return q, str(ans), prog


GENERATORS: dict[str, Callable[[random.Random, int], Item]] = {
    "add": add, "sub": sub, "mul": mul, "two_step": two_step, "word_add": word_add,
    "word_sub": word_sub, "word_mul": word_mul, "word_mix": word_mix, "fraction_add": fraction_add,
    "linear": linear,
}


def generate(name: str, level: int, index: int, *, seed: int = 0, split: str = "train") -> Problem:
    """One problem, reproducible from (seed, split, generator, level, index)."""
    if name not in GENERATORS:
        raise ValueError(f"seeds.generators: unknown generator {name!r}; choose from {sorted(GENERATORS)}")
    if level < 1:
        raise ValueError(f"seeds.level: must be >= 1, got {level}")
    q, a, prog = GENERATORS[name](rng_for(seed, split, name, level, index), level)
    return Problem(id=f"{split}-{name}-L{level}-{index:06d}", question=q, answer=a, origin="procedural",
                   source=name, level=level, program=prog, meta={"split": split})


def procedural_problems(n: int, generators: Sequence[str], levels: Sequence[int], *, seed: int = 0,
                        split: str = "train", exclude: Collection[str] = frozenset(),
                        reject: Callable[[Problem], bool] | None = None,
                        per_generator: Mapping[str, Sequence[int]] | None = None) -> list[Problem]:
    """n distinct problems cycling over generators x levels (or each generator's own levels from
    `per_generator`, the seed curriculum's). A question equal to one in `exclude` after
    normalize_question (the held-out split is passed here so training never sees a held-out
    question), or one that `reject` refuses (e.g. a near-duplicate of a held-out question), is
    skipped and the stream continues, so the count stays n."""
    if n < 0:
        raise ValueError(f"problems: must be >= 0, got {n}")
    if per_generator is None:
        combos = [(g, lv) for lv in levels for g in generators]
    else:  # level by level as above: with every generator at `levels` the stream is the same
        every = sorted({lv for g in generators for lv in per_generator[g]})
        combos = [(g, lv) for lv in every for g in generators if lv in per_generator[g]]
    if not combos and n:
        raise ValueError("seeds.generators/levels: empty")
    out: list[Problem] = []
    seen = {normalize_question(q) for q in exclude}
    for p in _stream(combos, seed, split):
        if len(out) >= n:
            break
        key = normalize_question(p.question)
        if key not in seen and (reject is None or not reject(p)):
            seen.add(key)
            out.append(p)
    return out


def _stream(combos: Sequence[tuple[str, int]], seed: int, split: str) -> Iterator[Problem]:
    index = 0
    while index < 10_000_000:  # bounded: tiny generators run out of distinct questions
        g, lv = combos[index % len(combos)]
        yield generate(g, lv, index // len(combos), seed=seed, split=split)
        index += 1
