"""Self-play posing: the prompt kinds and their assistant prefill, the overgenerate-until-target
loop with its second witness, the posing checks, the curriculum level, the majority witness,
train_on and the posed-problem audit. Fast: scripted backend and an in-process fake sandbox."""
from __future__ import annotations

import contextlib
import io as _io
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest

import selfplay.pose.posing as pose_mod
import selfplay.pose.witness as witness_mod
from selfplay.backends.base import SamplingParams, chat_token_ids
from selfplay.backends.scripted import ScriptedBackend
from selfplay.config import Config
from selfplay.core import io
from selfplay.core.records import Pair, Problem, Rollout
from selfplay.inspect.audit import posed_sample, print_posed
from selfplay.pair.mixing import build_training_set
from selfplay.pair.pairs import make_pairs
from selfplay.pair.pseudo import majority_witness
from selfplay.pose.checks import check_posed, clean_question, digit_numbers, ill_posed, program_steps
from selfplay.pose.posing import pose_problems
from selfplay.pose.witness import program_witness
from selfplay.prompts import (
    POSE_KINDS,
    PROGRAM_STOP,
    QUESTION_STOP,
    answer_value,
    level_hint,
    pose_messages,
    program_messages,
    question_messages,
)
from selfplay.run.context import RoundContext
from selfplay.run.round import pose_level, posed_difficulty, stage_problems
from selfplay_verifiers.verdict import Verdict

SHOTS = [("What is 1 + 2?", "print(1 + 2)"), ("Tom has 3 apples and 4 pears. How many fruits?", "print(3 + 4)")]
EXAMPLES = [Problem(id=f"e{i}", question=f"What is {i} + {i + 3}?", answer=str(2 * i + 3), origin="procedural",
                    source="add", program=f"print({i} + {i + 3})") for i in range(1, 5)]
PARAMS = SamplingParams(n=1)


class ExecSandbox:
    """Runs a program in-process and captures what it prints (the real one is a bwrap jail)."""

    def __init__(self) -> None:
        self.programs: list[str] = []

    def run(self, code: str):
        self.programs.append(code)
        buf = _io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(code, "<posed>", "exec"), {})
            verdict = Verdict("correct", "ok")
        except Exception:
            verdict = Verdict("incorrect", "runtime_error")
        return SimpleNamespace(stdout=buf.getvalue(), verdict=verdict)


