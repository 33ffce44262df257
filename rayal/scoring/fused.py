"""Fused MC-dropout statistics on CPU (numba): one pass over the logits for all T samples.

Eager torch materialises every sample's (B, C, H, W) probabilities several times
(mask, softmax, products, sums); here each pixel's C logits stay in registers and
all T samples, their softmax and every statistic are computed in one loop. With
dropout on the logits, ``exp`` is taken once per class: a kept logit contributes
``exp(z/(1-p))``, a dropped one ``exp(0)``.

Output ``maps`` rows follow :data:`MAP_ORDER`; statistics are float64 inside.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from rayal.scoring.rng import drop_threshold

MAP_ORDER = ("entropy", "margin", "least_confidence", "bald", "vote_entropy", "variance")
_EPS = 1e-12


@njit(inline="always", cache=True)
def _mix64(x):
    """splitmix64 finaliser; must match :func:`rayal.scoring.rng.mix64_torch`."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(inline="always", cache=True)
def _xlogx(p):
    return p * math.log(max(p, _EPS))


@njit(parallel=True, fastmath=True, cache=True)
def _mc_kernel(zt, z_det, bases, thr, scale, dropout, num_samples, point_from_mean, want_ovr,
               maps, pred, ovr, inter, sample_count, agg_count):
    """zt: (Tz, B, C, H, W) float32 logits; Tz == 1 with ``dropout`` (masks drawn here),
    else Tz == T already-sampled logits. z_det: (B, C, H, W) deterministic logits.
    bases: (B, T) uint64 per-sample stream bases. Writes maps (6, B, H, W), pred (B, H, W),
    ovr (B, C, H, W) when want_ovr, AD counts inter/sample_count (B*H, T, C), agg_count (B*H, C).
    """
    _, B, C, H, W = zt.shape
    T = num_samples
    for row in prange(B * H):
        b = row // H
        h = row % H
        e = np.empty(C)
        zs = np.empty(C)
        u = np.empty(C)
        sp = np.empty(C)
        sp2 = np.empty(C)
        votes = np.zeros(C)
        pt = np.empty(C)
        winners = np.empty(T, np.int64)
        for w in range(W):
            pix = h * W + w
            m = 0.0
            if dropout:
                for c in range(C):
                    zs[c] = zt[0, b, c, h, w] * scale
                    if zs[c] > m:
                        m = zs[c]
                for c in range(C):
                    e[c] = math.exp(zs[c] - m)
                dropped = math.exp(-m)
            for c in range(C):
                sp[c] = 0.0
                sp2[c] = 0.0
                votes[c] = 0.0
            sum_h = 0.0
            for t in range(T):
                if not dropout:
                    m = -np.inf
                    for c in range(C):
                        zs[c] = zt[t, b, c, h, w]
                        if zs[c] > m:
                            m = zs[c]
                z_sum = 0.0
                s_sum = 0.0
                best = 0
                best_u = -1.0
                bits = np.uint64(0)
                for c in range(C):
                    if dropout:
                        elem = pix * C + c  # channel-last element index, 4 per hash
                        lane = elem & 3
                        if lane == 0 or c == 0:
                            bits = _mix64(bases[b, t] + np.uint64(elem >> 2))
                        if (bits >> np.uint64(16 * lane)) & np.uint64(0xFFFF) >= thr:
                            uc = e[c]
                            lc = zs[c]
                        else:
                            uc = dropped
                            lc = 0.0
                    else:
                        uc = math.exp(zs[c] - m)
                        lc = zs[c]
                    u[c] = uc
                    z_sum += uc
                    s_sum += uc * lc
                    if uc > best_u:
                        best_u = uc
                        best = c
                # H(p_t) = log Z + m - sum_c p_c l_c  (shifted logits, exact)
                sum_h += math.log(z_sum) + m - s_sum / z_sum
                inv = 1.0 / z_sum
                for c in range(C):
                    pc = u[c] * inv
                    sp[c] += pc
                    sp2[c] += pc * pc
                votes[best] += 1.0
                winners[t] = best
            # point estimate: MC mean or deterministic softmax
            if point_from_mean:
                for c in range(C):
                    pt[c] = sp[c] / T
            else:
                md = -np.inf
                for c in range(C):
                    if z_det[b, c, h, w] > md:
                        md = z_det[b, c, h, w]
                tot = 0.0
                for c in range(C):
                    pt[c] = math.exp(z_det[b, c, h, w] - md)
                    tot += pt[c]
                for c in range(C):
                    pt[c] /= tot
            ent = 0.0
            p1 = -1.0
            p2 = -1.0
            arg = 0
            for c in range(C):
                ent -= _xlogx(pt[c])
                if pt[c] > p1:
                    p2 = p1
                    p1 = pt[c]
                    arg = c
                elif pt[c] > p2:
                    p2 = pt[c]
            mean_ent = 0.0
            var = 0.0
            vent = 0.0
            agg = 0
            agg_p = -1.0
            for c in range(C):
                mc = sp[c] / T
                mean_ent -= _xlogx(mc)
                var += max(sp2[c] / T - mc * mc, 0.0)
                if votes[c] > 0:
                    vent -= _xlogx(votes[c] / T)
                if mc > agg_p:
                    agg_p = mc
                    agg = c
            maps[0, b, h, w] = ent
            maps[1, b, h, w] = 1.0 - (p1 - p2)
            maps[2, b, h, w] = 1.0 - p1
            maps[3, b, h, w] = mean_ent - sum_h / T
            maps[4, b, h, w] = vent
            maps[5, b, h, w] = var / C
            pred[b, h, w] = arg
            if want_ovr:
                for c in range(C):
                    q = 1.0 - pt[c]
                    ovr[b, c, h, w] = -(_xlogx(pt[c]) + _xlogx(q))
            agg_count[row, agg] += 1
            for t in range(T):
                sample_count[row, t, winners[t]] += 1
                if winners[t] == agg:
                    inter[row, t, agg] += 1


