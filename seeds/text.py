"""The one question normaliser: pose dedup, the dedup filter, diversity metrics, held-out
contamination checks and `selfplay eval --exclude` all compare questions through it, so "the same
question" means one thing everywhere.

Two questions normalise equal when they differ only in case, spacing, line breaks, Unicode form
(NFKC), thousands separators ("1,000" = "1000") or prose punctuation (. , ; : ! ? quotes $ and the
like). Arithmetic operators are tokens, not punctuation: "What is 7 - 4?" and "What is 7 + 4?" are
different problems with different answers, and a normaliser that erased the operator made pose
dedup drop new problems and `eval --exclude` remove held-out problems that were never seen.
"""
from __future__ import annotations

import re
import unicodedata

from selfplay_verifiers.normalize import strip_thousands

# Typographic variants of one operator map to one token, so "7 × 4" equals "7 * 4".
_SAME_OP = str.maketrans({"×": "*", "·": "*", "∗": "*", "÷": "/", "∕": "/", "−": "-", "–": "-"})
# A run of two or more operator characters ("--" as a dash, "**bold**" markdown, "==" rules) is
# prose punctuation; a lone one is an operator. A hyphen between two letters joins a compound
# word ("two-step") and is punctuation too.
_RUNS = re.compile(r"([-+*/=^<>%])\1+|(?<=[^\W\d_])-(?=[^\W\d_])")
# Tokens: runs of letters/digits (a "." between digits stays: 3.5), or one operator or bracket.
_TOKEN = re.compile(r"(?:[^\W_]|(?<=\d)\.(?=\d))+|[-+*/=^<>%()]")

OPERATORS = frozenset("+-*/=^<>%()")


def normalize_question(text: str) -> str:
    """Lowercase NFKC tokens joined by one space; operators and brackets kept as tokens.

    >>> normalize_question("  What IS 7-4?\\n")
    'what is 7 - 4'
    >>> normalize_question("What is 7 + 4?") == normalize_question("what is 7 - 4")
    False
    >>> normalize_question("Tom's 1,000 well-known apples cost $3.50!")
    'tom s 1000 well known apples cost 3.50'
    """
    t = unicodedata.normalize("NFKC", text).lower().translate(_SAME_OP)
    t = _RUNS.sub(" ", strip_thousands(t))
    return " ".join(_TOKEN.findall(t))


_WORDS = re.compile(r"[A-Za-z]{2,}")


def is_word_problem(question: str) -> bool:
    """A word problem tells a story around its numbers; bare arithmetic ("What is 3 + 4?",
    "Compute 12 minus 5.") has a handful of words at most.

    >>> is_word_problem("Compute 12 minus 5.")
    False
    >>> is_word_problem("Li has 5 pencils and gets 2 more. How many pencils does Li have now?")
    True
    """
    return len(_WORDS.findall(question)) >= 8