class RecordingBackend(ScriptedBackend):
    """The scripted backend, keeping every prompt it was asked."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.prompts: list[list[dict[str, str]]] = []

    def generate(self, prompts, params, seeds):
        self.prompts.extend(prompts)
        return super().generate(prompts, params, seeds)


class IllPosedBackend(ScriptedBackend):
    """Poses a yes/no question for every question-first prompt."""

    def _pose(self, msgs, seed):
        if msgs[0]["content"].startswith(("Write one more problem", "Write new math", "Combine")):
            return " Is 200 a multiple of 4?\n"
        return super()._pose(msgs, seed)


def pose(backend=None, sandbox=None, **kw):
    kw = {"attempts": 40, "shots": 2, "params": PARAMS, "seed": 0, "round_idx": 0, "model": "m", "batch": 8, **kw}
    return pose_problems(backend or ScriptedBackend(), sandbox or ExecSandbox(), EXAMPLES, **kw)


def accounted(stats) -> int:
    """Every attempt is either kept or rejected for exactly one reason."""
    return stats["kept"] + sum(stats["rejected"].values())


# ------------------------------------------------------------------ chat_token_ids: the prefill

class StubTokenizer:
    def __init__(self):
        self.kwargs = None

    def apply_chat_template(self, messages, **kw):
        self.kwargs = kw
        return {"input_ids": [1, 2, 3]}  # transformers 5: a BatchEncoding


@pytest.mark.parametrize("last,prefill", [("assistant", True), ("user", False)])
def test_chat_token_ids_flags_and_batch_encoding(last, prefill):
    tok = StubTokenizer()
    ids = chat_token_ids(tok, [{"role": "user", "content": "u"}, {"role": last, "content": "x"}])
    assert ids == [1, 2, 3]
    assert tok.kwargs == {"add_generation_prompt": not prefill, "continue_final_message": prefill, "tokenize": True}


@pytest.fixture(scope="module")
def tokenizer():
    from selfplay.backends.models import load_tokenizer

    return load_tokenizer("default")


@pytest.mark.model
def test_chat_token_ids_real_tokenizer_prefill_vs_generation_prompt(tokenizer):
    for msgs in [pose_messages(k, SHOTS, 1) for k in POSE_KINDS] + [program_messages(SHOTS, "What is 5 + 6?"),
                                                                   question_messages(SHOTS, "print(5 + 6)")]:
        text = tokenizer.decode(chat_token_ids(tokenizer, msgs))
        assert text.endswith(msgs[-1]["content"]), (msgs[-1]["content"][-20:], text[-40:])  # trailing "\n" kept
        assert text.count("<|im_start|>assistant") == 1  # the prefill is the open assistant turn
    user_only = [{"role": "user", "content": "What is 2 + 2?"}]
    text = tokenizer.decode(chat_token_ids(tokenizer, user_only))
    assert text.endswith("What is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")


# ------------------------------------------------------------------ prompts: kinds and levels

def test_level_hint():
    assert level_hint(0) == "" and level_hint(-1) == ""
    one, two, three = level_hint(1), level_hint(2), level_hint(3)
    assert "larger numbers" in one and "step" not in one
    assert "larger numbers" in two and "one more step" in two
    assert "2 more steps" in three
    assert len({one, two, three}) == 3


@pytest.mark.parametrize("kind", sorted(POSE_KINDS))
def test_pose_messages_prefill_and_level(kind):
    plain, hard = pose_messages(kind, SHOTS, 0), pose_messages(kind, SHOTS, 2)
    for msgs in (plain, hard):
        assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert "harder" not in plain[0]["content"] and level_hint(2) in hard[0]["content"]
    assert plain[1] == hard[1]  # the level changes the ask, never the pattern
    prefill = plain[1]["content"]
    if kind == "program_first":
        assert prefill.endswith("```python\n") and prefill.count("```python\n") == len(SHOTS) + 1
        assert "print(3 + 4)" in prefill
    else:
        assert prefill.endswith("Problem:")
        shown = prefill if kind in ("fewshot", "mutation") else plain[0]["content"]
        assert all(q in shown for q, _ in SHOTS)


def test_program_and_question_messages_prefill_and_stops():
    prog = program_messages(SHOTS, " What is 5 + 6? ")
    assert prog[-1]["role"] == "assistant" and prog[-1]["content"].endswith("Problem: What is 5 + 6?\nProgram:\n```python\n")
    quest = question_messages(SHOTS, "print(5 + 6)\n")
    assert quest[-1]["role"] == "assistant" and quest[-1]["content"].endswith("```python\nprint(5 + 6)\n```\nProblem:")
    assert QUESTION_STOP == ("\n",) and PROGRAM_STOP == ("```",)
    with pytest.raises(ValueError, match="pose kind"):
        pose_messages("riddle", SHOTS)


# ------------------------------------------------------------------ check_posed / ill_posed

@pytest.mark.parametrize("question,why", [
    ("Is 200 a multiple of 4?", "yes_no_question"),
    ("Are there 5 cats on 2 mats?", "yes_no_question"),
    ("What is 4x + 1?", "has_variable"),
    ('The answer to "What is 27 minus 1?" is 27. How many apples are left?', "two_questions"),
    ("The answer is 27. How many apples are left?", "mentions_answer"),
    ("What is 5 - 2, and what is 5?", "two_questions"),
    ("Island Park has 3 oaks and 4 elms. How many trees?", None),  # "Is" only as a word
    ("On the 5th day Ann buys 3 pens. How many pens on the 2nd day?", None),  # 5th is no variable
])
def test_ill_posed(question, why):
    assert ill_posed(question) == why


@pytest.mark.parametrize("question,program,expected", [
    ("Is 200 a multiple of 4?", "print(int(200 % 4 == 0))", (None, "yes_no_question")),
    ("What is 4x + 1?", "print(4 * 1 + 1)", (None, "has_variable")),
    ("The answer to 27 minus 1 is 27. How many are left?", "print(27 - 1)", (None, "mentions_answer")),
    ("What is 7 + 5 - 4 + 2?", "print(7 + 5 + 2)", (None, "question_number_unused")),
    ("What is 111?", "print(111)", (None, "no_computation")),
    ("Ann has 12 apples and buys 30 more. How many apples?", "print(12 + 30)", ("42", "ok")),
    ("What is 7 divided by 4?", "print(7 / 4)", ("1.75", "ok")),
    ("What is 1 divided by 3?", "print(1 / 3)", ("\\frac{1}{3}", "ok")),
    ("What is 0.1 plus 0.2?", "print(0.1 + 0.2)", (None, "inexact_output")),
])
def test_check_posed_seen_bad_cases_and_a_good_one(question, program, expected):
    sb = ExecSandbox()
    assert check_posed(question, program, sb, set()) == expected
    runs = {"ok": 2, "inexact_output": 1}.get(expected[1], 0)  # text checks come before any run
    assert len(sb.programs) == runs


def test_check_posed_question_checks_without_a_program():
    assert check_posed("Ann has 3 cats and 2 dogs. How many?", None, ExecSandbox(), set(), False) == ("", "unlabelled")
    assert check_posed("Is 200 a multiple of 4?", None, ExecSandbox(), set(), False) == (None, "yes_no_question")


def test_digit_numbers_steps_and_clean_question():
    assert digit_numbers("Ann has 1,200 fish, 3.5 cats and five dogs.") == {1200, Fraction(7, 2)}
    assert program_steps("print(-3 + 4 * 2)") == 3 and program_steps("print(2 ** 3 // 2)") == 2
    assert program_steps("print(111)") == 0 and program_steps("print((") == 0
    assert clean_question("Here is one. **New Problem:** What is 3 + 4? Answer: 7") == "What is 3 + 4?"


def test_witness_records_its_run():
    p = Problem(id="p", question="What is 2 + 3?", answer="5", origin="posed", source="m", program="print(2 + 3)")
    reasons = Counter()
    cases = [("print(3 + 2)", True, "5"), ("print(2 + 3 + 1)", False, "6"), ("print(1 / 0)", False, None),
             (None, False, None)]
    for program, agree, answer in cases:
        assert program_witness(p, program, ExecSandbox(), reasons) is agree
        assert p.meta["witness"] == {"route": "program", "program": program, "answer": answer, "agree": agree}
    assert reasons == {"golds_disagree": 1, "witness_program_runtime_error": 1, "witness_no_program": 1}


# ------------------------------------------------------------------ pose_problems: the loop

def test_target_met_early_stops_the_loop():
    backend = ScriptedBackend()
    kept, stats = pose(backend, attempts=400, target=5, batch=4)
    assert stats["kept"] == len(kept) == 5 and stats["target"] == 5
    assert stats["attempted"] < 400 and stats["attempted"] % 4 == 0
    assert accounted(stats) == stats["attempted"]
    assert "stopped" not in stats
    assert [p.id for p in kept] == sorted(p.id for p in kept)  # the first ones, in attempt order
    assert max(p.meta["attempt"] for p in kept) < stats["attempted"]


def test_target_zero_makes_every_attempt():
    kept, stats = pose(attempts=20, target=0, batch=8)
    assert stats["attempted"] == 20 and accounted(stats) == 20 and "stopped" not in stats
    assert 0 < stats["kept"] == len(kept) < 20


def test_unmet_target_says_the_budget_stopped_it():
    kept, stats = pose(attempts=8, target=100, batch=4)
    assert stats["attempted"] == 8 and stats["stopped"] == "attempts" and len(kept) < 100


def test_program_witness_drops_disagreeing_golds():
    kept, stats = pose(attempts=40, witness="program")
    assert stats["witness"] == "program" and stats["golds_disagree"] == stats["rejected"]["golds_disagree"] > 0
    assert kept
    for p in kept:
        w = p.meta["witness"]
        assert w["agree"] is True and w["route"] == "program" and w["answer"] == p.answer
        assert w["program"].startswith("print(")  # a second program, run in the sandbox
        a, b = [int(x) for x in p.question.split() if x.isdigit()]
        assert p.answer in (str(a + b), str(a + b + 1))


def test_no_witness_keeps_more_and_records_none():
    witnessed, _ = pose(attempts=40, witness="program")
    kept, stats = pose(attempts=40, witness="none")
    assert stats["golds_disagree"] == 0 and "golds_disagree" not in stats["rejected"]
    assert all("witness" not in p.meta for p in kept)
    assert len(kept) > len(witnessed)
    # without a witness, the scripted off-by-one gold program goes through: what the witness is for
    assert any(p.program.endswith("+ 1)") for p in kept)


def test_majority_witness_is_left_to_the_pair_stage():
    kept, stats = pose(attempts=16, witness="majority")
    assert stats["witness"] == "majority" and stats["golds_disagree"] == 0
    assert kept and all("witness" not in p.meta for p in kept)


def test_by_kind_counts_and_program_first_path():
    backend = RecordingBackend()
    kept, stats = pose(backend, attempts=40, kinds=("fewshot", "program_first"), level=1)
    by = stats["by_kind"]
    assert set(by) == {"fewshot", "program_first"}
    assert by["fewshot"]["attempted"] == by["program_first"]["attempted"] == 20
    assert sum(k["attempted"] for k in by.values()) == stats["attempted"] == 40
    assert sum(k["kept"] for k in by.values()) == stats["kept"] == len(kept)
    for kind in by:
        assert by[kind]["kept"] == sum(p.meta["kind"] == kind for p in kept) > 0
    for p in kept:
        assert p.meta["kind"] == ("fewshot", "program_first")[p.meta["attempt"] % 2]
        assert p.meta["level"] == 1 == stats["level"] and p.meta["steps"] == program_steps(p.program) >= 1
    asks = [m[0]["content"] for m in backend.prompts]
    assert sum(a.startswith("Write new math word problems") for a in asks) == 20
    assert sum(a.startswith("Write a new short Python program") for a in asks) == 20
    assert all(level_hint(1) in a for a in asks if a.startswith(("Write new math", "Write a new short")))
    # program_first: the question is asked of the program the model wrote first
    assert sum(a.startswith("Write the math word problem") for a in asks) == 20


@pytest.mark.parametrize("kind,shots", [("mutation", 3), ("composition", 2), ("fewshot", 3)])
def test_shots_per_kind(kind, shots):
    backend = RecordingBackend()
    pose(backend, attempts=4, kinds=(kind,), shots=3)
    first = [m for m in backend.prompts if m[0]["content"].startswith(("Write one more", "Combine", "Write new"))]
    assert len(first) == 4
    for m in first:
        assert (m[0]["content"] + m[1]["content"]).count("Problem: What is") == shots


WORD_SEEDS = [Problem(id=f"w{src}{i}", question=f"{name} has {i} {thing} and gets {i + 2} more. How many {thing} "
                     f"does {name} have now?", answer=str(2 * i + 2), origin="procedural", source=src,
                     program=f"print({i} + {i + 2})")
              for src, name, thing in (("word_add", "Li", "pencils"), ("word_mix", "Ana", "shells"))
              for i in range(1, 4)]


def test_mutation_shows_seeds_of_one_word_problem_kind_in_the_models_mouth():
    backend = RecordingBackend()
    pose_problems(backend, ExecSandbox(), EXAMPLES + WORD_SEEDS, attempts=16, shots=3, params=PARAMS, seed=0,
                  round_idx=0, model="m", batch=16, kinds=("mutation",))
    first = [m for m in backend.prompts if m[0]["content"].startswith("Write one more problem of the same kind")]
    assert len(first) == 16
    kinds_seen = set()
    for m in first:
        shown = m[1]["content"]
        assert m[1]["role"] == "assistant" and shown.endswith("Problem:")  # the pattern the model continues
        assert shown.count("Problem: ") == 3 and "What is" not in shown  # bare arithmetic is left out
        kind = {"Li has" in shown, "Ana has" in shown}
        assert kind in ({True, False},)  # one kind per prompt: only Li's or only Ana's stories
        kinds_seen.add("Li has" in shown)
    assert kinds_seen == {True, False}  # both word kinds get asked for over the batch
    # the posed questions are word problems (Kim's beads): their programs and the witness's are
    # written after word problems' programs, never after bare arithmetic's
    programs = [m[1]["content"] for m in backend.prompts if m[0]["content"].startswith("Write a short Python")]
    assert len(programs) >= 16 and all("Kim has" in p.rsplit("Problem:", 1)[1] for p in programs)
    assert all(p.count("Problem: ") == 4 and p.count("What is") == 0 for p in programs)
    fewshot = RecordingBackend()  # the default kinds keep their shots from the whole pool
    pose_problems(fewshot, ExecSandbox(), EXAMPLES + WORD_SEEDS, attempts=16, shots=3, params=PARAMS, seed=0,
                  round_idx=0, model="m", batch=16, kinds=("fewshot",))
    assert any("What is" in m[1]["content"] for m in fewshot.prompts
               if m[0]["content"].startswith("Write a short Python"))
    only_bare = RecordingBackend()
    pose(only_bare, attempts=4, kinds=("mutation",), shots=3)  # no word problems: the bare kind itself
    assert all(m[1]["content"].count("Problem: What is") == 3 for m in only_bare.prompts
               if m[0]["content"].startswith("Write one more"))


def _first_calls(backend):
    return [m[1]["content"] for m in backend.prompts if m[0]["content"].startswith("Write new math")]


def test_shot_sets_share_the_shot_prefix_within_a_batch():
    shared = RecordingBackend()
    pose(shared, attempts=16, batch=16, kinds=("fewshot",), shots=2, shot_sets=2, target=0)
    fresh = RecordingBackend()
    pose(fresh, attempts=16, batch=16, kinds=("fewshot",), shots=2, shot_sets=0, target=0)
    assert len(_first_calls(shared)) == len(_first_calls(fresh)) == 16
    assert len(set(_first_calls(shared))) == 2  # two prompts, eight attempts each (own sampling seeds)
    assert len(set(_first_calls(fresh))) > 2


def test_later_batches_are_sized_by_the_kept_rate():
    sizes: list[int] = []
    kept_per: list[int] = []

    def accept(batch):
        keep = [p for p in batch if p.meta["attempt"] % 4 == 1]
        kept_per.append(len(keep))
        return keep, {"heldout": len(batch) - len(keep)}

    pose(attempts=64, batch=64, target=0, accept=accept)
    first = kept_per[0]
    assert 0 < first < 16
    kept_per.clear()
    kept, stats = pose(attempts=400, batch=64, target=first + 3, accept=accept,
                       progress=SimpleNamespace(update=sizes.append))
    assert sizes[0] == 64 and kept_per[0] == first
    assert sizes[1] == min(64, max(16, math.ceil(1.5 * 3 * 64 / first))) < 64
    assert len(kept) == first + 3 == stats["kept"]


class ManyBackend(ScriptedBackend):
    """The scripted backend with generate_many, keeping how many jobs each submission had."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.submissions: list[int] = []

    def generate_many(self, jobs):
        self.submissions.append(len(jobs))
        return [super(ManyBackend, self).generate(*job) for job in jobs]


