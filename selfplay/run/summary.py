"""The terminal round summary, and the sentences it shares with report.md: how a round's training
set was made up (accumulation under the collapse guard) and % correct per mode.

Long lists (posing rejections, verdict reasons) are compact tables, largest first; the held-out
results show the in-distribution (ID) and out-of-distribution (OOD) sets side by side, each set
labelled with its kind, under a headline with each kind's paired gain against the start model
(its sets pooled, with a 95% interval). No line is longer than log.MAX_LINE characters."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from selfplay.core import fmt
from selfplay.core.evalsets import KINDS, SHORT, set_kind
from selfplay.core.log import clip
from selfplay.core.metrics import gain_points, pooled_greedy_gain

INLINE_ITEMS = 6  # a list of at most this many kinds stays on its line
INLINE_WIDTH = 120  # ... when the line stays this short
TABLE_COLUMNS = 3


def pairs_seen(tr: dict[str, Any]) -> tuple[int, int] | None:
    """(distinct pairs training saw, pair slots it trained: pairs x epochs) of a round's
    train_stats.json; runs made before `pairs_seen` was recorded: steps x pairs per step (their
    order was one shuffle per epoch, so the first slots are distinct pairs). None if unknown."""
    if isinstance(tr.get("pairs_seen"), int) and isinstance(tr.get("pair_slots"), int):
        return tr["pairs_seen"], tr["pair_slots"]
    conf, steps, n_train = tr.get("config") or {}, tr.get("steps"), tr.get("n_train")
    per_step = (conf.get("batch_size") or 0) * (conf.get("grad_accum") or 0)
    if not (isinstance(steps, int) and isinstance(n_train, int) and per_step):
        return None
    slots = steps * per_step
    return min(slots, n_train), slots


def seen_text(tr: dict[str, Any]) -> str:
    """"; every pair seen (1 epoch)" or "; training saw 96 of 150 pairs (12 steps x 8)"."""
    seen, n_train = pairs_seen(tr), tr.get("n_train")
    if seen is None or not isinstance(n_train, int) or not n_train:
        return ""
    if seen[0] >= n_train:
        epochs = seen[1] / n_train
        return f"; every pair seen ({epochs:.3g} epoch{'' if epochs == 1 else 's'})"
    return f"; training saw {seen[0]} of {n_train} pairs ({seen[1]} pair slots, train.max_steps)"


def reference_text(tr: dict[str, Any]) -> str:
    """"; reference log-probs: engine 103, forward 25" (train_stats.json "ref_logps"), with
    "(the engine's failed the check)" when they were checked and refused; "" for older stats."""
    ref = tr.get("ref_logps")
    if not isinstance(ref, dict) or not isinstance(ref.get("engine"), int):
        return ""
    failed = " (the engine's failed the check)" if ref.get("engine_agreed") is False else ""
    return f"; reference log-probs: engine {ref['engine']}, forward {ref.get('forward')}{failed}"


def training_set_text(k: int, tr: dict[str, Any]) -> str:
    """How round K's training set came about and what training saw of it: "trained 186 = this
    round 96 + earlier 90; every pair seen (1 epoch)", with the pairs the trainer dropped (too
    long, identical, duplicate) when there were any. The counts per round come from the collapse
    guard's mix (train_stats.json "mix".per_round)."""
    return _set_text(k, tr) + seen_text(tr)


def _set_text(k: int, tr: dict[str, Any]) -> str:
    per_round = {str(r): n for r, n in ((tr.get("mix") or {}).get("per_round") or {}).items()}
    n_in, n_train = tr.get("n_pairs_in"), tr.get("n_train")
    if not per_round:
        return f"trained {fmt.num(n_train)}"
    this = int(per_round.get(str(k), 0))
    earlier = sum(int(n) for r, n in per_round.items() if r != str(k))
    rounds = sorted(int(r) for r in per_round)
    src = f"this round {this} + earlier {earlier}" if earlier else f"this round {this}"
    if len(rounds) > 1:
        src += f" (rounds {rounds[0]}-{rounds[-1]})"
    dropped = {"too long": tr.get("n_dropped_too_long", 0), "identical": tr.get("n_dropped_identical", 0),
               "duplicate": tr.get("n_dropped_duplicate", 0)}
    if isinstance(n_in, int) and isinstance(n_train, int) and n_train != n_in:
        why = ", ".join(f"{v} {name}" for name, v in dropped.items() if v)
        return f"trained {n_train} of {n_in} = {src}; dropped {n_in - n_train}" + (f" ({why})" if why else "")
    return f"trained {fmt.num(n_train)} = {src}"


