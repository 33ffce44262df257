"""Honest comparison statistics: paired differences over seeds, bootstrap intervals, verdicts.

A seed fixes a run's initial labelled set, model initialisation and the shared
full-supervision reference, so a strategy and random run with the same seed form a pair;
the per-seed difference removes most of the seed-to-seed spread. The 95 % interval of the
mean paired difference is a percentile bootstrap over the seeds (resampled with
replacement, ``resamples`` times, seeded), and the verdict is read from the interval, not
from the mean: ``better than random`` when the interval lies above 0, ``worse than random``
below 0, ``not distinguishable`` when it holds 0 (or fewer than 2 pairs exist).
"""
from __future__ import annotations

import numpy as np

BETTER, WORSE, UNCLEAR = "better than random", "worse than random", "not distinguishable"


def bootstrap_ci(values, level: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (n,): (low, high); NaN for n = 0,
    the value itself twice for n = 1."""
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return float("nan"), float("nan")
    if a.size == 1:
        return float(a[0]), float(a[0])
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def verdict(ci_low: float, ci_high: float, pairs: int, against: str = "random") -> str:
    """The verdict of a paired interval (see the module docstring); ``against`` names the
    baseline in it (``rayal compare``: random)."""
    if pairs < 2 or not np.isfinite(ci_low):
        return UNCLEAR
    if ci_low > 0:
        return f"better than {against}"
    if ci_high < 0:
        return f"worse than {against}"
    return UNCLEAR


def paired(own: dict, base: dict) -> tuple[list[int], list[float]]:
    """Seeds both ``{seed: value}`` maps hold (non-None), and own - base on each, seed order."""
    seeds = sorted(k for k in set(own) & set(base) if own[k] is not None and base[k] is not None)
    return seeds, [own[k] - base[k] for k in seeds]


def strategy_verdict(own: dict, base: dict, seed: int = 0, against: str = "random") -> dict:
    """``{seed: AuALC}`` of a strategy and of its baseline (``against``, random in ``rayal
    compare``) -> the ``verdicts.json`` entry:
    ``paired_aualc_mean, ci_low, ci_high, seeds_above, seeds, verdict``."""
    seeds, diffs = paired(own, base)
    low, high = bootstrap_ci(diffs, seed=seed)
    return {"paired_aualc_mean": float(np.mean(diffs)) if diffs else None,
            "ci_low": low if diffs else None, "ci_high": high if diffs else None,
            "seeds_above": int(sum(d > 0 for d in diffs)), "seeds": len(seeds),
            "verdict": verdict(low, high, len(diffs), against)}


def budget_interval(values, seed: int = 0) -> dict:
    """Labelled fraction needed to reach a share of the reference, over the seeds that reached
    it: ``{"mean", "ci_low", "ci_high", "reached"}`` (None where no seed reached it)."""
    a = [v for v in values if v is not None]
    low, high = bootstrap_ci(a, seed=seed)
    return {"mean": float(np.mean(a)) if a else None, "ci_low": low if a else None,
            "ci_high": high if a else None, "reached": len(a)}
