"""Core-set selection (Sener & Savarese 2018): k-center greedy on embeddings.

Points are the L2-normalised float32 embeddings of the selectable units (frame
embeddings for ``unit="image"``, region embeddings of that unit otherwise).
Centres start as the units already labelled or queued (queued ones will be
labelled; picking next to them would waste budget). Each pick is the candidate
farthest (Euclidean) from its nearest centre, and becomes a centre. With no
centre at all the first pick is a seeded uniform draw.

Memory: the embedded units ``N x D`` float32 (1e5 x 1280 = 512 MB, no second copy)
plus the initial distance to the labelled set computed in ``chunk x chunk`` blocks
(64 MB); each greedy step is one ``N x D`` matrix-vector product. Labelled units without a
stored embedding cannot act as centres; their count is ``extras["centres_missing"]``.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import (LABELED, QUEUED, Budget, PoolView, Query, ScoreTables, Strategy,
                                  split_keys)
from rayal.selection.common import (UNITS, check_choice, check_range, level_of, query_from_keys,
                                    unit_budget)
from rayal.selection.embeddings import embedding_units, read_embeddings
from rayal.selection.registry import register_strategy



def min_distances(points: np.ndarray, centres: np.ndarray, chunk: int = 4096,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance from unit-norm points (N, D) to their nearest centre (M, D).

    Uses ``|x - c|^2 = 2 - 2 x.c`` for unit vectors; blocks of ``chunk x chunk`` bound
    memory. ``rows``: only these point rows (default all); returns (len(rows),) float64,
    ``inf`` where there are no centres.
    """
    rows = np.arange(len(points)) if rows is None else rows
    best = np.full(len(rows), -np.inf, np.float32)  # max cosine similarity
    if len(centres):
        for i in range(0, len(rows), chunk):
            block = points[rows[i:i + chunk]]
            for j in range(0, len(centres), chunk):
                np.maximum(best[i:i + chunk], (block @ centres[j:j + chunk].T).max(axis=1),
                           out=best[i:i + chunk])
    return np.sqrt(np.maximum(2.0 - 2.0 * best.astype(np.float64), 0.0))


def k_center_greedy(points: np.ndarray, centres: np.ndarray, k: int, rng: np.random.Generator,
                    candidates: np.ndarray | None = None,
                    chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``k`` rows of ``points`` (N, D unit-norm) by k-center greedy against ``centres``.

    candidates: optional (N,) bool; only these rows may be picked (the others still
    count as points, which is cheaper than copying the candidates out of ``points``).
    Returns (picked row indices, distance to the nearest centre at pick time; inf for
    the seeded random first pick when there are no centres). Ties go to the lowest row.
    """
    allowed = np.flatnonzero(candidates) if candidates is not None else np.arange(len(points))
    k = min(k, len(allowed))
    dist = np.full(len(points), -np.inf)  # non-candidates are never picked
    dist[allowed] = min_distances(points, centres, chunk, allowed)
    picked, gaps = np.zeros(k, np.int64), np.zeros(k, np.float64)
    for t in range(k):
        if t == 0 and len(centres) == 0:
            i = int(allowed[rng.integers(len(allowed))])
        else:
            i = int(np.argmax(dist))
        picked[t], gaps[t] = i, dist[i]
        sim = points @ points[i]
        np.minimum(dist, np.sqrt(np.maximum(2.0 - 2.0 * sim.astype(np.float64), 0.0)), out=dist)
        dist[i] = -np.inf  # never again, even if float error leaves it above a duplicate's
    return picked, gaps


@register_strategy("coreset", unit="image")
class CoreSet(Strategy):
    """k-center greedy on embeddings.

    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``.
    chunk: block size for the labelled-set distance pass (rows and centres per block).
    """

    needs_embeddings = True   # its score tables must hold this unit's embeddings

    def __init__(self, unit: str = "image", chunk: int = 4096):
        check_choice("unit", unit, UNITS)
        check_range("chunk", chunk, 1, integer=True)
        self.unit, self.chunk = unit, chunk
        self.level = level_of(unit)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        if n == 0:
            return Query.empty()
        # keys sorted unique: an order-independent result
        keys, candidates, taken = embedding_units(tables, self.unit, pool)
        if not candidates.any():
            return Query.empty()
        x, _ = read_embeddings(tables, self.unit, pool, keys)
        picked, gaps = k_center_greedy(x, x[taken], n, np.random.default_rng(seed), candidates,
                                       self.chunk)
        reasons = ["coreset first centre (random: nothing labelled)" if np.isinf(g)
                   else f"coreset min_dist={g:.3f}" for g in gaps]
        # taken units of this level that have no embedding cannot be centres: say so
        in_pool = pool.keys[np.isin(pool.status, (LABELED, QUEUED))]
        level = split_keys(in_pool)[1]
        in_pool = in_pool[(level == -1) if self.unit == "image" else (level >= 0)]
        extras = {"centres": int(np.count_nonzero(taken)),
                  "centres_missing": int(np.count_nonzero(~np.isin(in_pool, keys)))}
        return query_from_keys(pool, self.unit, keys[picked], gaps, reasons, extras=extras)
