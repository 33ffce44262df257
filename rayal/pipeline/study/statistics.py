"""Honest comparison statistics: paired differences over seeds, bootstrap intervals, verdicts.

A seed fixes a run's initial labelled set, model initialisation and the shared
full-supervision reference, so a strategy and random run with the same seed form a pair;
the per-seed difference removes most of the seed-to-seed spread. The 95 % interval of the
mean paired difference is a percentile bootstrap over the seeds (resampled with
replacement, ``resamples`` times, seeded), and the verdict is read from the interval, not
from the mean: ``better than random`` when the interval lies above 0, ``worse than random``
below 0, ``not distinguishable`` when it holds 0 or fewer than :data:`MIN_PAIRS` pairs exist (a
percentile bootstrap over two seeds is the two values themselves: no interval).
"""
from __future__ import annotations

import numpy as np

BETTER, WORSE, UNCLEAR = "better than random", "worse than random", "not distinguishable"
MIN_PAIRS = 3   # seeds a verdict other than "not distinguishable" needs


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
    if pairs < MIN_PAIRS or not np.isfinite(ci_low):
        return UNCLEAR
    if ci_low > 0:
        return f"better than {against}"
    if ci_high < 0:
        return f"worse than {against}"
    return UNCLEAR


def paired_seeds(own: dict, base: dict) -> list[int]:
    """Seeds both ``{seed: value}`` maps hold with a value (not None), in order."""
    return sorted(k for k in set(own) & set(base) if own[k] is not None and base[k] is not None)


def paired(own: dict, base: dict) -> tuple[list[int], list[float]]:
    """Seeds both ``{seed: value}`` maps hold (non-None), and own - base on each, seed order."""
    seeds = paired_seeds(own, base)
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


def fraction_to_reach(fractions, mious, target: float) -> float | None:
    """Labelled fraction at which a learning curve first reaches ``target`` mIoU: the rounds'
    ``fractions`` (n,) and ``mious`` (n,), linearly interpolated between the two rounds around
    the first crossing (the first round's fraction when it already reaches it); None when no
    round does. Raises ValueError on curves of different lengths or decreasing fractions."""
    x, y = np.asarray(fractions, np.float64), np.asarray(mious, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"fractions {x.shape} and mious {y.shape} must be two equal 1-d curves")
    if np.any(np.diff(x) < 0):
        raise ValueError("labelled fractions must not decrease from round to round")
    hits = np.flatnonzero(y >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(x[0])
    rise = y[i] - y[i - 1]   # > 0: round i - 1 was below the target, round i reaches it
    return float(x[i - 1] + (x[i] - x[i - 1]) * (target - y[i - 1]) / rise)


def label_saving(own: tuple, base: tuple) -> tuple[float, bool]:
    """Share of the baseline's labels a strategy saves to reach the baseline's final mIoU, one
    seed: ``own`` and ``base`` are ``(fractions, mious)`` learning curves (round order).

    With m the baseline's last-round mIoU, f_base and f_own the labelled fractions at which
    the baseline and the strategy first reach m (:func:`fraction_to_reach`), the saving is
    ``1 - f_own / f_base``: 0.2 = the same mIoU with a fifth fewer labels, < 0 = more labels.
    Returns ``(saving, reached)``. When the strategy never reaches m within its rounds it needs
    more than its last fraction f_last, and ``(1 - f_last / f_base, False)`` is returned: the
    most it could have saved (an upper bound, usually <= 0).

    Raises ValueError for an empty curve, a non-finite mIoU or fraction, or a baseline that
    reaches m at a labelled fraction of 0 (no saving can be expressed against it)."""
    for name, (x, y) in (("strategy", own), ("baseline", base)):
        if len(x) == 0 or not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"the {name}'s curve is empty or holds a NaN / inf "
                             f"(fractions {list(x)}, mIoUs {list(y)})")
    target = float(base[1][-1])
    f_base = fraction_to_reach(base[0], base[1], target)
    if not f_base > 0:
        raise ValueError(f"the baseline reaches its final mIoU at a labelled fraction of {f_base}")
    f_own = fraction_to_reach(own[0], own[1], target)
    if f_own is None:
        return 1.0 - float(own[0][-1]) / f_base, False
    return 1.0 - f_own / f_base, True


def usable_curve(curve: tuple) -> bool:
    """A ``(fractions, mious)`` curve :func:`label_saving` takes: non-empty, finite, a positive
    first fraction."""
    x, y = curve
    return len(x) > 0 and bool(np.isfinite(x).all() and np.isfinite(y).all()) and x[0] > 0


def saving_interval(own: dict, base: dict, seed: int = 0, seeds=None) -> dict:
    """Label saving to match the baseline's final mIoU over the seeds: ``own`` and ``base`` are
    ``{seed: (fractions, mious)}`` curves, paired by seed (:func:`label_saving`); ``seeds``
    limits the pairing (e.g. to the seeds the AuALC entry pairs). A seed whose curve is empty or
    holds a NaN is left out and counted in ``left_out``.

    Returns ``{"mean", "ci_low", "ci_high", "reached", "seeds", "left_out", "upper_bound"}``:
    the mean and percentile-bootstrap 95 % interval over the paired seeds. A seed on which the
    strategy never reached the baseline's final mIoU enters at its bound (the most it could have
    saved); then ``upper_bound`` is true, the mean and ``ci_high`` are upper bounds and
    ``ci_low`` is None (that seed's true value is anywhere below its bound). None figures when
    no seed is paired."""
    paired = sorted(set(own) & set(base) & (set(seeds) if seeds is not None else set(own)))
    usable = [s for s in paired if usable_curve(own[s]) and usable_curve(base[s])]
    pairs = [label_saving(own[s], base[s]) for s in usable]
    values = [v for v, _ in pairs]
    reached = sum(ok for _, ok in pairs)
    bound = reached < len(usable)
    low, high = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)) if values else None,
            "ci_low": low if values and not bound else None, "ci_high": high if values else None,
            "reached": reached, "seeds": len(usable), "left_out": len(paired) - len(usable),
            "upper_bound": bound}
