"""Issue 26: DPO's reference log-probs from the sampling engine (selfplay/train/reflogps.py).

The engine's own values are checked against the real vLLM engine in
tests/backends/test_vllm_backend.py; here the values come from an exact forward of the embedded
model, so training with them must match training with TRL's reference forward, and wrong values
or ids must fall back to the forward."""
from __future__ import annotations

import math
from dataclasses import replace

import orjson
import pytest

from selfplay.core.provenance import token_key
from selfplay.core.records import Pair
from selfplay.train.reflogps import engine_values

MODEL = "/models/m"


def _pair(model=MODEL, c=(-3.0, "k1"), r=(-5.0, "k2")):
    return Pair(prompt=[{"role": "user", "content": "q"}], chosen=[{"role": "assistant", "content": "a"}],
                rejected=[{"role": "assistant", "content": "b"}],
                metadata={"model": model, "chosen_ref_logprob": c[0], "chosen_ref_key": c[1],
                          "rejected_ref_logprob": r[0], "rejected_ref_key": r[1]})


def test_engine_values_need_the_same_model_and_the_same_ids(monkeypatch):
    import selfplay.train.reflogps as reflogps

    monkeypatch.setattr(reflogps, "resolve_model", lambda name: name.rstrip("/"))
    row = {"prompt_ids": [1, 2, 3], "chosen_ids": [7, 8, 0], "rejected_ids": [9, 0]}
    kc, kr = token_key([1, 2, 3, 7, 8, 0]), token_key([1, 2, 3, 9, 0])
    pairs = [_pair(c=(-3.0, kc), r=(-5.0, kr)),  # usable
             _pair(model=MODEL + "/", c=(-3.0, kc), r=(-5.0, kr)),  # the same model, spelled apart
             _pair(model="/models/other", c=(-3.0, kc), r=(-5.0, kr)),  # sampled by another model
             _pair(c=(-3.0, kc), r=(-5.0, "0" * 16)),  # the rejected ids differ from the engine's
             _pair(c=(None, kc), r=(-5.0, kr)),  # chosen cut by a stop string or the token limit
             Pair(prompt=[], chosen=[], rejected=[], metadata={})]  # an older pair file
    got = engine_values(pairs, [row] * len(pairs), MODEL)
    assert got == [(-3.0, -5.0), (-3.0, -5.0), None, None, None, None]
    assert token_key([1, 2, 3, 7, 8, 0]) != token_key([1, 2, 37, 8, 0])  # ids, not digits, are hashed


def test_completions_end_at_the_eos_token():
    datasets = pytest.importorskip("datasets")
    from selfplay.train.reflogps import strip_after_eos

    ds = datasets.Dataset.from_list([{"chosen_ids": [4, 5, 0, 13], "rejected_ids": [6, 0, 13]},
                                     {"chosen_ids": [4, 5], "rejected_ids": [0, 13, 0]}])
    out = strip_after_eos(ds, 0).to_list()
    assert out == [{"chosen_ids": [4, 5, 0], "rejected_ids": [6, 0]}, {"chosen_ids": [4, 5], "rejected_ids": [0]}]
    assert strip_after_eos(ds, None) is ds


QS = [(2, 3), (4, 5), (10, 7), (6, 6), (8, 1), (3, 9), (7, 2), (5, 5)]