def test_independent_posing_calls_are_submitted_together():
    backend = ManyBackend()
    kept, _ = pose(backend, attempts=8, batch=8, kinds=("fewshot", "program_first"))
    plain, _ = pose(attempts=8, batch=8, kinds=("fewshot", "program_first"))
    # first calls of both routes, then both second calls, then the witness: three submissions
    assert backend.submissions == [2, 2, 1]
    assert [p.to_dict() for p in kept] == [p.to_dict() for p in plain] and kept


def test_accept_callback_drops_are_counted_and_not_kept():
    seen_batches = []

    def accept(batch):
        seen_batches.append([p.id for p in batch])
        keep = [p for p in batch if p.meta["attempt"] % 2]
        return keep, {"heldout": len(batch) - len(keep), "dedup_near": 0}

    kept, stats = pose(attempts=24, batch=8, accept=accept)
    assert len(seen_batches) == 3
    dropped = sum(len(b) for b in seen_batches) - len(kept)
    assert stats["rejected"]["heldout"] == dropped > 0 and "dedup_near" not in stats["rejected"]
    assert all(p.meta["attempt"] % 2 == 1 for p in kept) and kept
    assert all(p.meta["witness"]["agree"] for p in kept)  # the callback sees witnessed problems only
    assert accounted(stats) == 24


