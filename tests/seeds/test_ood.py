"""The out-of-distribution eval sets (selfplay_seeds/ood.py): reproducible, distinct, right
golds, and in forms no training generator produces."""
from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import pytest

from selfplay.config import Config
from selfplay.core import evalsets
from selfplay.run.context import eval_sets
from selfplay_seeds import GENERATORS, generate
from selfplay_seeds.ood import OOD_GENERATORS, SVAMP_FILE, ood_problems, svamp_problems

ROOT = Path(__file__).resolve().parents[2]
SHARED_SVAMP = ROOT.parent / "shared" / "data" / "svamp_test.jsonl"
NUM = re.compile(r"\d+")


def skeleton(question: str) -> str:
    """A question's form: numbers and capitalised names replaced, so two problems of one template
    share their skeleton whatever their numbers and people."""
    q = NUM.sub("N", question)
    return re.sub(r"(?<=[a-z,.] )[A-Z][a-z]+|^[A-Z][a-z]+(?= (has|had|buys|read|needs|saved))", "P", q)


@pytest.mark.parametrize("name", sorted(OOD_GENERATORS))
def test_ood_sets_are_reproducible_distinct_and_sized(name):
    a = ood_problems(name, 100, seed=0)
    assert len(a) == 100 and len({p.question for p in a}) == 100
    assert [p.question for p in a] == [p.question for p in ood_problems(name, 100, seed=0)]
    assert [p.question for p in a] != [p.question for p in ood_problems(name, 100, seed=1)]
    assert all(p.origin == "procedural" and p.source == name and p.level is None for p in a)


@pytest.mark.parametrize("name", sorted(OOD_GENERATORS))
def test_every_gold_is_a_signed_sum_of_the_question_numbers(name):
    """Independent of the templates' arithmetic: the gold must be +-a +-b [+-c] over the numbers
    the question states (every OOD form is one- or two-step + / -; "subtract 4 from 8" states
    the subtrahend first)."""
    for p in ood_problems(name, 200, seed=3):
        nums = [int(x) for x in NUM.findall(p.question)]
        gold = int(p.answer)
        assert gold >= 0, p
        sums = {sum(s * x for s, x in zip(signs, nums)) for signs in itertools.product((1, -1), repeat=len(nums))}
        assert gold in sums, p


def test_no_ood_form_is_a_training_form():
    train = {skeleton(generate(g, lv, i, seed=s).question)
             for g in GENERATORS for lv in (1, 2, 3) for i in range(60) for s in (0, 1)}
    for name in OOD_GENERATORS:
        forms = {skeleton(p.question) for p in ood_problems(name, 300, seed=0)}
        assert len(forms) >= 8, (name, forms)  # many phrasings, not one
        assert not forms & train, forms & train


def test_svamp_sample_is_seeded_and_labelled():
    a = svamp_problems(100, seed=0)
    assert len(a) == 100 and len({p.id for p in a}) == 100
    assert [p.id for p in a] == [p.id for p in svamp_problems(100, seed=0)]
    assert [p.id for p in a] != [p.id for p in svamp_problems(100, seed=1)]
    assert all(p.answer and p.question.endswith("?") for p in a)
    assert len(svamp_problems(5000)) == 1000
    assert (SVAMP_FILE.parent / "LICENSE-SVAMP.md").read_text().count("MIT License") == 1


@pytest.mark.skipif(not SHARED_SVAMP.exists(), reason="../shared/data not on this machine")
def test_shipped_svamp_is_the_shared_copy():
    digest = [hashlib.sha256(f.read_bytes()).hexdigest() for f in (SVAMP_FILE, SHARED_SVAMP)]
    assert digest[0] == digest[1]


def test_default_eval_sets_have_both_kinds():
    cfg = Config()
    sets = eval_sets(cfg)
    assert list(sets) == [evalsets.HELDOUT_PROCEDURAL, *evalsets.OOD_SETS]
    assert [len(v) for v in sets.values()] == [cfg.eval.heldout_problems] + [cfg.eval.ood_problems] * 3
    kinds = {name: evalsets.set_kind(name) for name in sets}
    assert kinds[evalsets.HELDOUT_PROCEDURAL] == evalsets.IN_DISTRIBUTION
    assert {kinds[n] for n in evalsets.OOD_SETS} == {evalsets.OUT_OF_DISTRIBUTION}
    cfg.eval.ood = False
    assert list(eval_sets(cfg)) == [evalsets.HELDOUT_PROCEDURAL]


def test_a_file_named_like_a_builtin_set_is_refused(tmp_path):
    f = tmp_path / "svamp.jsonl"
    f.write_text('{"question": "What is 1 + 1?", "answer": "2"}\n')
    cfg = Config()
    cfg.eval.files = [str(f)]
    with pytest.raises(ValueError, match=r"config: eval.files: a file stem is a built-in set name \(\['svamp'\]\)"):
        cfg.validate()
    cfg.eval.ood = False
    cfg.validate()


def test_ood_generators_cannot_be_training_seeds():
    cfg = Config()
    cfg.seeds.generators = ["add", "ood_word"]
    with pytest.raises(ValueError, match="seeds.generators"):
        cfg.validate()


@pytest.mark.parametrize("name", sorted(OOD_GENERATORS))
def test_each_problem_names_its_template(name):
    """meta["form"] (compare_runs --forms): one form per template, and every problem of a form in
    that template's wording."""
    problems = ood_problems(name, 300, seed=0)
    by_form: dict[str, set[str]] = {}
    for p in problems:
        by_form.setdefault(p.meta["form"], set()).add(skeleton(p.question))
    assert len(by_form) == 10
    assert all(len(s) == 1 for s in by_form.values()), by_form
    assert len({next(iter(s)) for s in by_form.values()}) == 10


@pytest.mark.parametrize("name,digest", [("ood_arith", "d1c8210ef0c90eba"), ("ood_word", "eb38cb962489d8a0")])
def test_ood_sets_are_the_ones_earlier_runs_were_evaluated_on(name, digest):
    """Runs are compared across code versions problem by problem (scripts/compare_runs.py): the sets
    a seed draws must not change (digest of ids, questions and golds of seeds 0, 1 and 7)."""
    h = hashlib.sha256()
    for seed in (0, 1, 7):
        for p in ood_problems(name, 300, seed=seed):
            h.update(f"{p.id}|{p.question}|{p.answer}\n".encode())
    assert h.hexdigest()[:16] == digest