def mode_cells(by_mode: Any) -> list[tuple[str, str]]:
    """stats.json "by_mode" ({"cot": {"samples", "correct", "pct_correct"}, "pot": ...}) as
    (mode, "41.2% correct of labelled (50 correct, 120 samples)") rows; [] when the round has none."""
    if not isinstance(by_mode, dict):
        return []
    rows = []
    for mode, d in by_mode.items():
        if not isinstance(d, dict):
            continue
        p = d.get("pct_correct")
        cell = f"{p:.1f}% correct of labelled" if isinstance(p, (int, float)) else "-"
        if isinstance(d.get("correct"), int) and isinstance(d.get("samples"), int):
            cell += f" ({d['correct']} correct, {d['samples']} samples)"
        rows.append((str(mode), cell))
    return rows


def print_summary(s: dict[str, Any], start_eval: dict[str, Any] | None = None) -> None:
    print(format_summary(s, start_eval), flush=True)


def count_table(d: Any, columns: int = TABLE_COLUMNS, indent: str = "  ") -> list[str]:
    """{"duplicate": 26, "no_output": 1, ...} as rows of `columns` aligned "name  count" cells,
    largest count first (zero counts left out)."""
    items = sorted(((str(k), v) for k, v in (d or {}).items() if isinstance(v, (int, float)) and v),
                   key=lambda kv: (-kv[1], kv[0]))
    if not items:
        return []
    rows = [items[i:i + columns] for i in range(0, len(items), columns)]
    name_w = [max(len(r[j][0]) for r in rows if j < len(r)) for j in range(columns)]
    num_w = [max(len(fmt.num(r[j][1])) for r in rows if j < len(r)) for j in range(columns)]
    return [indent + "   ".join(f"{k.ljust(name_w[j])} {fmt.num(v).rjust(num_w[j])}" for j, (k, v) in enumerate(r))
            for r in rows]


def list_lines(head: str, d: Any, label: str) -> list[str]:
    """`head` + "label: 3 a, 2 b" when the list is short, else `head` + "label (N kinds, T in
    all):" over a count_table."""
    counted = {k: v for k, v in (d or {}).items() if isinstance(v, (int, float)) and v}
    inline = f"{head}{label}: {fmt.counts(counted)}"
    if len(counted) <= INLINE_ITEMS and len(inline) <= INLINE_WIDTH:
        return [inline]
    total = sum(counted.values())
    return [f"{head}{label} ({len(counted)} kinds, {fmt.num(total)} in all):", *count_table(counted)]


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _set_row(name: str, r: Mapping[str, Any], start: Mapping[str, Any]) -> list[str]:
    k = r.get("k")
    row = [name, fmt.num(r.get("n")), fmt.pct(r.get("pass@1"), r.get("pass@1_ci")),
           f"{fmt.pct(r.get('maj@k'))} @{k}" if k else "-"]
    g = pooled_greedy_gain([(name, start[name], r)]) if name in start else {"n": 0}
    row.append(" ".join(gain_points(g)) if g["n"] else "-")
    return row


def kind_headline(sets: Mapping[str, Any], start: Mapping[str, Any]) -> str:
    """"ID +22.0 pts [+12.0, +32.0] (heldout_procedural, McNemar p 0.000977) | OOD ..." : each
    kind's paired greedy pass@1 gain against the start model, its sets pooled; without a start
    evaluation, each kind's greedy pass@1 over its problems."""
    parts = []
    for kind in KINDS:
        names = [n for n, r in sets.items() if set_kind(n, r) == kind]
        if not names:
            parts.append(f"{SHORT[kind]} none evaluated")
            continue
        g = pooled_greedy_gain([(n, start[n], sets[n]) for n in names if n in start])
        if g["n"]:
            pts, ci = gain_points(g)
            parts.append(f"{SHORT[kind]} {pts} pts {ci} ({', '.join(g['sets'])}; n {g['n']}, "
                         f"McNemar p {fmt.num(g['mcnemar_p'])})")
        else:
            n = sum(int(sets[x].get("n") or 0) for x in names)
            right = sum(float(sets[x].get("pass@1") or 0) * int(sets[x].get("n") or 0) for x in names)
            parts.append(f"{SHORT[kind]} pass@1 {fmt.pct(right / n if n else None)} ({', '.join(names)}; n {n})")
    return " | ".join(parts)


