"""Names and kinds of the evaluation sets, shared by the loop (which writes them into eval.json)
and everything that reads them (summary, status, report, dataset card).

A set is *in-distribution* when its problems come from the generators/templates the run trains
on (its own split, so no problem id is shared, but the same forms), and *out-of-distribution*
when no training problem is drawn from its generators, templates or source. Only the second kind
shows whether a gain transfers; the report shows both side by side and names which is which.
"""
from __future__ import annotations

from typing import Any, Mapping

IN_DISTRIBUTION = "in-distribution"
OUT_OF_DISTRIBUTION = "out-of-distribution"
KINDS = (IN_DISTRIBUTION, OUT_OF_DISTRIBUTION)
SHORT = {IN_DISTRIBUTION: "ID", OUT_OF_DISTRIBUTION: "OOD"}

HELDOUT_PROCEDURAL = "heldout_procedural"  # the training generators, their held-out split
OOD_ARITH = "ood_arith"  # bare arithmetic in phrasings no training generator uses
OOD_WORD = "ood_word"  # one- and two-step word problems in templates no training generator uses
SVAMP = "svamp"  # SVAMP test (MIT), a public word-problem set shipped in selfplay_seeds/data
OOD_SETS = (OOD_ARITH, OOD_WORD, SVAMP)  # eval.ood

DESCRIPTIONS = {
    HELDOUT_PROCEDURAL: "the training generators and levels, held-out split (same forms as training)",
    OOD_ARITH: "bare arithmetic in phrasings no training generator uses",
    OOD_WORD: "one- and two-step word problems in templates no training generator uses",
    SVAMP: "SVAMP test (public word problems, MIT), never a training seed",
}


def set_kind(name: str, record: Mapping[str, Any] | None = None) -> str:
    """The kind of eval set `name`: the `kind` its eval.json record carries when present (runs
    made since kinds were recorded), else by name: the held-out procedural split is
    in-distribution, every other set (built-in out-of-distribution sets, eval.files) is not."""
    if record is not None and record.get("kind") in KINDS:
        return str(record["kind"])
    return IN_DISTRIBUTION if name == HELDOUT_PROCEDURAL else OUT_OF_DISTRIBUTION


def describe(name: str, record: Mapping[str, Any] | None = None) -> str:
    """One line on what set `name` is (its record's `description` first)."""
    if record is not None and record.get("description"):
        return str(record["description"])
    return DESCRIPTIONS.get(name, "problems from an eval file (eval.files)")
