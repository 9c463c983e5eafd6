"""Records passed between stages. Small frozen dataclasses with exact to_dict/from_dict.

JSONL files of these records are the contract between stages: any stage can be rerun alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ORIGINS = ("procedural", "file", "hf", "posed")


def _req(d: dict[str, Any], key: str, kind: str) -> Any:
    if key not in d:
        raise ValueError(f"{kind}: missing field {key!r}")
    return d[key]


@dataclass(frozen=True)
class Problem:
    """A question with a trusted gold answer.

    id: stable, unique within a run (e.g. "arith-L1-000012", "gsm8k_test-17", "posed-r0-0003").
    origin: procedural | file | hf | posed.
    source: generator name, file name, dataset name, or the posing model.
    answer: gold answer as a string (bare: "72", "\\frac{1}{2}", "(1,2]", "2, 3").
    program: for posed problems, the Python program whose printed output is the answer.
    level: difficulty level for procedural problems (None otherwise).
    """

    id: str
    question: str
    answer: str
    origin: str
    source: str
    level: int | None = None
    program: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"Problem.origin must be one of {ORIGINS}, got {self.origin!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Problem":
        return cls(
            id=str(_req(d, "id", "Problem")),
            question=str(_req(d, "question", "Problem")),
            answer=str(_req(d, "answer", "Problem")),
            origin=str(_req(d, "origin", "Problem")),
            source=str(d.get("source", "")),
            level=d.get("level"),
            program=d.get("program"),
            meta=dict(d.get("meta") or {}),
        )


@dataclass(frozen=True)
class Rollout:
    """One sampled reasoning path for a problem, with its verdict once verified.

    label/reason/extracted are None before verification.
    logprob_mean: mean token log-probability under the sampling model (None if not computed).
    mode: "cot" (reasoning in words, \\boxed answer) or "pot" (a program whose last printed line,
        run in the sandbox, is `extracted`).
    """

    problem_id: str
    sample_index: int
    completion: str
    finish_reason: str  # "stop" | "length"
    n_tokens: int
    seed: int
    label: str | None = None
    reason: str | None = None
    extracted: str | None = None
    verify_seconds: float | None = None
    logprob_mean: float | None = None
    mode: str = "cot"
    # the sampling model's log-prob of the completion and its token digest (backends.base.Completion);
    # absent from the JSON when None
    ref_logprob: float | None = None
    ref_key: str | None = None
    # why this path has no completion: the text of the error its problem raised on a Ray worker
    # (label "unknown", reason "error": never paired); absent from the JSON when None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("error", "ref_logprob", "ref_key"):
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Rollout":
        return cls(
            problem_id=str(_req(d, "problem_id", "Rollout")),
            sample_index=int(_req(d, "sample_index", "Rollout")),
            completion=str(_req(d, "completion", "Rollout")),
            finish_reason=str(d.get("finish_reason", "stop")),
            n_tokens=int(d.get("n_tokens", 0)),
            seed=int(d.get("seed", 0)),
            label=d.get("label"),
            reason=d.get("reason"),
            extracted=d.get("extracted"),
            verify_seconds=d.get("verify_seconds"),
            logprob_mean=d.get("logprob_mean"),
            mode=str(d.get("mode", "cot")),
            ref_logprob=d.get("ref_logprob"),
            ref_key=d.get("ref_key"),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class Pair:
    """A preference pair in TRL's conversational explicit-prompt format.

    prompt: [{"role": "user", "content": ...}] (system message first if one was used)
    chosen / rejected: [{"role": "assistant", "content": ...}]
    metadata: problem id, origin, gold, extracted answers, pass rate, model, sampling, round.
    """

    prompt: list[dict[str, str]]
    chosen: list[dict[str, str]]
    rejected: list[dict[str, str]]
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected,
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Pair":
        return cls(prompt=list(_req(d, "prompt", "Pair")), chosen=list(_req(d, "chosen", "Pair")),
                   rejected=list(_req(d, "rejected", "Pair")), metadata=dict(d.get("metadata") or {}))
