"""The Verdict record: what every verifier returns (never raises)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CORRECT = "correct"
INCORRECT = "incorrect"
UNKNOWN = "unknown"
LABELS = (CORRECT, INCORRECT, UNKNOWN)


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check.

    label: "correct" | "incorrect" | "unknown" (unknown is never turned into a pair).
    reason: short machine-readable cause: ok, wrong, no_answer, parse_error, timeout,
        too_large, error, crashed, memory, output_limit, nondeterministic, ...
    extracted: the answer string pulled out of the prediction (None when none was found).
    seconds: wall time the check took.
    """

    label: str
    reason: str
    extracted: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"Verdict.label must be one of {LABELS}, got {self.label!r}")

    @property
    def is_correct(self) -> bool:
        return self.label == CORRECT

    @property
    def is_incorrect(self) -> bool:
        return self.label == INCORRECT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        return cls(label=d["label"], reason=d["reason"], extracted=d.get("extracted"),
                   seconds=float(d.get("seconds", 0.0)))
