"""TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, "Active learning on a budget", Sec. 4).

For the cold start and small budgets, where representative picks beat uncertain ones.
Points are the L2-normalised embeddings of the pool's units of one kind (frame embeddings
for ``unit="image"``, region embeddings otherwise; ``scoring.embeddings``). Each round:

1. k-means with ``|L| + B`` clusters (capped at ``max_clusters``, the paper's 500) over the
   labelled / queued units and the selectable ones (a seeded sample of ``max_points`` of the
   latter on large pools); clusters smaller than ``min_cluster_size`` (the paper's 5) are not
   drawn from unless nothing else is left;
2. B times: take the cluster holding the fewest labelled units (ties: the largest, then the
   lowest id) and pick in it the selectable unit of highest typicality
   ``1 / mean Euclidean distance to its k nearest neighbours`` within the cluster
   (``k = min(k_neighbours, cluster size - 1)``, the paper's 20); the pick counts as labelled.

Reason ``typicality=<value> cluster=<k>``; ``cluster`` holds the cluster id. Memory: the
embedded units (N x D float32) and one cluster's distance matrix at a time.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import UNITS, check_choice, check_range, level_of, query_from_keys
from rayal.selection.embeddings import representative_points
from rayal.selection.registry import register_strategy


def typicality(x: np.ndarray, k: int) -> np.ndarray:
    """(n,) ``1 / mean distance to the k nearest other rows`` of ``x`` (n, D); a lone point
    (or k = 0) gets 0. Exact: O(n^2 D) for one cluster."""
    n = len(x)
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros(n)
    sq = np.einsum("ij,ij->i", x, x).astype(np.float64)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T).astype(np.float64), 0.0)
    np.fill_diagonal(d2, np.inf)
    near = np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k])
    return 1.0 / np.maximum(near.mean(axis=1), 1e-12)


def typiclust_pick(x: np.ndarray, labelled: np.ndarray, budget: int, seed: int, k_neighbours: int = 20,
                   min_cluster_size: int = 5, max_clusters: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick ``budget`` rows of ``x`` (N, D) not flagged in ``labelled`` (N,) bool, TypiClust's way.

    Returns (picked rows, their typicality, their cluster id), in pick order.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    free = ~labelled
    budget = min(budget, int(free.sum()))
    if budget <= 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int32)
    k = int(min(int(labelled.sum()) + budget, max_clusters, len(x)))
    algo = KMeans(n_clusters=k, n_init=3, random_state=seed) if len(x) <= 50_000 else \
        MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=3)
    cluster = algo.fit_predict(x.astype(np.float64))
    size = np.bincount(cluster, minlength=k)
    covered = np.bincount(cluster[labelled], minlength=k)
    available = np.bincount(cluster[free], minlength=k)
    cache: dict[int, np.ndarray] = {}
    picked, typ, where = [], [], []
    for _ in range(budget):
        open_ = available > 0
        big = open_ & (size >= min_cluster_size)
        pool = big if big.any() else open_
        cand = np.flatnonzero(pool)
        # fewest labelled first, then the largest, then the lowest id
        c = int(cand[np.lexsort((cand, -size[cand], covered[cand]))[0]])
        if c not in cache:
            cache[c] = typicality(x[cluster == c], k_neighbours)
        rows = np.flatnonzero(cluster == c)
        t = np.where(free[rows], cache[c], -np.inf)
        j = int(np.argmax(t))
        picked.append(int(rows[j])), typ.append(float(cache[c][j])), where.append(c)
        free[rows[j]] = False
        covered[c] += 1
        available[c] -= 1
    return np.asarray(picked, np.int64), np.asarray(typ), np.asarray(where, np.int32)


@register_strategy("typiclust", unit="image")
class TypiClust(Strategy):
    """Typical and diverse: one pick per uncovered cluster, the most typical unit in it.

    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``. k_neighbours >= 1 (20).
    min_cluster_size >= 1 (5). max_clusters >= 1 (500). max_points >= 1: selectable units
    clustered at most (a seeded sample beyond it; default 50,000).
    """

    needs_embeddings = True   # its score tables must hold this unit's embeddings

    def __init__(self, unit: str = "image", k_neighbours: int = 20, min_cluster_size: int = 5,
                 max_clusters: int = 500, max_points: int = 50_000):
        check_choice("unit", unit, UNITS)
        for name, value in (("k_neighbours", k_neighbours), ("min_cluster_size", min_cluster_size),
                            ("max_clusters", max_clusters), ("max_points", max_points)):
            check_range(name, value, 1, integer=True)
        self.unit, self.k_neighbours, self.min_cluster_size = unit, k_neighbours, min_cluster_size
        self.max_clusters, self.max_points = max_clusters, max_points
        self.level = level_of(unit)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        points = representative_points(self, tables, pool, budget, seed)
        if points is None:
            return Query.empty()
        n, use, x, labelled = points
        rows, typ, cluster = typiclust_pick(x, labelled, n, seed, self.k_neighbours,
                                            self.min_cluster_size, self.max_clusters)
        chosen = use[rows]
        reasons = [f"typicality={t:.3f} cluster={c}" for t, c in zip(typ, cluster)]
        return query_from_keys(pool, self.unit, chosen, typ, reasons, cluster=cluster,
                               extras={"clusters": int(cluster.max()) + 1 if len(cluster) else 0,
                                       "points": len(use)})
