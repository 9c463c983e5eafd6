"""Chosen paths right all the way (selfplay.pair.process): the step check before pairing, rejected
with a known first error, step-level pairs; and that a step pair trains as TRL reads it."""
import pytest

from selfplay.config import FiltersConfig, PairConfig
from selfplay.core.records import Problem, Rollout
from selfplay.pair.curate import curate_pairs
from selfplay.pair.pairs import make_pairs
from selfplay.pair.process import chosen_eligibility, first_error, split_steps, step_pair_parts
from selfplay_verifiers.steps import check_steps

P = Problem(id="p1", question="What is 2 + 6?", answer="8", origin="procedural", source="add", level=1)
CLEAN = "First, 2 + 6 = 8. So the answer is \\boxed{8}."
FALSE_STEP = "2 + 6 = 7. Then 2 + 6 = 8. So the answer is 8."
ECHO = "2 + 6 equals 8. So the answer is 2 + 6."
WRONG_EARLY = "First, 2 + 6 = 9. So the answer is \\boxed{9}."
WRONG_NO_STEP = "The answer is 9."


def ro(i, text, label, extracted, mode="cot", pid="p1"):
    return Rollout(problem_id=pid, sample_index=i, completion=text, finish_reason="stop", n_tokens=9, seed=i,
                   label=label, reason="ok" if label == "correct" else "wrong", extracted=extracted, mode=mode)


def paths():
    return [ro(0, CLEAN, "correct", "8"), ro(1, FALSE_STEP, "correct", "8"), ro(2, ECHO, "correct", "2 + 6"),
            ro(3, WRONG_NO_STEP, "incorrect", "9"), ro(4, WRONG_EARLY, "incorrect", "9"),
            ro(5, "print(2 + 7)", "correct", "8", mode="pot")]


def test_flawed_right_answers_are_dropped_and_counted():
    kept, dropped = res = chosen_eligibility([P], paths())
    assert [r.sample_index for r in kept] == [0, 3, 4, 5]  # pot paths are judged by their program
    assert dropped == {"false_step": 1, "unevaluated_answer": 1, "no_boxed": 0}
    assert res.info["checked"] == 3 and res.info["statements"]["false"] == 1 and res.info["kept_as_rejected"] == 0


def test_flawed_right_answers_may_serve_as_rejected():
    kept, dropped = chosen_eligibility([P], paths(), flawed="rejected")
    flawed = {r.sample_index: r for r in kept if r.sample_index in (1, 2)}
    assert flawed[1].label == flawed[2].label == "incorrect"
    assert (flawed[1].reason, flawed[2].reason) == ("false_step", "unevaluated_answer")
    assert dropped["false_step"] == 1
    with pytest.raises(ValueError, match="pair.flawed_chosen"):
        chosen_eligibility([P], paths(), flawed="keep")


def test_unevaluated_only_against_a_number_and_boxed_on_request():
    expr_gold = Problem(id="p1", question="Simplify x + x.", answer="2x", origin="procedural", source="alg")
    kept, dropped = chosen_eligibility([expr_gold], [ro(0, "So it is 2 + 6.", "correct", "2 + 6")])
    assert len(kept) == 1 and dropped["unevaluated_answer"] == 0
    kept, dropped = chosen_eligibility([P], [ro(0, "2 + 6 = 8. The answer is 8.", "correct", "8")],
                                       require_boxed=True)
    assert kept == [] and dropped["no_boxed"] == 1


def test_rejected_with_a_known_first_error_comes_first_and_is_recorded():
    kept, _ = chosen_eligibility([P], paths())
    out = make_pairs(P, [r for r in kept if r.mode == "cot"], max_pairs=1, round_idx=0, seed=0, model="m",
                     sampling={})
    [pair] = out
    assert pair.chosen[0]["content"] == CLEAN and pair.rejected[0]["content"] == WRONG_EARLY
    assert pair.metadata["first_error"]["statement"] == "2 + 6 = 9"
    assert WRONG_EARLY[pair.metadata["first_error"]["start"]:].startswith("2 + 6 = 9")
    assert pair.metadata["step_check"] == {"chosen": {"true": 1, "false": 0, "unknown": 0},
                                           "rejected": {"true": 0, "false": 1, "unknown": 0}}
    # without a rejected whose error is known, the pair still forms, with first_error None
    [pair] = make_pairs(P, [kept[0], ro(3, WRONG_NO_STEP, "incorrect", "9")], max_pairs=1, round_idx=0, seed=0,
                        model="m", sampling={})
    assert pair.metadata["first_error"] is None