def ad_from_counts(inter: np.ndarray, sample_count: np.ndarray, agg_count: np.ndarray,
                   dice: str) -> np.ndarray:
    """Area Disagreement (B,) from per-(frame, sample, class) overlap counts (B, T, C) / (B, C)."""
    agg = agg_count[:, None, :].astype(np.float64)
    inter = inter.astype(np.float64)
    total = sample_count + agg
    if dice == "joint":
        scores = 2.0 * inter.sum(-1) / total.sum(-1)
    else:
        present = total > 0
        per_class = np.where(present, 2.0 * inter / np.maximum(total, 1), 0.0)
        scores = per_class.sum(-1) / np.maximum(present.sum(-1), 1)
    return 1.0 - scores.mean(axis=1)


def fused_mc_stats(zt: np.ndarray, z_det: np.ndarray, bases: np.ndarray, *, num_samples: int,
                   dropout_p: float | None, point_from_mean: bool, want_ovr: bool,
                   dice: str = "macro") -> dict[str, np.ndarray]:
    """Run the kernel. ``dropout_p`` set: ``zt`` is (1, B, C, H, W) and masks are drawn here;
    None: ``zt`` is (T, B, C, H, W) sampled logits. Returns float32 maps (B, H, W) per
    :data:`MAP_ORDER`, ``pred`` (B, H, W) int64, ``ovr`` (B, C, H, W) or None, ``area_disagreement`` (B,).
    """
    zt = np.ascontiguousarray(zt, dtype=np.float32)
    z_det = np.ascontiguousarray(z_det, dtype=np.float32)
    _, B, C, H, W = zt.shape
    T = num_samples
    dropout = dropout_p is not None
    thr = np.uint64(drop_threshold(dropout_p or 0.0))
    scale = 1.0 / (1.0 - dropout_p) if dropout else 1.0
    maps = np.empty((len(MAP_ORDER), B, H, W), np.float32)
    pred = np.empty((B, H, W), np.int64)
    ovr = np.empty((B, C, H, W) if want_ovr else (1, 1, 1, 1), np.float32)
    inter = np.zeros((B * H, T, C), np.int64)
    sample_count = np.zeros((B * H, T, C), np.int64)
    agg_count = np.zeros((B * H, C), np.int64)
    _mc_kernel(zt, z_det, np.ascontiguousarray(bases, dtype=np.uint64), thr, scale, dropout, T,
               point_from_mean, want_ovr, maps, pred, ovr, inter, sample_count, agg_count)
    rows = lambda a: a.reshape(B, H, *a.shape[1:]).sum(axis=1)  # noqa: E731
    out = {name: maps[i] for i, name in enumerate(MAP_ORDER)}
    out["pred"] = pred
    out["ovr"] = ovr if want_ovr else None
    out["area_disagreement"] = ad_from_counts(rows(inter), rows(sample_count), rows(agg_count), dice)
    return out


@njit(parallel=True, fastmath=True, cache=True)
def _dropout_copies_kernel(x, bases, thr, scale, out):
    _, B, D, H, W = out.shape
    T = out.shape[0]
    for row in prange(T * B * H):
        t = row // (B * H)
        b = (row // H) % B
        h = row % H
        for w in range(W):
            bits = np.uint64(0)
            for d in range(D):
                elem = (h * W + w) * D + d
                lane = elem & 3
                if lane == 0 or d == 0:
                    bits = _mix64(bases[b, t] + np.uint64(elem >> 2))
                keep = (bits >> np.uint64(16 * lane)) & np.uint64(0xFFFF) >= thr
                out[t, b, d, h, w] = x[b, d, h, w] * scale if keep else 0.0


def dropout_copies(x: np.ndarray, bases: np.ndarray, dropout_p: float) -> np.ndarray:
    """T inverted-dropout copies of ``x`` (B, D, H, W) -> (T, B, D, H, W) float32, with the
    same masks as :func:`rayal.scoring.rng.apply_dropout` (one fused pass, no mask tensors)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bases = np.ascontiguousarray(bases, dtype=np.uint64)
    out = np.empty((bases.shape[1],) + x.shape, np.float32)
    _dropout_copies_kernel(x, bases, np.uint64(drop_threshold(dropout_p)),
                           np.float32(1.0 / (1.0 - dropout_p)), out)
    return out