def eval_lines(ev: Mapping[str, Any], start_eval: Mapping[str, Any] | None) -> list[str]:
    """The held-out results: a headline (kind_headline), then the ID and OOD sets side by side,
    one set per row in each half: n, greedy pass@1 [95% CI], maj@k, and the paired gain against
    the start model in points [95% CI]."""
    sets = ev.get("sets") or {}
    if not sets:
        return []
    start = (start_eval or {}).get("sets") or {}
    vs = "vs start: paired gain in points of greedy pass@1 [95% CI]" if start else "no start evaluation to compare"
    lines = [f"held-out ({vs}): {kind_headline(sets, start)}"]
    head = ["set", "n", "pass@1 [95% CI]", "maj@k", "vs start [95% CI]"]
    halves = []
    for kind in KINDS:
        rows = [_set_row(n, r, start) for n, r in sets.items() if set_kind(n, r) == kind]
        label = f"{SHORT[kind]} ({kind})"
        halves.append([label, *_aligned([head, *rows])] if rows else [label, "  none evaluated"])
    left_w = max(len(x) for x in halves[0])
    for i in range(max(len(h) for h in halves)):
        left = halves[0][i] if i < len(halves[0]) else ""
        right = halves[1][i] if i < len(halves[1]) else ""
        lines.append(f"  {left.ljust(left_w)} | {right}" if right else f"  {left}".rstrip())
    return lines


def format_summary(s: dict[str, Any], start_eval: dict[str, Any] | None = None) -> str:
    """One round's results for the terminal, formatted as report.md formats them: percentages
    with their 95% intervals, 3 significant digits, counts by name; long lists as tables; the
    held-out sets by kind (eval_lines)."""
    posed = s.get("posed") or {}
    head = f"problems: {s['problems']} ({fmt.counts(s.get('by_origin'))})"
    if posed.get("attempted"):
        head += f"; posed: kept {posed.get('kept', 0)} of {posed['attempted']} attempted"
        if posed.get("rejected"):
            rej = list_lines("", posed.get("rejected"), "rejected")
            lines = [f"{head} ({rej[0]})"] if len(rej) == 1 else [f"{head}; {rej[0]}", *rej[1:]]
        else:
            lines = [head]
    else:
        lines = [head]
    lines.insert(0, f"== round {s['round']} summary ==")
    labelled = s.get("correct", 0) + s.get("incorrect", 0)
    lines.append(f"samples: {s['samples']}: {s['correct']} correct, {s['incorrect']} incorrect, {s['unknown']} unknown; "
                 f"{fmt.pct_of(s['correct'], labelled)} correct of labelled")
    modes = mode_cells(s.get("by_mode"))
    if modes:
        lines.append("by mode: " + "; ".join(f"{m} {cell}" for m, cell in modes))
    diff = s.get("posed_difficulty") or {}
    if diff:
        lines.append(f"posed difficulty (level {diff.get('level')}): mean solve rate {fmt.num(diff.get('mean_solve_rate'))}, "
                     f"mean steps {fmt.num(diff.get('mean_steps'))}")
    lines.append(f"pairs: {s['pairs']} from {s['problems_with_pairs']} problems"
                 + (f" ({fmt.counts(s.get('pairs_by_origin'))})" if s.get("pairs_by_origin") else ""))
    lines += list_lines("", s.get("verdict_reasons"), "verdict reasons")
    t = s.get("timing") or {}
    if t.get("solve_seconds"):
        lines.append(f"solve+verify: {fmt.seconds(t['solve_seconds'])}, {fmt.num(t.get('samples_per_s'))} samples/s, "
                     f"{fmt.num(t.get('tokens_per_s'))} tok/s")
    tr = s.get("train")
    if tr:
        if tr.get("trained") is False:
            lines.append(f"train: NOT TRAINED ({tr.get('reason')}); the next round starts from {tr.get('start_model')}")
        else:
            lines.append(f"train: {training_set_text(s['round'], tr)}; {fmt.num(tr.get('steps'))} steps, "
                         f"loss {fmt.num(tr.get('train_loss'))}, reward accuracy last "
                         f"{fmt.num(tr.get('rewards/accuracies'))}, mean {fmt.num(tr.get('rewards/accuracies_mean'))}"
                         f"{reference_text(tr)}")
    if s.get("eval"):
        lines += eval_lines(s["eval"], start_eval)
    return "\n".join(clip(line) for line in lines)