def _engine_pairs(path, shift: float = 0.0, bad_key: int | None = None):
    """Pairs with the reference log-probs an engine would store, from an fp32 forward of the
    embedded model on the ids TRL tokenizes (completion + eos), each shifted by `shift`."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfplay.backends.models import load_tokenizer, resolve_model

    model_path = resolve_model("default")
    tok = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()

    def ids(messages, gen=False):
        out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=gen)
        return out["input_ids"]

    lines = []
    for n, (a, b) in enumerate(QS):
        prompt = [{"role": "user", "content": f"Tom has {a} apples and gets {b} more. How many apples now?"}]
        answer = f"{a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
        sides = {"chosen": [{"role": "assistant", "content": answer}],
                 "rejected": [{"role": "assistant", "content": f"He has {a} - {b}, so \\boxed{{{a + b + 2}}}."}]}
        md = {"problem_id": f"add-{a}-{b}", "model": model_path}
        p_ids = ids(prompt, gen=True)
        for side, msg in sides.items():
            full = ids(prompt + msg)
            comp = full[len(p_ids):]
            comp = comp[:comp.index(tok.eos_token_id) + 1]  # the engine stops at eos
            x = torch.tensor([p_ids + comp])
            with torch.no_grad():
                logp = model(x).logits[0, :-1].float().log_softmax(-1)
            lp = float(logp[len(p_ids) - 1:].gather(-1, x[0, len(p_ids):, None]).sum())
            key = token_key(p_ids + comp) if n != bad_key or side == "chosen" else token_key(p_ids + comp[1:])
            md.update({f"{side}_ref_logprob": lp + shift, f"{side}_ref_key": key})
        lines.append(orjson.dumps({"prompt": prompt, **sides, "metadata": md}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.model
def test_training_with_the_engines_reference_matches_the_reference_forward(tmp_path):
    """fp32, 4 steps of 4 pairs: the run on engine values (exact here) has TRL's reference-forward
    run's curves within 2e-3; values off by 5 nats fail the check and every pair takes the
    forward; a pair whose ids differ from the engine's takes the forward alone."""
    from selfplay.config import TrainSection
    from selfplay.train.dpo import train_dpo

    cfg = TrainSection(epochs=2, batch_size=2, grad_accum=2, max_length=256, precision="fp32", learning_rate=5e-5)

    def run(name, pairs, engine_ref=True):
        return train_dpo([pairs], "default", tmp_path / name / "model", replace(cfg, engine_ref=engine_ref), threads=1)

    exact = _engine_pairs(tmp_path / "exact.jsonl")
    trl = run("trl", exact, engine_ref=False)
    engine = run("engine", exact)
    assert (trl["ref_logps"]["engine"], trl["ref_logps"]["forward"]) == (0, 16)
    assert engine["ref_logps"]["engine"] == 16 and engine["ref_logps"]["engine_agreed"]
    assert engine["ref_logps"]["checked"] == 8 and engine["ref_logps"]["check_worst_nats"] < 1e-3
    for key in ("loss", "rewards/margins", "logps/chosen", "logps/rejected"):
        a = [h[key] for h in trl["history"]]
        b = [h[key] for h in engine["history"]]
        tol = 2e-3 * max(1.0, max(abs(x) for x in a))
        assert all(math.isclose(x, y, abs_tol=tol) for x, y in zip(a, b)), (key, a, b)
    # accuracy counts margins > 0: at step 1 (policy = reference) the margins are 0 up to rounding,
    # and the packed row's rounding is not the engine's forward's, so only decided steps compare
    decided = [(h["rewards/accuracies"], g["rewards/accuracies"]) for h, g in zip(trl["history"], engine["history"])
               if min(abs(h["rewards/margins"]), abs(g["rewards/margins"])) > 1e-3]
    assert len(decided) >= len(trl["history"]) - 1 and all(x == y for x, y in decided), decided

    off = run("off", _engine_pairs(tmp_path / "off.jsonl", shift=5.0))
    assert not off["ref_logps"]["engine_agreed"] and off["ref_logps"]["engine"] == 0
    assert off["ref_logps"]["check_worst_nats"] > 4.9
    assert [h["loss"] for h in off["history"]] == pytest.approx([h["loss"] for h in trl["history"]], abs=2e-3)

    one = run("one", _engine_pairs(tmp_path / "one.jsonl", bad_key=3))
    assert one["ref_logps"]["engine"] == 14 and one["ref_logps"]["forward"] == 2  # the pair's 2 slots (2 epochs)