def test_max_seconds_stops_between_batches(monkeypatch):
    clock = iter(range(1000))  # each call to monotonic() is one second later
    monkeypatch.setattr(pose_mod, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    kept, stats = pose(attempts=40, batch=4, target=0, max_seconds=1.5)
    assert stats["stopped"] == "max_seconds" and stats["attempted"] == 4 and accounted(stats) == 4


def test_same_arguments_same_problems():
    a_kept, a_stats = pose(attempts=24, kinds=("fewshot", "program_first", "composition"), level=2)
    b_kept, b_stats = pose(attempts=24, kinds=("fewshot", "program_first", "composition"), level=2)
    assert [p.to_dict() for p in a_kept] == [p.to_dict() for p in b_kept] and a_kept
    assert a_stats == b_stats
    c_kept, _ = pose(attempts=24, kinds=("fewshot", "program_first", "composition"), level=2, seed=1)
    assert [p.question for p in c_kept] != [p.question for p in a_kept]


def test_bad_witness_or_kind_is_refused():
    with pytest.raises(ValueError, match="pose.witness"):
        pose(witness="oracle")
    with pytest.raises(ValueError, match="pose.prompts.*'riddle'"):
        pose(kinds=("fewshot", "riddle"))


def test_no_shots_or_no_budget_poses_nothing():
    kept, stats = pose_problems(ScriptedBackend(), ExecSandbox(), [Problem(id="x", question="What is 1 + 1?",
                                answer="2", origin="file", source="f")], attempts=8, shots=2, params=PARAMS,
                                seed=0, round_idx=0)
    assert kept == [] and stats["attempted"] == 0
    assert pose(attempts=0)[1]["attempted"] == 0


def test_ill_posed_question_first_rejections_keep_their_reason():
    _, stats = pose(IllPosedBackend(), attempts=4, batch=4, kinds=("mutation",))
    assert stats["rejected"] == {"yes_no_question": 4}


def test_duplicate_of_a_seed_question_is_counted_as_duplicate():
    first, _ = pose(attempts=1, batch=1, witness="none")
    _, stats = pose(attempts=1, batch=1, witness="none", existing=[first[0].question])
    assert stats["rejected"] == {"duplicate": 1}


def test_ill_posed_reasons_counted_without_required_program():
    _, stats = pose(IllPosedBackend(), attempts=4, batch=4, kinds=("mutation",), require_program=False)
    assert stats["rejected"] == {"yes_no_question": 4} and stats["kept"] == 0


# ------------------------------------------------------------------ curriculum and difficulty

def ctx_after(tmp_path, rate, last_level=1, curriculum=True, round_idx=1):
    cfg = Config()
    cfg.pose.curriculum = curriculum
    io.write_json(tmp_path / "round_0" / "pose.json", {"level": last_level})
    if rate is not None:
        io.write_json(tmp_path / "round_0" / "stats.json", {"posed_difficulty": {"mean_solve_rate": rate}})
    return SimpleNamespace(cfg=cfg, round_idx=round_idx, out=tmp_path)


@pytest.mark.parametrize("rate,last,level", [(0.95, 1, 2), (0.05, 1, 0), (0.5, 1, 1), (0.05, 0, 0),
                                             (0.875, 1, 1), (None, 2, 2)])
def test_pose_level_follows_last_rounds_solve_rate(tmp_path, rate, last, level):
    got, why = pose_level(ctx_after(tmp_path, rate, last))
    assert got == level and why
    if rate is not None and rate > 0.875:
        assert "band_high" in why


def test_pose_level_start_and_off(tmp_path):
    assert pose_level(ctx_after(tmp_path, 0.95, round_idx=0)) == (0, "start")
    assert pose_level(ctx_after(tmp_path, 0.95, curriculum=False)) == (0, "off")


def test_stage_problems_poses_at_the_curriculum_level(tmp_path):
    ctx = ctx_after(tmp_path, 0.95)
    cfg = ctx.cfg
    cfg.seeds.problems, cfg.pose.attempts, cfg.pose.target, cfg.pose.batch = 6, 40, 6, 4
    rc = RoundContext(cfg=cfg, out=tmp_path, round_idx=1, model="scripted-model", backend_factory=ScriptedBackend)
    rc.resources._sandbox = ExecSandbox()
    rc.dir.mkdir()
    problems = stage_problems(rc)
    stats = io.read_json(rc.dir / "pose.json")
    posed = [p for p in problems if p.origin == "posed"]
    assert stats["level"] == 2 and "band_high" in stats["level_reason"]
    assert stats["kept"] == len(posed) == 6 and stats["attempted"] < 40
    assert stats["by_kind"].keys() == {"fewshot", "program_first"}  # the config's default kinds
    assert all(p.meta["level"] == 2 for p in posed)
    assert [p.id for p in io.read_records(rc.dir / "problems.jsonl", Problem.from_dict)] == [p.id for p in problems]


def posed_problem(pid, answer="5", steps=1, question=None, **meta):
    return Problem(id=pid, question=question or f"Q {pid}?", answer=answer, origin="posed", source="m",
                   program="print(2 + 3)", meta={"steps": steps, **meta})


def rollout(pid, i, label, extracted=None):
    return Rollout(problem_id=pid, sample_index=i, completion=f"path {i} of {pid}", finish_reason="stop",
                   n_tokens=3, seed=i, label=label, reason="ok", extracted=extracted)


def test_posed_difficulty_counts_and_means():
    problems = [posed_problem("a", steps=1), posed_problem("b", steps=3), posed_problem("c", steps=1),
                Problem(id="d", question="What is 1 + 1?", answer="2", origin="procedural", source="add")]
    rollouts = {"a": [rollout("a", 0, "correct"), rollout("a", 1, "incorrect"), rollout("a", 2, "unknown"),
                      rollout("a", 3, "correct")],
                "b": [rollout("b", 0, "incorrect"), rollout("b", 1, "incorrect")],
                "d": [rollout("d", 0, "correct")]}  # c: not solved; d: not posed
    got = posed_difficulty(problems, rollouts, 2)
    assert got == {"problems": 3, "level": 2, "mean_solve_rate": 0.3333, "solve_rate": {"0.000": 1, "0.667": 1},
                   "mean_steps": 1.667, "steps": {"1": 2, "3": 1}}
    assert posed_difficulty(problems[3:], rollouts, 0) is None
    assert posed_difficulty(problems[2:3], {}, 1)["mean_solve_rate"] is None


# ------------------------------------------------------------------ majority witness

class EqualVerifier:
    def __init__(self):
        self.calls = []

    def verify_many(self, pairs, extract=True):
        pairs = list(pairs)
        self.calls.append((pairs, extract))
        return [SimpleNamespace(label="correct" if g == a else "incorrect") for g, a in pairs]


def test_majority_witness_keeps_agreeing_golds_only():
    agree, differ, silent = posed_problem("agree", "5"), posed_problem("differ", "7"), posed_problem("silent", "9")
    unlabelled = posed_problem("unlabelled", "", gold_trusted=False)
    seed = Problem(id="seed", question="What is 1 + 1?", answer="2", origin="procedural", source="add")
    rollouts = {"agree": [rollout("agree", i, "correct", x) for i, x in enumerate(["5", "5", "4"])],
                "differ": [rollout("differ", i, "incorrect", x) for i, x in enumerate(["8", "8", "7"])],
                "seed": [rollout("seed", i, "incorrect", "3") for i in range(3)]}
    verifier = EqualVerifier()
    out, counts = majority_witness([seed, agree, differ, silent, unlabelled], rollouts, verifier, 0.5)
    assert [p.id for p in out] == ["seed", "agree", "unlabelled"]
    assert counts == {"posed": 3, "agree": 1, "golds_disagree": 2}  # no vote at all is no witness either
    assert out[1].meta["majority_witness"] == {"answer": "5", "agreement": pytest.approx(2 / 3), "votes": 3,
                                                "agree": True}
    assert out[1].answer == "5" and "majority_witness" not in out[0].meta
    assert verifier.calls == [([("5", "5"), ("7", "8")], False)]


def test_majority_witness_only_the_selected_problems():
    """witness auto: a posed problem with an expression witness needs no majority vote."""
    expr = posed_problem("expr", "7", expression_witness={"expression": "3 + 4", "value": "7", "agree": True})
    word = posed_problem("word", "5")
    rollouts = {"expr": [rollout("expr", i, "incorrect", "9") for i in range(3)],
                "word": [rollout("word", i, "incorrect", "6") for i in range(3)]}
    out, counts = majority_witness([expr, word], rollouts, EqualVerifier(), 0.5,
                                   lambda p: "expression_witness" not in p.meta)
    assert [p.id for p in out] == ["expr"] and counts == {"posed": 1, "agree": 0, "golds_disagree": 1}


@pytest.mark.parametrize("question,expressions,value", [
    ("What is 7 + 5 - 4 + 2?", ["7 + 5 - 4 + 2"], "10"),  # seen with gold 14 from print(7 + 5 + 2)
    ("3 + 4 is equal to what?", ["3 + 4"], "7"),
    ("What is 3 times 4 divided by 6?", ["3 * 4 / 6"], "2"),
    ("What is (3 + 4) x 2?", ["(3 + 4) * 2"], "14"),
    ("What is 1,000 + 0.1 + 0.2?", ["1000 + 0.1 + 0.2"], "10003/10"),
    ("What is 2 - 3?", ["2 - 3"], "-1"),
    ("Jason has 4 books and gets 4 more. How many books does Jason have?", [], None),
    ("What is the sum of 7 and 7?", [], None),
])
def test_stated_expressions_and_their_exact_value(question, expressions, value):
    found = witness_mod.stated_expressions(question)
    assert found == expressions
    assert (str(witness_mod.expression_value(found[0])) if found else None) == value


def test_expression_value_refuses_what_is_not_arithmetic():
    assert witness_mod.expression_value("4 / 0") is None
    assert witness_mod.expression_value("(3 + 4") is None
    assert witness_mod.expression_value("__import__('os')") is None
    assert witness_mod.expression_value("2 ** 3") is None


@pytest.mark.parametrize("gold,value", [("12", "12"), ("-0.5", "-1/2"), ("\\frac{10}{3}", "10/3"),
                                        ("-\\frac{1}{2}", "-1/2"), ("x", None)])
def test_answer_value_reads_canonical_golds(gold, value):
    v = answer_value(gold)
    assert (str(v) if v is not None else None) == value


def test_expression_witness_records_and_rejects():
    reasons = Counter()
    good, bad, word = (posed_problem("g", "10", question="What is 7 + 5 - 4 + 2?"),
                       posed_problem("b", "14", question="What is 7 + 5 - 4 + 2?"),
                       posed_problem("w", "8", question="Jason has 4 books and gets 4 more. How many books?"))
    assert [witness_mod.expression_witness(p, reasons) for p in (good, bad, word)] == [True, False, None]
    assert good.meta["expression_witness"] == {"expression": "7 + 5 - 4 + 2", "value": "10", "agree": True}
    assert bad.meta["expression_witness"]["agree"] is False and "expression_witness" not in word.meta
    assert reasons == {"golds_disagree": 1}


# ------------------------------------------------------------------ pairs, mixing, audit

def test_posed_pairs_carry_witness_kind_level_steps():
    meta = {"kind": "fewshot", "level": 2, "steps": 3, "attempt": 4,
            "witness": {"route": "program", "program": "print(2 + 3)", "answer": "5", "agree": True}}
    rs = [rollout("p", 0, "correct", "5"), rollout("p", 1, "incorrect", "6")]
    kw = dict(max_pairs=2, round_idx=0, seed=0, model="m", sampling={})
    [pr] = make_pairs(posed_problem("p", **meta), rs, **kw)
    md = pr.metadata
    assert (md["kind"], md["level"], md["steps"], md["witness"]) == ("fewshot", 2, 3, meta["witness"])
    assert "attempt" not in md
    seed = Problem(id="p", question="What is 2 + 3?", answer="5", origin="procedural", source="add", level=1,
                   meta=dict(meta))
    [sp] = make_pairs(seed, rs, **kw)
    assert sp.metadata["level"] == 1 and not {"kind", "steps", "witness"} & set(sp.metadata)


def mixing_pair(origin, rnd, i):
    return Pair(prompt=[{"role": "user", "content": f"q{rnd}-{i}"}], chosen=[{"role": "assistant", "content": "c"}],
                rejected=[{"role": "assistant", "content": "r"}],
                metadata={"problem_id": f"{origin}-r{rnd}-{i}", "origin": origin, "round": rnd})


@pytest.mark.parametrize("train_on,origins", [("posed", {"posed"}), ("seed", {"procedural", "file", "hf"}),
                                              ("all", {"procedural", "file", "hf", "posed"})])
def test_build_training_set_train_on(train_on, origins):
    rounds = [[mixing_pair("procedural", 0, i) for i in range(3)] + [mixing_pair("posed", 0, i) for i in range(2)],
              [mixing_pair("file", 1, 0), mixing_pair("hf", 1, 0)] + [mixing_pair("posed", 1, i) for i in range(3)]]
    pairs, info = build_training_set(rounds, 1, seed_fraction=0.5, train_on=train_on)
    assert {p.metadata["origin"] for p in pairs} == origins and info["train_on"] == train_on
    n_posed, n_seed = 5, 5
    assert len(pairs) == {"posed": n_posed, "seed": n_seed, "all": n_seed + n_posed}[train_on]


def test_build_training_set_bad_train_on():
    with pytest.raises(ValueError, match="train_on"):
        build_training_set([[mixing_pair("posed", 0, 0)]], 0, train_on="synthetic")


def write_posed_run(tmp_path) -> Path:
    out = tmp_path / "run"
    wit = {"route": "program", "program": "x = 2\nprint(x + 3)", "answer": "5", "agree": True}
    problems = [posed_problem("posed-r0-00000", "5", kind="fewshot", level=1, witness=wit),
                Problem(id="arith-1", question="What is 1 + 1?", answer="2", origin="procedural", source="add"),
                posed_problem("posed-r0-00003", "12", kind="program_first", level=1)]
    rollouts = ([rollout("posed-r0-00000", i, lab, x) for i, (lab, x) in
                 enumerate([("correct", "5"), ("correct", "5"), ("incorrect", "6")])]
                + [rollout("arith-1", 0, "correct", "2")])
    pairs = make_pairs(problems[0], rollouts[:3], max_pairs=4, round_idx=0, seed=0, model="m", sampling={})
    assert len(pairs) == 2  # two distinct correct paths x one incorrect
    for name, recs in (("problems", problems), ("rollouts", rollouts), ("pairs", pairs)):
        io.write_jsonl(out / "round_0" / f"{name}.jsonl", recs)
    return out


def test_posed_sample_draws_posed_problems_with_their_evidence(tmp_path):
    out = write_posed_run(tmp_path)
    rows = posed_sample(out, 10)
    assert [r["id"] for r in rows] == ["posed-r0-00000", "posed-r0-00003"]
    first, second = rows
    assert (first["gold"], first["kind"], first["level"], first["round"]) == ("5", "fewshot", 1, 0)
    assert first["witness"]["answer"] == "5" and first["pairs"] == 2
    assert first["solver"] == [(("5", "correct"), 2), (("6", "incorrect"), 1)]
    assert second["solver"] == [] and second["pairs"] == 0 and second["witness"] is None
    assert posed_sample(out, 10, round_idx=0) == rows
    draws = {s: posed_sample(out, 1, seed=s)[0]["id"] for s in range(12)}
    assert draws == {s: posed_sample(out, 1, seed=s)[0]["id"] for s in range(12)}  # seeded
    assert set(draws.values()) == {"posed-r0-00000", "posed-r0-00003"}


def test_print_posed_shows_gold_and_witness(tmp_path, capsys):
    print_posed(posed_sample(write_posed_run(tmp_path), 2))
    text = capsys.readouterr().out
    assert "### 1. posed-r0-00000 (round 0, fewshot, level 1)" in text
    assert "`print(2 + 3)` -> gold **5**" in text and "gold **12**" in text
    assert "- witness (program): `x = 2; print(x + 3)` -> 5 (agrees)" in text
    assert "5 x2 (correct), 6 x1 (incorrect); pairs: 2" in text and "not solved; pairs: 0" in text
    assert text.count("- witness") == 1  # the second has none


def test_posed_sample_refuses_missing_or_empty(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        posed_sample(tmp_path / "nope", 3)
    out = write_posed_run(tmp_path)
    with pytest.raises(ValueError, match="round_4.*not found"):
        posed_sample(out, 3, round_idx=4)
    with pytest.raises(ValueError, match=">= 1"):
        posed_sample(out, 0)
    io.write_jsonl(out / "round_0" / "problems.jsonl",
                   [Problem(id="a", question="What is 1 + 1?", answer="2", origin="procedural", source="add")])
    with pytest.raises(ValueError, match="no posed problems"):
        posed_sample(out, 3)


@pytest.mark.parametrize("witness,ids", [("auto", ["posed-r0-00000"]), ("majority", ["posed-r0-00000"]),
                                         ("program", ["posed-r0-00000", "posed-r0-00003"])])
def test_posed_sample_with_a_verifier_draws_only_trusted_golds(tmp_path, witness, ids):
    """The second posed problem has no solver answers: the majority witness never accepted it."""
    out = write_posed_run(tmp_path)
    cfg = Config()
    cfg.solve.samples, cfg.pose.witness = 3, witness
    io.write_json(out / "config.json", cfg.to_dict())
    assert [r["id"] for r in posed_sample(out, 10, verifier=EqualVerifier())] == ids
