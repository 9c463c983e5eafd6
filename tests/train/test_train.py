
import orjson
import pytest

from selfplay.config import TrainSection, load_config
from selfplay.core.records import Pair
from selfplay.prompts import solve_messages
from selfplay.train.data import filter_pairs, load_pairs
from selfplay.train.dpo import train_dpo
from tests.conftest import pair_dict as _pair
from tests.conftest import write_pairs as _write


@pytest.mark.parametrize("field,value", [("beta", 0), ("learning_rate", -1.0), ("epochs", 0),
                                         ("batch_size", 0), ("grad_accum", 1.5), ("max_length", 4),
                                         ("nll_weight", -0.1), ("max_steps", 0), ("precision", "fp16")])
def test_config_validate_names_field(field, value):
    """The [train] section (the trainer's config): a bad value fails at load, naming the field."""
    load_config(None)
    with pytest.raises(ValueError, match=rf"^config: train\.{field}\b"):
        load_config(None, {f"train.{field}": value})


@pytest.mark.parametrize("field,value", [("max_prompt_length", 600), ("lora_r", 0), ("lr_scheduler", "step"),
                                         ("warmup_ratio", 1.0), ("threads", 0)])
def test_train_dpo_options_validate_names_field(tmp_path, field, value):
    """train_dpo's keyword settings (no config field) are checked before anything is loaded."""
    with pytest.raises(ValueError, match=rf"^train_dpo: {field}\b"):
        train_dpo([tmp_path / "missing.jsonl"], "default", tmp_path / "model", TrainSection(), **{field: value})
    with pytest.raises(ValueError, match=r"^config: train\.beta\b"):  # the section is checked there too
        train_dpo([tmp_path / "missing.jsonl"], "default", tmp_path / "model", TrainSection(beta=0))


def test_load_pairs_reports_file_and_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_bytes(orjson.dumps(_pair(1, 2)) + b"\n\n" + b'{"prompt": []}\n')
    with pytest.raises(ValueError, match=r"pairs\.jsonl:3: .*chosen"):
        load_pairs([f])
    assert len(load_pairs([_write(tmp_path / "ok.jsonl", [_pair(1, 2), _pair(3, 4)])])) == 2
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(orjson.dumps(_pair(1, 2)) + b'\n{"prompt": [')
    with pytest.raises(ValueError, match=r"torn\.jsonl:2: invalid JSON"):
        load_pairs([torn])


class WordTokenizer:
    """Tests only: one token per whitespace-separated word of the rendered chat."""

    def apply_chat_template(self, messages, tokenize=True, return_dict=True, add_generation_prompt=False):
        text = " ".join(f"<{m['role']}> {m['content']}" for m in messages) + (" <assistant>" if add_generation_prompt else "")
        return {"input_ids": text.split()}


def test_filter_pairs_drops_and_counts():
    short = Pair.from_dict(_pair(1, 2))
    n_prompt = len(WordTokenizer().apply_chat_template(short.prompt, add_generation_prompt=True)["input_ids"])
    assert n_prompt < 80
    pairs = [short,
             Pair.from_dict(_pair(1, 2)),  # duplicate of the first
             Pair.from_dict(_pair(2, 3, chosen="same answer", rejected=" same answer ")),  # identical
             Pair.from_dict(_pair(3, 4, rejected="word " * (101 - n_prompt))),  # prompt+rejected = 101 > 100
             Pair.from_dict({**_pair(5, 6), "prompt": [{"role": "user", "content": "q " * 90}]}),  # prompt > 80
             Pair.from_dict(_pair(7, 8))]
    kept, counts = filter_pairs(pairs, WordTokenizer(), max_length=100, max_prompt_length=80)
    assert [p.metadata["problem_id"] for p in kept] == ["add-1-2", "add-7-8"]
    assert counts == {"n_pairs_in": 6, "n_dropped_identical": 1, "n_dropped_duplicate": 1,
                      "n_dropped_too_long": 2, "n_dropped_prompt_too_long": 1}
    kept, counts = filter_pairs(pairs, WordTokenizer(), max_length=None, max_prompt_length=None)
    assert len(kept) == 4 and counts["n_dropped_too_long"] == 0


@pytest.mark.model
def test_train_dpo_no_usable_pairs_raises(tmp_path):
    f = _write(tmp_path / "pairs.jsonl", [_pair(1, 2, chosen="x", rejected="x")])
    with pytest.raises(ValueError, match="no usable DPO pairs"):
        train_dpo([f], "default", tmp_path / "model", TrainSection())
    assert not (tmp_path / "model").exists()


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.model
def test_train_dpo_real_model_two_steps(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfplay.backends.models import resolve_model

    good = [_pair(a, b, bare=True) for a, b in [(2, 3), (4, 5), (10, 7), (6, 6), (8, 1)]]
    too_long = _pair(9, 9, chosen="Let me think. " * 120 + "The answer is \\boxed{18}.", bare=True)
    identical = _pair(1, 1, chosen="It is 2.", rejected="It is 2.", bare=True)
    f = _write(tmp_path / "pairs.jsonl", good[:3] + [too_long, identical] + good[3:])
    out = tmp_path / "round_0" / "model"
    cfg = TrainSection(max_length=128, max_steps=2, batch_size=2, grad_accum=1, learning_rate=1e-5)
    stats = train_dpo([f], "default", out, cfg, max_prompt_length=64, warmup_ratio=0.0, lr_scheduler="constant",
                      threads=1)

    assert stats["n_pairs_in"] == 7 and stats["n_dropped_too_long"] == 1 and stats["n_dropped_identical"] == 1
    assert stats["n_train"] == 5 and stats["steps"] == 2
    assert stats["train_loss"] > 0 and stats["rewards/accuracies"] is not None
    assert stats["rewards/margins"] is not None and len(stats["history"]) == 2
    saved = orjson.loads((tmp_path / "round_0" / "train_stats.json").read_bytes())
    assert saved["n_train"] == 5
    assert sorted(p.name for p in out.parent.iterdir()) == ["model", "train_stats.json"]  # no .tmp/.work left

    base = AutoModelForCausalLM.from_pretrained(resolve_model("default"))
    trained = AutoModelForCausalLM.from_pretrained(out)
    bw, tw = _weights(base), _weights(trained)
    assert bw.keys() == tw.keys()
    assert max((bw[k] - tw[k]).abs().max().item() for k in bw) > 0
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert trained.generation_config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    ids = tok.apply_chat_template(solve_messages("What is 2 + 3?"), add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        gen = trained.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]


@pytest.mark.model
def test_train_dpo_lora_is_merged(tmp_path):
    from transformers import AutoModelForCausalLM

    from selfplay.backends.models import resolve_model

    f = _write(tmp_path / "pairs.jsonl", [_pair(2, 3, bare=True)])
    out = tmp_path / "model"
    cfg = TrainSection(use_lora=True, learning_rate=1e-4, max_steps=1, batch_size=1, grad_accum=1, max_length=128)
    stats = train_dpo([f], "default", out, cfg, lora_r=4, max_prompt_length=64, threads=1)
    assert stats["steps"] == 1 and stats["warmup_steps"] == 0  # no step wasted at lr 0
    assert not (out / "adapter_config.json").exists()  # a plain model, not an adapter
    trained = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(resolve_model("default")).state_dict()
    assert trained.keys() == base.keys()
    assert max((trained[k] - base[k]).abs().max().item() for k in base) > 0
