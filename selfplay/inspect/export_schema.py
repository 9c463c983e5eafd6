"""What `selfplay export` writes: the columns of its dataset (name -> datasets type, meaning; the
card's field table is made from them), its file formats, and the embedded model's hub id."""
from __future__ import annotations

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the embedded model's origin (its Q4_1 GGUF)
FORMATS = ("parquet", "jsonl")
COLUMNS = {  # name -> (datasets type, meaning) ; the card's field table is made from this
    "pair_id": ("string", "content hash of prompt + chosen + rejected (stable across exports)"),
    "prompt": ("messages", "the solve prompt, TRL conversational format ([{role, content}])"),
    "chosen": ("messages", "a reasoning path the verifier labelled correct"),
    "rejected": ("messages", "a reasoning path the verifier labelled incorrect"),
    "round": ("int32", "self-play round that made the pair"),
    "problem_id": ("string", ("problem id qualified by its round (`r0/train-sub-L1-000001`): a round's ids may "
                              "name another question in another round, so one id is one question only with its round")),
    "origin": ("string", "procedural, file, hf or posed"),
    "source": ("string", ("generator, file name, dataset hub id (`local:NAME` for a local copy), or the "
                          "posing model named like `model`")),
    "level": ("int32", "difficulty level of procedural problems"),
    "question": ("string", "the problem text"),
    "gold": ("string", "gold answer"),
    "gold_source": ("string", "trusted (seed or posing program) or majority (vote of the sampled paths)"),
    "agreement": ("float64", "share of the majority answer when gold_source is majority"),
    "mode": ("string", "cot (chain of thought) or pot (program of thought)"),
    "program": ("string", "posed problems: the Python program whose output is the gold answer"),
    "chosen_extracted": ("string", "final answer extracted from chosen"),
    "rejected_extracted": ("string", "final answer extracted from rejected"),
    "pass_rate": ("float64", "share of the problem's labelled paths verified correct"),
    "chosen_tokens": ("int32", "tokens in chosen"),
    "rejected_tokens": ("int32", "tokens in rejected"),
    "chosen_logprob": ("float64", "mean token log-probability of chosen under the sampling model"),
    "rejected_logprob": ("float64", "mean token log-probability of rejected under the sampling model"),
    "crosscheck": ("string", "math-verify's class when the run cross-checked labels (verify.crosscheck)"),
    "granularity": ("string", ("path (whole reasoning paths) or step (pair.step_pairs: a shared prefix, then one "
                               "step each)")),
    "first_error": ("string", "rejected (cot): its first false arithmetic statement, found by the step checker"),
    "model": ("string", ("sampling model: hub id, path relative to the run directory (`round_K/model`), or "
                         "`local:NAME` for a directory outside the run")),
    "model_fingerprint": ("string", "content hash of the sampling model's files (none for a hub id)"),
    "sampling_temperature": ("float64", "sampling temperature"),
    "sampling_top_p": ("float64", "nucleus top-p"),
    "sampling_max_new_tokens": ("int32", "token budget per path"),
    "sampling_n": ("int32", "paths sampled per problem"),
}
