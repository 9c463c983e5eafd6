"""The one small protocol every generation backend implements.

prompts (chat message lists) + sampling params + per-sample seeds -> k completions per prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()  # end at the first of these; it is cut from the returned text
    with_logprobs: bool = False


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" (eos or stop string) | "length"
    n_tokens: int
    seed: int
    logprob_mean: float | None = None
    # The sampling model's own log-probability of this completion (raw logits: no temperature or
    # top-p), the end-of-sequence token included, and a digest of prompt + completion token ids
    # (core.provenance.token_key): DPO's reference log-prob without a reference forward when the
    # reference is the sampling model and training tokenizes the same ids. None unless the
    # completion ended on the end-of-sequence token and the backend computes them (vllm).
    ref_logprob: float | None = None
    ref_key: str | None = None


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first stop string: the stop string is not part of the answer (vLLM's
    include_stop_str_in_output=False gives the same text; hf and scripted backends call this)."""
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return text[:cut] if cut >= 0 else text


def chat_token_ids(tokenizer: Any, messages: Messages) -> list[int]:
    """A chat prompt's token ids. A list that ends with an assistant message is a prefill: the
    model continues that message (the completion excludes it), e.g. "Problem:" so a small poser
    starts in the asked format."""
    prefill = bool(messages) and messages[-1].get("role") == "assistant"
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=not prefill,
                                        continue_final_message=prefill, tokenize=True)
    if hasattr(out, "keys"):  # transformers 5 returns a BatchEncoding; 4.x a list
        out = out["input_ids"]
    return [int(t) for t in out]


class Backend(Protocol):
    name: str
    model: str  # model id or directory the backend serves

    def generate(self, prompts: Sequence[Messages], params: SamplingParams,
                 seeds: Sequence[Sequence[int]]) -> list[list[Completion]]:
        """Return len(prompts) lists, each with params.n completions.

        seeds[i][j] seeds sample j of prompt i; temperature 0 means greedy (seeds ignored).
        """
        ...

    def close(self) -> None: ...
