"""Evaluation metrics: pass@k, maj@k, greedy pass@1, with 95% confidence intervals. Pure (numpy).

- pass@k: the unbiased estimator of Chen et al. 2021 (Codex paper) from n samples with c correct:
  1 - C(n-c, k) / C(n, k), computed as a product to stay exact for large n.
- maj@k: majority vote over the extracted answers of the first k samples, compared by
  `selfplay_verifiers.answer_key` (the one key of every vote: the pair stage's pseudo-labels and answer
  diversity use it too). Samples without an extracted answer do not vote. Ties are broken by the
  answer that appeared first (lowest sample index), so the result is deterministic. The vote is
  correct when any sample in the winning group was verified correct (they share one answer, so one
  verifier "correct" vouches for the group; unknown/timeouts elsewhere in the group don't veto it).
- Intervals: Wilson score interval for proportions (greedy pass@1, maj@k); a seeded percentile
  bootstrap over problems for means of per-problem estimates (pass@k, sampled pass@1).
- "unknown" verdicts count as not correct (conservative) and are reported separately.
- pass rate of a problem's paths (`pass_rate`, `pass_rates`): correct / (correct + incorrect);
  unknown verdicts are not verdicts and stay out of the denominator. None when none is labelled.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from selfplay.core.records import Rollout
from selfplay_verifiers import answer_key

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021)."""
    if not (0 <= c <= n) or n < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and n >= 1, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i) == 1 - C(n-c, k)/C(n, k), without huge binomials
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {successes}/{n}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # the interval always holds p: at 0 of n (or n of n) the bound is exactly p, where the
    # formula leaves a rounding error of 1e-17 that put p outside its own interval
    return (0.0 if successes == 0 else max(0.0, center - half), 1.0 if successes == n else min(1.0, center + half))


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Seeded percentile bootstrap interval for the mean of `values` (resampling items)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // x.size)  # bound memory: chunk x n indices at a time
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        means[start:start + m] = x[rng.integers(0, x.size, size=(m, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (float(lo), float(hi))


LABELLED = ("correct", "incorrect")  # the verdicts; "unknown" (and no label yet) is none


def pass_counts(labels: Iterable[str | None]) -> tuple[int, int]:
    """(correct, labelled) over verdict labels; labelled = correct + incorrect."""
    correct = labelled = 0
    for label in labels:
        if label in LABELLED:
            labelled += 1
            correct += label == "correct"
    return correct, labelled


def pass_rate(labels: Iterable[str | None]) -> float | None:
    """correct / (correct + incorrect) of one problem's paths; None when none is labelled."""
    correct, labelled = pass_counts(labels)
    return correct / labelled if labelled else None


def pass_rates(rollouts: Iterable[Rollout]) -> dict[str, float | None]:
    """problem id -> pass_rate of its rollouts (None: none labelled), in first-seen order."""
    labels: dict[str, list[str | None]] = defaultdict(list)
    for r in rollouts:
        labels[r.problem_id].append(r.label)
    return {pid: pass_rate(ls) for pid, ls in labels.items()}


def majority_vote(answers: Sequence[str | None], labels: Sequence[str | None],
                  k: int | None = None) -> dict[str, Any]:
    """maj@k over the first k samples: {"answer", "votes", "correct"} (see module docstring)."""
    k = len(answers) if k is None else k
    if len(labels) != len(answers):
        raise ValueError(f"answers and labels differ in length: {len(answers)} vs {len(labels)}")
    groups: dict[str, list[int]] = {}
    for i in range(min(k, len(answers))):
        key = answer_key(answers[i])
        if key is not None:
            groups.setdefault(key, []).append(i)
    if not groups:
        return {"answer": None, "votes": 0, "correct": False}
    # most votes first; on a tie the answer whose first vote came earliest wins
    best = min(groups, key=lambda a: (-len(groups[a]), groups[a][0]))
    correct = any(labels[i] == "correct" for i in groups[best])
    return {"answer": best, "votes": len(groups[best]), "correct": correct}


def maj_at_k(answers: Sequence[str | None], labels: Sequence[str | None], k: int | None = None) -> bool:
    return bool(majority_vote(answers, labels, k)["correct"])


def _curve_ks(k: int) -> list[int]:
    ks = [1]
    while ks[-1] * 2 <= k:
        ks.append(ks[-1] * 2)
    if ks[-1] != k:
        ks.append(k)
    return ks


def summarize(per_problem_results: Iterable[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Aggregate per-problem records into the metrics of one eval set.

    Each record: {"greedy": {"label", ...} | None, "samples": [{"label", "extracted"}, ...]}
    (as written by `selfplay.evaluate.driver`). Returns n, pass@1 (greedy) with its Wilson CI, and when
    samples exist: k, maj@k (Wilson CI), pass@k and sampled pass@1 (bootstrap CIs), a pass@j curve
    for j = 1, 2, 4, ..., k, and unknown counts.
    """
    records = list(per_problem_results)
    out: dict[str, Any] = {"n": len(records)}
    greedy = [r["greedy"]["label"] for r in records if r.get("greedy")]
    if greedy:
        wins = sum(lab == "correct" for lab in greedy)
        out.update({"pass@1": wins / len(greedy), "pass@1_ci": list(wilson_interval(wins, len(greedy))),
                    "greedy_correct": wins, "greedy_unknown": sum(lab == "unknown" for lab in greedy)})
    else:
        out.update({"pass@1": None, "pass@1_ci": None})
    samples = [r.get("samples") or [] for r in records]
    if records and all(samples):
        k = min(len(s) for s in samples)
        labels = [[x.get("label") for x in s] for s in samples]
        ns = [len(s) for s in labels]
        cs = [sum(lab == "correct" for lab in s) for s in labels]
        majs = [maj_at_k([x.get("extracted") for x in s], [x.get("label") for x in s], k) for s in samples]
        pk = [pass_at_k(n, c, k) for n, c in zip(ns, cs)]
        p1 = [c / n for n, c in zip(ns, cs)]
        out.update({
            "k": k,
            "maj@k": sum(majs) / len(majs), "maj@k_ci": list(wilson_interval(sum(majs), len(majs))),
            "pass@k": float(np.mean(pk)), "pass@k_ci": list(bootstrap_ci(pk, seed=seed)),
            "pass@1_sampled": float(np.mean(p1)), "pass@1_sampled_ci": list(bootstrap_ci(p1, seed=seed)),
            "pass@k_curve": {str(j): float(np.mean([pass_at_k(n, c, j) for n, c in zip(ns, cs)]))
                             for j in _curve_ks(k)},
            "samples_total": sum(ns),
            "samples_unknown": sum(lab == "unknown" for s in labels for lab in s),
        })
    else:
        out.update({"k": 0, "maj@k": None, "maj@k_ci": None, "pass@k": None, "pass@k_ci": None})
    return out


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: b problems right only before,
    c right only after. Under "no change" each discordant problem flips either way with p = 1/2."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_exact_p needs b, c >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2.0 ** n
    return float(min(1.0, 2.0 * tail))


def paired_gain(before: Mapping[str, bool], after: Mapping[str, bool], seed: int = 0,
                n_boot: int = 2000) -> dict[str, Any]:
    """Accuracy change on the same problems (problem id -> correct), paired.

    Two models graded on one held-out set are not independent samples: the per-problem difference
    (after - before, in {-1, 0, 1}) has a much narrower interval than two separate Wilson
    intervals suggest. Returns n (shared ids), gain (after - before accuracy), gain_ci (percentile
    bootstrap over problems), gained / lost (discordant counts) and mcnemar_p (exact, two-sided).
    Problems present in only one mapping are ignored; n = 0 gives gain None."""
    ids = sorted(set(before) & set(after))
    if not ids:
        return {"n": 0, "gain": None, "gain_ci": None, "gained": 0, "lost": 0, "mcnemar_p": None}
    diff = [int(bool(after[i])) - int(bool(before[i])) for i in ids]
    gained, lost = diff.count(1), diff.count(-1)
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
    return {"n": len(ids), "gain": sum(diff) / len(ids), "gain_ci": [lo, hi], "gained": gained, "lost": lost,
            "mcnemar_p": mcnemar_exact_p(lost, gained)}


def t_quantile(q: float, df: int) -> float:
    """The q quantile (0.5 < q < 1) of Student's t with df degrees of freedom: the density
    integrated by Simpson's rule on [0, x] and inverted by bisection (numpy has no t; scipy is no
    dependency). Within 1e-4 of the tables for df >= 1 and q <= 0.995."""
    if not 0.5 < q < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < q < 1 and df >= 1, got q={q}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:  # P(T <= x) for x >= 0
        grid = np.linspace(0.0, x, 4001)
        dens = np.exp(log_c - (df + 1) / 2 * np.log1p(grid * grid / df))
        h = x / 4000
        return 0.5 + float(h / 3 * (dens[0] + dens[-1] + 4 * dens[1:-1:2].sum() + 2 * dens[2:-1:2].sum()))

    lo, hi = 0.0, 1.0
    while cdf(hi) < q:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
    return (lo + hi) / 2


def across_seeds(gains: Sequence[float]) -> dict[str, Any]:
    """One gain per seed (each paired on that seed's problems), as independent replicates: a run's
    trajectory (what it posed, sampled and trained on) varies from seed to seed, and a paired
    bootstrap over problems sees none of that spread. Returns n, mean, ci (t interval, 95%; None
    for one seed), signflip_p (exact two-sided: every sign pattern of the gains equally likely
    under no effect; None for one seed) and the counts of seeds below and above zero."""
    x = np.asarray(list(gains), dtype=float)
    if x.size == 0:
        raise ValueError("across_seeds needs at least one gain")
    out: dict[str, Any] = {"n": int(x.size), "mean": float(x.mean()), "ci": None, "signflip_p": None,
                           "below": int((x < 0).sum()), "above": int((x > 0).sum())}
    if x.size >= 2:
        half = t_quantile(0.975, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
        out["ci"] = [out["mean"] - half, out["mean"] + half]
        if x.size > 20:
            raise ValueError(f"across_seeds: {x.size} seeds; the exact sign-flip test enumerates 2^n (n <= 20)")
        signs = 1 - 2 * ((np.arange(2 ** x.size)[:, None] >> np.arange(x.size)) & 1)
        means = np.abs(signs @ x) / x.size
        out["signflip_p"] = float((means >= abs(out["mean"]) - 1e-12).mean())
    return out


def greedy_correct_by_id(eval_set: Mapping[str, Any]) -> dict[str, bool]:
    """problem id -> greedy answer verified correct, from one set of an eval.json."""
    return {str(p["id"]): (p.get("greedy") or {}).get("label") == "correct"
            for p in eval_set.get("problems") or [] if "id" in p}


def greedy_gain(before_set: Mapping[str, Any], after_set: Mapping[str, Any]) -> dict[str, Any]:
    """paired_gain of greedy correctness between two eval.json sets, plus each side's accuracy on
    the shared problems (before, after; None when none are shared)."""
    b, a = greedy_correct_by_id(before_set), greedy_correct_by_id(after_set)
    g = paired_gain(b, a)
    ids = set(b) & set(a)
    g["before"] = sum(b[i] for i in ids) / len(ids) if ids else None
    g["after"] = sum(a[i] for i in ids) / len(ids) if ids else None
    return g


def gain_points(g: Mapping[str, Any]) -> tuple[str, str]:
    """("+11.0", "[-1.0, +22.0]"): a paired gain and its interval in points."""
    lo, hi = g["gain_ci"]
    return f"{100 * g['gain']:+.1f}", f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"


def pooled_greedy_gain(pairs: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
                       seed: int = 0) -> dict[str, Any]:
    """paired_gain of greedy correctness over several eval sets taken together, from (set name,
    before set, after set) triples of eval.json sets (problem ids are told apart by set name):
    e.g. every out-of-distribution set of a round against the start model. Plus each side's
    accuracy on the shared problems (before, after; None when none are shared) and `sets`, the
    names that shared any problem."""
    before: dict[str, bool] = {}
    after: dict[str, bool] = {}
    sets = []
    for name, b_set, a_set in pairs:
        b, a = greedy_correct_by_id(b_set), greedy_correct_by_id(a_set)
        if set(b) & set(a):
            sets.append(name)
        before.update({f"{name}/{i}": v for i, v in b.items()})
        after.update({f"{name}/{i}": v for i, v in a.items()})
    g = paired_gain(before, after, seed=seed)
    ids = set(before) & set(after)
    g["before"] = sum(before[i] for i in ids) / len(ids) if ids else None
    g["after"] = sum(after[i] for i in ids) / len(ids) if ids else None
    g["sets"] = sets
    return g
