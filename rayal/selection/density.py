"""Density-weighted uncertainty (Settles & Craven 2008 information density).

    value(x) = phi(x) * max(density(x), 0) ** beta
    density(x) = mean_{s in S} cos(x, s)

phi is a score column (default ``entropy_mean``) and S a seeded uniform sample of
``sample_size`` selectable pool units that have an embedding. Because the
embeddings are L2-normalised, the mean cosine is a dot product with the mean of
the sample vectors, ``x . mean_s(s)``: one ``N x D`` pass instead of ``N x |S| x D``.
Density is clipped at 0 so a fractional ``beta`` stays real (pooled ReLU features
have non-negative cosines anyway). Units without an embedding are skipped and
counted in ``extras["no_embedding"]``; NaN phi in ``extras["nan_skipped"]``.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy, split_keys
from rayal.selection.common import (UNITS, check_choice, check_column, check_range, level_of,
                                    scored_rows, query_from_rows, rank_top, unit_budget)
from rayal.selection.embeddings import embedding_keys, iter_embeddings, read_embeddings, sample_keys
from rayal.selection.registry import register_strategy


def pool_sample_embeddings(tables: ScoreTables, unit: str, pool: PoolView, size: int,
                           seed: int) -> np.ndarray:
    """(S, D) unit-norm embeddings of a seeded sample of selectable pool units (S <= size)."""
    keys = embedding_keys(tables, unit, pool)
    frame_index, region_id = split_keys(keys)
    sample = sample_keys(keys[pool.selectable(frame_index, region_id)], size, seed)
    x, found = read_embeddings(tables, unit, pool, sample)
    return x[found]


def lookup(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray) -> np.ndarray:
    """Values of ``keys`` in a key -> value table (table_keys sorted unique); NaN where absent."""
    out = np.full(len(keys), np.nan)
    if len(table_keys) == 0:
        return out
    pos = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    hit = table_keys[pos] == keys
    out[hit] = table_values[pos[hit]]
    return out


def mean_similarity(tables: ScoreTables, unit: str, pool: PoolView,
                    sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, mean cosine to ``sample``) for every embedded pool unit."""
    centre = sample.mean(axis=0).astype(np.float32)
    keys, values = [], []
    for batch_keys, x in iter_embeddings(tables, unit, pool):
        keys.append(batch_keys)
        values.append((x @ centre).astype(np.float64))
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0)
    keys, values = np.concatenate(keys), np.concatenate(values)
    keys, first = np.unique(keys, return_index=True)
    return keys, values[first]


@register_strategy("density", score="entropy_mean", beta=1.0, sample_size=2000, unit="image")
class DensityWeighted(Strategy):
    """Top-B by ``phi * density ** beta``.

    score: uncertainty column (phi), of the frames or regions table per ``unit``.
    beta: density exponent (>= 0; 0 is plain uncertainty).
    sample_size: size of the pool sample the density is measured against.
    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``.
    """

    needs_embeddings = True   # its score tables must hold this unit's embeddings

    def __init__(self, score: str = "entropy_mean", beta: float = 1.0, sample_size: int = 2000,
                 unit: str = "image"):
        check_column("score", score)
        check_range("beta", beta, 0.0)
        check_range("sample_size", sample_size, 1, integer=True)
        check_choice("unit", unit, UNITS)
        self.score, self.beta, self.sample_size, self.unit = score, float(beta), sample_size, unit
        self.level = level_of(unit)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        if n == 0:
            return Query.empty()
        rows, phi, usable = scored_rows(tables, self.unit, pool, self.score)
        sample = pool_sample_embeddings(tables, self.unit, pool, self.sample_size, seed)
        density = np.full(len(rows), np.nan)
        if len(sample):
            keys, values = mean_similarity(tables, self.unit, pool, sample)
            density[usable] = lookup(rows.keys[usable], keys, values)
        value = phi * np.maximum(density, 0.0) ** self.beta
        value[np.isnan(density)] = np.nan  # no embedding: skipped (nan ** 0 would be 1)
        picked = rank_top(rows, value, n)
        reasons = [f"{self.score}={p:.3f} density={d:.3f}" for p, d in zip(phi[picked], density[picked])]
        extras = {"nan_skipped": int(np.count_nonzero(rows.selectable & np.isnan(phi))),
                  "no_embedding": int(np.count_nonzero(usable & np.isnan(density))),
                  "sample_size": int(len(sample))}
        return query_from_rows(rows, picked, value[picked], reasons, extras=extras)