def test_first_error_and_steps():
    assert first_error(check_steps("ok. 1 + 1 = 3."))["statement"] == "1 + 1 = 3"
    assert first_error(check_steps("1 + 1 = 2")) is None
    text = "Step 1: 2 + 6 = 8.\nStep 2: 8 - 1 = 7. The answer is 7.5 apples. Done!"
    steps = split_steps(text)
    assert "".join(steps) == text
    assert steps == ["Step 1: 2 + 6 = 8.\n", "Step 2: 8 - 1 = 7. ", "The answer is 7.5 apples. ", "Done!"]


def test_step_pair_parts_need_the_error_in_the_first_differing_step():
    chosen = "Add them. 2 + 6 = 8. The answer is 8."
    rejected = "Add them. 2 + 6 = 9. The answer is 9."
    err = first_error(check_steps(rejected))["start"]
    assert step_pair_parts(chosen, rejected, err) == ("Add them. ", "2 + 6 = 8.", "2 + 6 = 9.")
    late = "Think. Add them. 2 + 6 = 9."
    assert step_pair_parts(chosen, late, first_error(check_steps(late))["start"]) is None  # "Think." is not known wrong


def test_step_pairs_option_and_curation_counts():
    rs = [ro(0, "Add them. 2 + 6 = 8. The answer is 8.", "correct", "8"),
          ro(1, "Add them. 2 + 6 = 9. The answer is 9.", "incorrect", "9"),
          ro(2, FALSE_STEP, "correct", "8")]

    def make(p, rollouts, rate):
        return make_pairs(p, rollouts, max_pairs=4, round_idx=0, seed=0, model="m", sampling={}, rate=rate,
                          step_pairs=True)

    pairs, counts = curate_pairs([P], {"p1": rs}, FiltersConfig(enabled=False), make, pair=PairConfig())
    assert [p.metadata.get("granularity", "path") for p in pairs] == ["path", "step"]
    step = pairs[1]
    assert step.chosen[0]["content"] == "Add them. 2 + 6 = 8." and step.rejected[0]["content"] == "Add them. 2 + 6 = 9."
    assert step.metadata["step"] == {"prefix_chars": 10, "chosen_step": "2 + 6 = 8.", "rejected_step": "2 + 6 = 9."}
    assert counts["steps"] == {"false_step": 1, "unevaluated_answer": 0, "no_boxed": 0}
    assert counts["format_info"] == {"paths_boxed": 0.0, "chosen_boxed": 0.0, "step_pairs": 1}
    pairs_off, counts_off = curate_pairs([P], {"p1": rs}, FiltersConfig(enabled=False), make,
                                         pair=PairConfig(clean_chosen=False))
    assert "steps" not in counts_off
    assert {p.chosen[0]["content"] for p in pairs_off} >= {FALSE_STEP}  # the old behaviour, as asked


@pytest.mark.model
def test_a_step_pair_is_what_trl_trains_on():
    """TRL's own preprocessing splits a step pair into the prompt (chat template + question) and
    completions that start with the shared prefix, so the prefix's log-probabilities cancel in the
    DPO margin: the step pair trains the step."""
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template

    from selfplay.backends.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("default"))
    rs = [ro(0, "Add them. 2 + 6 = 8. The answer is 8.", "correct", "8"),
          ro(1, "Add them. 2 + 6 = 9. The answer is 9.", "incorrect", "9")]
    [_, step] = make_pairs(P, rs, max_pairs=1, round_idx=0, seed=0, model="m", sampling={}, step_pairs=True)
    row = apply_chat_template({"prompt": step.prompt, "chosen": step.chosen, "rejected": step.rejected}, tok)
    assert row["prompt"].endswith("<|im_start|>assistant\n") and "What is 2 + 6?" in row["prompt"]
    assert row["chosen"].startswith("Add them. 2 + 6 = 8.") and row["rejected"].startswith("Add them. 2 + 6 = 9.")
