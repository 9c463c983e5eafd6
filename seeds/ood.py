"""Out-of-distribution evaluation sets: problems in forms no training generator, seed template or
posing prompt uses, to see whether a gain transfers beyond the forms a run trains on.

- `ood_arith`: bare arithmetic phrased differently ("Find the sum of 7 and 12.", "Subtract 4
  from 15.", "What number is 6 more than 9?"), numbers up to 20 and one or two operations.
- `ood_word`: one- and two-step word problems in templates none of seeds/procedural.py's word
  generators use (different verbs, objects, order of facts, comparisons, "in all", "still").
- `svamp`: SVAMP's test set (Patel et al. 2021, MIT licence, data/LICENSE-SVAMP.md), shipped
  here; public word problems written by people. Never a training seed.

These generators are eval-only: they are not in GENERATORS, so `seeds.generators` cannot name them
(config validation refuses unknown generators) and posing never sees them as examples.
tests/seeds/test_ood.py checks that no template shares its wording with a training generator.
"""
from __future__ import annotations

import random
from typing import Callable

from selfplay.core.records import Problem
from selfplay.core.rng import rng_for
from selfplay_seeds.loaders import DATA, load_jsonl_problems

Item = tuple[str, str, int]  # (form, question, gold): the form names the template (meta["form"])
SVAMP_FILE = DATA / "svamp_test.jsonl"

_PEOPLE = ["Kofi", "Lena", "Hugo", "Priya", "Mateo", "Ines", "Yuki", "Noah", "Amara", "Felix"]


def _n(r: random.Random, lo: int = 2, hi: int = 20) -> int:
    return r.randint(lo, hi)


def _arith(r: random.Random) -> Item:
    a, b = _n(r), _n(r)
    c = _n(r, 1, min(9, a + b - 1))  # a + b - c stays positive
    big, small = max(a, b), min(a, b)
    forms: list[Item] = [
        ("sum of", f"Find the sum of {a} and {b}.", a + b),
        ("plus", f"Compute {a} plus {b}.", a + b),
        ("add three", f"Add {a}, {b} and {c} together.", a + b + c),
        ("more than", f"What number is {b} more than {a}?", a + b),
        ("subtract from", f"Subtract {small} from {big}.", big - small),
        ("take away", f"Take {small} away from {big}. What is left?", big - small),
        ("difference", f"What is the difference between {big} and {small}?", big - small),
        ("minus plus", f"Calculate {big} minus {small} plus {c}.", big - small + c),
        ("start at", f"Start at {a}, add {b}, then take away {c}. Where do you end up?", a + b - c),
        ("increase by", f"Increase {a} by {b}.", a + b),
    ]
    return r.choice(forms)


def _word(r: random.Random) -> Item:
    a, b = _n(r, 3, 20), _n(r, 2, 15)
    c = _n(r, 1, min(9, a + b - 1))  # a + b - c stays positive
    big, small = max(a, b) + c, min(a, b)
    p, q = r.sample(_PEOPLE, 2)
    forms: list[Item] = [
        ("baker in all", f"A baker made {a} muffins in the morning and {b} muffins in the afternoon. "
         f"How many muffins did the baker make in all?", a + b),
        ("birds flew away", f"There were {big} birds on a fence. {small} of them flew away. "
         f"How many birds are still on the fence?", big - small),
        ("pages two days", f"{p} read {a} pages on Monday and {b} pages on Tuesday. "
         f"How many pages did {p} read on the two days?", a + b),
        ("students absent", f"A class has {big} students. {small} students are absent today. "
         f"How many students are in class?", big - small),
        ("stamps more needed", f"{p} needs {big} stamps to fill an album and already owns {small}. "
         f"How many more stamps does {p} need?", big - small),
        ("marbles more than", f"{p} has {a} marbles. {q} has {b} more marbles than {p}. "
         f"How many marbles does {q} have?", a + b),
        ("jars put broke", f"A shelf held {a} jars. Someone put {b} more jars on it, then {c} jars broke. "
         f"How many jars are on the shelf now?", a + b - c),
        ("dollars saved spent", f"{p} saved {a} dollars in May and {b} dollars in June, then spent {c} dollars "
         f"on a book. How many dollars does {p} have left?", a + b - c),
        ("cars three colours", f"In a parking lot there are {a} red cars, {b} blue cars and {c} white cars. "
         f"How many cars are in the lot?", a + b + c),
        ("train got off", f"A train carried {big} people. At the first stop {small} people got off. "
         f"How many people stayed on the train?", big - small),
    ]
    return r.choice(forms)


OOD_GENERATORS: dict[str, Callable[[random.Random], Item]] = {"ood_arith": _arith, "ood_word": _word}


def ood_problems(name: str, n: int, *, seed: int = 0) -> list[Problem]:
    """n distinct problems of OOD generator `name` ("ood_arith" / "ood_word"), reproducible from
    the seed; ids "<name>-<index>", so a longer set starts with the shorter one; meta["form"]
    names each problem's template (scripts/compare_runs.py --forms)."""
    if name not in OOD_GENERATORS:
        raise ValueError(f"ood set: unknown {name!r}; choose from {sorted(OOD_GENERATORS)}")
    out: list[Problem] = []
    seen: set[str] = set()
    index = 0
    while len(out) < n and index < 100 * (n + 1):
        form, q, a = OOD_GENERATORS[name](rng_for(seed, "ood", name, 0, index))
        index += 1
        if q in seen:
            continue
        seen.add(q)
        out.append(Problem(id=f"{name}-{len(out):04d}", question=q, answer=str(a), origin="procedural",
                           source=name, meta={"split": "ood", "form": form}))
    return out


def svamp_problems(n: int, *, seed: int = 0) -> list[Problem]:
    """A seeded sample of n SVAMP test problems (all 1000 when n >= 1000), in file order."""
    problems = load_jsonl_problems(SVAMP_FILE)
    if n >= len(problems):
        return problems
    keep = sorted(random.Random(f"svamp:{seed}").sample(range(len(problems)), n))
    return [problems[i] for i in keep]
