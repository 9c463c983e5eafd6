"""The pairs a DPO step trains on: read, filtered (dropped and counted, never truncated) and put
in training order.

TRL truncates prompt+completion at `max_length` silently, and a pair whose answers are cut off
turns into chosen == rejected (pure noise). So pairs are length-checked here with the same chat
template TRL uses and dropped (and counted).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from selfplay.core.io import iter_jsonl
from selfplay.core.records import Pair

# The prompt's share of max_length when max_prompt_length is not set: the rest (a quarter) is
# room for the answer. 0.75 keeps the old fixed pair 384 / 512 at the default max_length.
PROMPT_SHARE = 0.75


class NoUsablePairs(ValueError):
    """Every pair was filtered out (or there were none): the only training failure a loop may
    carry on from (its round is then marked not trained)."""


def prompt_limit(max_length: int | None, max_prompt_length: int | None = None) -> int | None:
    """The prompt-length cap in force: max_prompt_length, else PROMPT_SHARE x max_length (so
    setting max_length alone is always consistent); max_length None disables both checks."""
    if max_prompt_length is not None:
        return max_prompt_length
    return None if max_length is None else int(max_length * PROMPT_SHARE)


def load_pairs(pair_files: Sequence[Path]) -> list[Pair]:
    """Read pair JSONL files in order; a malformed line raises ValueError naming file:line."""
    pairs: list[Pair] = []
    for path in pair_files:
        for lineno, d in iter_jsonl(path, numbered=True):  # bad JSON: ValueError naming file:line
            try:
                pairs.append(Pair.from_dict(d))
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{path}:{lineno}: bad pair: {e}") from e
    return pairs


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def filter_pairs(pairs: Sequence[Pair], tokenizer, max_length: int | None,
                 max_prompt_length: int | None = None) -> tuple[list[Pair], dict[str, int]]:
    """Drop (and count) identical, duplicate and over-long pairs. Never truncates.

    Pairs whose prompt+chosen or prompt+rejected exceed `max_length` tokens are dropped, and those
    whose prompt alone exceeds prompt_limit(max_length, max_prompt_length) (TRL 1.16 has no such
    field; it is enforced here). Lengths are counted exactly as TRL tokenizes: the chat template
    over prompt + answer.
    """
    counts = {"n_pairs_in": len(pairs), "n_dropped_identical": 0, "n_dropped_duplicate": 0,
              "n_dropped_too_long": 0, "n_dropped_prompt_too_long": 0}
    kept: list[Pair] = []
    seen: set[tuple[str, str, str]] = set()
    limit = prompt_limit(max_length, max_prompt_length)

    def n_tokens(messages: list[dict[str, str]], gen_prompt: bool = False) -> int:
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            add_generation_prompt=gen_prompt)
        return len(out["input_ids"])

    for p in pairs:
        chosen, rejected = _text(p.chosen).strip(), _text(p.rejected).strip()
        if chosen == rejected:
            counts["n_dropped_identical"] += 1
            continue
        key = (_text(p.prompt), chosen, rejected)
        if key in seen:  # the same pair from two accumulated rounds would be counted twice
            counts["n_dropped_duplicate"] += 1
            continue
        seen.add(key)
        if limit is not None and n_tokens(p.prompt, True) > limit:
            counts["n_dropped_prompt_too_long"] += 1
            counts["n_dropped_too_long"] += 1
            continue
        if max_length is not None and (n_tokens(p.prompt + p.chosen) > max_length
                                       or n_tokens(p.prompt + p.rejected) > max_length):
            counts["n_dropped_too_long"] += 1
            continue
        kept.append(p)
    return kept, counts


def pair_tokens(p: Pair, tokenizer) -> tuple[int, int]:
    """(tokens of the longer side, prompt + chosen or prompt + rejected: the width a pair pads its
    two-row micro-batch to; the pair's tokens, prompt + chosen + rejected: the prompt counted
    once, the width of its shared-prompt row), chat template applied as TRL applies it."""
    def n(messages: list[dict[str, str]], gen_prompt: bool = False) -> int:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                 add_generation_prompt=gen_prompt)["input_ids"])

    chosen, rejected = n(p.prompt + p.chosen), n(p.prompt + p.rejected)
    return max(chosen, rejected), chosen + rejected - n(p.prompt, gen_prompt=True)


def pair_order(lengths: Sequence[int], step_pairs: int, n_pairs: int, seed: int, group: bool,
               keys: Sequence[str] | None = None, batch: int | None = None, by_problem: bool = True) -> list[int]:
    """Indices into the pairs, in training order: seeded shuffles (one per epoch) cut to `n_pairs`.

    keys (a prompt per pair, optional) with by_problem: each epoch shuffles the prompts, not the
    pairs, and a prompt's pairs follow one another, so an optimizer step holds a few problems'
    pairs rather than pairs of as many problems, and the pairs of one problem can share one row in
    a micro-batch (selfplay/train/head.py). Without by_problem the epoch shuffles pairs (the
    order is the same as without keys) and keys only lay out each step's micro-batches (below).

    group: within each optimizer step (consecutive `step_pairs`), longest first, so each
    micro-batch pads to a similar length; with `keys`, the step is cut into micro-batches of
    `batch` pairs that keep a prompt's pairs together where they fit (largest prompt groups
    first). The step's set of pairs is the same as without grouping; only the layout of its
    micro-batches changes (and with it the NLL term's weights: TRL takes its token mean per
    micro-batch; the DPO term is a mean over equal micro-batches and does not change).
    """
    rng = random.Random(seed)
    units: list[list[int]] = [[i] for i in range(len(lengths))]
    if keys is not None and by_problem:
        by_key: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            by_key.setdefault(k, []).append(i)
        units = list(by_key.values())
    order: list[int] = []
    while len(order) < n_pairs:
        epoch = list(units)
        rng.shuffle(epoch)
        order += [i for u in epoch for i in u]
    order = order[:n_pairs]
    if not group:
        return order
    steps = [order[k:k + step_pairs] for k in range(0, len(order), step_pairs)]
    if keys is None or not batch:
        return [i for step in steps for i in sorted(step, key=lambda i: -lengths[i])]
    return [i for step in steps for i in _micro_batches(step, keys, lengths, batch)]


def _micro_batches(step: list[int], keys: Sequence[str], lengths: Sequence[int], batch: int) -> list[int]:
    """The step's pairs cut into micro-batches of `batch` pairs: each takes the largest prompt
    group that fits what is left of it, and splits the largest group only when none fits; each
    micro-batch's pairs longest first."""
    groups: dict[str, list[int]] = {}
    for i in step:
        groups.setdefault(keys[i], []).append(i)
    left = sorted(groups.values(), key=lambda g: (-len(g), -max(lengths[i] for i in g)))
    out: list[int] = []
    while left:
        room, micro = batch, []
        while room and left:
            fits = [g for g in left if len(g) <= room]
            g = fits[0] if fits else left[0]
            take, rest = g[:room], g[room:]
            micro += take
            room -= len(take)
            left.remove(g)
            if rest:
                left.insert(0, rest)
        out += sorted(micro, key=lambda i: -lengths[i])
    return out
