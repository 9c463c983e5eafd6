"""The terminal round summary, and the sentences it shares with report.md: how a round's training
set was made up (accumulation under the collapse guard) and % correct per mode."""
from __future__ import annotations

from typing import Any

from selfplay.core import fmt
from selfplay.core.metrics import gain_points, greedy_gain


def training_set_text(k: int, tr: dict[str, Any]) -> str:
    """How round K's training set came about: "trained 186 = this round 96 + earlier 90", with the
    pairs the trainer dropped (too long, identical, duplicate) when there were any. The counts
    per round come from the collapse guard's mix (train_stats.json "mix".per_round)."""
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


def format_summary(s: dict[str, Any], start_eval: dict[str, Any] | None = None) -> str:
    """One round's results for the terminal, formatted as report.md formats them: percentages
    with their 95% intervals, 3 significant digits, counts by name."""
    posed = s.get("posed") or {}
    lines = [f"== round {s['round']} summary ==",
             f"problems: {s['problems']} ({fmt.counts(s.get('by_origin'))})"]
    if posed.get("attempted"):
        lines[-1] += (f"; posed: kept {posed.get('kept', 0)} of {posed['attempted']} attempted"
                      + (f" (rejected: {fmt.counts(posed.get('rejected'))})" if posed.get("rejected") else ""))
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
    lines += [f"pairs: {s['pairs']} from {s['problems_with_pairs']} problems"
              + (f" ({fmt.counts(s.get('pairs_by_origin'))})" if s.get("pairs_by_origin") else ""),
              f"verdict reasons: {fmt.counts(s.get('verdict_reasons'))}"]
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
                         f"{fmt.num(tr.get('rewards/accuracies'))}, mean {fmt.num(tr.get('rewards/accuracies_mean'))}")
    ev = s.get("eval")
    if ev:
        start = (start_eval or {}).get("sets") or {}
        for name, r in ev.get("sets", {}).items():
            line = f"held-out {name}: pass@1 {fmt.pct(r.get('pass@1'), r.get('pass@1_ci'))}"
            if r.get("k"):
                line += f", maj@{r['k']} {fmt.pct(r.get('maj@k'), r.get('maj@k_ci'))}"
            if name in start:
                g = greedy_gain(start[name], r)
                if g["n"]:
                    pts, ci = gain_points(g)
                    line += f"; vs start {pts} pts {ci}, McNemar p {fmt.num(g['mcnemar_p'])}"
            lines.append(line)
    return "\n".join(lines)
