"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022, "Active learning through a
covering lens", Sec. 4 and Alg. 1).

For the cold start and small budgets, like TypiClust: pick the units whose balls of radius
delta cover the most of the pool not yet covered by the labelled set. Points are the
L2-normalised embeddings of the pool's units of one kind (``scoring.embeddings``).

1. **delta** (Sec. 4.1): k-means with ``n_clusters`` clusters over the points gives
   pseudo-labels; a ball ``B(x) = {x' : ||x - x'|| < delta}`` is pure when every point in it
   has ``x``'s pseudo-label. delta is the largest radius at which a fraction ``purity`` (the
   paper's alpha = 0.95) of the balls are pure. With ``r(x)`` the distance from ``x`` to the
   nearest point of another cluster, ``B(x)`` is pure exactly when ``delta <= r(x)``, so
   delta is the ``1 - purity`` quantile of ``r`` (exact, no search). ``delta`` given as a
   parameter skips this.
2. **Max coverage, greedy** (Alg. 1): the graph has an edge ``x -> x'`` when
   ``||x - x'|| < delta``; the points in the labelled / queued units' balls start covered.
   B times: take the selectable unit whose ball holds the most uncovered points (ties: a
   seeded random one of them), mark its ball covered.

When every point is covered before B picks, the rest is a seeded uniform sample of the
selectable units (the paper lowers delta for larger budgets; rayal keeps the purity rule and
says so: ``extras["random_fill"]``). Reason ``covers=<points> delta=<radius>``; score = the
newly covered points. Memory and time: the sparse graph (edges) plus one chunk of distances,
``O(N^2 D)`` work for N points (``max_points`` caps N with a seeded sample of the selectable
units, default 20,000).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (UNITS, check_choice, check_range, embedded_points, level_of,
                                    query_from_keys, unit_budget)
from rayal.selection.registry import register_strategy

_CHUNK = 1024   # rows of the distance matrix held at once


def _chunked_sq_distances(x: np.ndarray):
    """Yield (row offset, (rows, N) float64 squared Euclidean distances) chunk by chunk."""
    x = x.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    for start in range(0, len(x), _CHUNK):
        part = x[start:start + _CHUNK]
        d2 = sq[start:start + _CHUNK, None] + sq[None, :] - 2.0 * part @ x.T
        yield start, np.maximum(d2, 0.0)


def pure_radius(x: np.ndarray, n_clusters: int, purity: float, seed: int) -> float:
    """delta of Sec. 4.1: the largest radius at which a fraction ``purity`` of the balls around
    the rows of ``x`` (N, D) hold only their centre's k-means cluster (``n_clusters``, seeded).
    ValueError when there are fewer than two clusters to tell apart."""
    from sklearn.cluster import KMeans

    k = min(n_clusters, len(x))
    if k < 2:
        raise ValueError(f"probcover: purity needs at least 2 points and n_clusters >= 2 (got "
                         f"{len(x)} points, n_clusters={n_clusters}); set delta instead")
    label = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x.astype(np.float64))
    r = np.empty(len(x))
    for start, d2 in _chunked_sq_distances(x):
        rows = label[start:start + len(d2)]
        d2[label[None, :] == rows[:, None]] = np.inf
        r[start:start + len(d2)] = np.sqrt(d2.min(axis=1))
    return float(np.sort(r)[int(np.floor(len(r) * (1.0 - purity)))])


def ball_graph(x: np.ndarray, delta: float) -> sp.csr_matrix:
    """(N, N) bool CSR adjacency: ``x_i -> x_j`` when ``||x_i - x_j|| < delta`` (self included
    for delta > 0); symmetric."""
    parts = []
    for _, d2 in _chunked_sq_distances(x):
        parts.append(sp.csr_matrix(d2 < delta * delta))
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, 0), dtype=bool)


def max_coverage(graph: sp.csr_matrix, taken: np.ndarray, budget: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Alg. 1 on ``graph`` (N, N), the ``taken`` (N,) bool rows' balls covered first: up to
    ``budget`` rows (never taken ones), each the one covering most uncovered points at its
    turn (ties: seeded random). Returns (rows, newly covered points per row); stops early
    when nothing is left to cover."""
    rng = np.random.default_rng(seed)
    tie = rng.random(graph.shape[0])
    a = graph.astype(np.int64)
    covered = np.asarray(a[np.flatnonzero(taken)].sum(axis=0)).ravel() > 0
    gain = a @ (~covered).astype(np.int64)
    free = ~taken.copy()
    rows, gains = [], []
    for _ in range(budget):
        best = np.where(free, gain, -1)
        top = best.max(initial=-1)
        if top <= 0:
            break
        j = int(np.flatnonzero(best == top)[np.argmax(tie[best == top])])
        newly = a.indices[a.indptr[j]:a.indptr[j + 1]]
        newly = newly[~covered[newly]]
        covered[newly] = True
        indicator = np.zeros(len(covered), np.int64)
        indicator[newly] = 1
        gain -= a @ indicator
        free[j] = False
        rows.append(j), gains.append(int(top))
    return np.asarray(rows, np.int64), np.asarray(gains, np.int64)


@register_strategy("probcover", unit="image")
class ProbCover(Strategy):
    """Max coverage of delta-balls in embedding space (Yehuda et al. 2022).

    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``. purity in (0, 1) (the paper's 0.95).
    n_clusters >= 2: the k-means pseudo-labels delta's purity is measured against (the paper:
    the number of classes; default 10). delta > 0: a fixed radius instead (unit-norm
    embeddings: at most 2). max_points >= 1: selectable units used at most (default 20,000).
    """

    def __init__(self, unit: str = "image", purity: float = 0.95, n_clusters: int = 10,
                 delta: float | None = None, max_points: int = 20_000):
        check_choice("unit", unit, UNITS)
        check_range("purity", purity, 0.0, 1.0)
        if not 0.0 < purity < 1.0:
            raise ValueError(f"purity must be in (0, 1), got {purity}")
        check_range("n_clusters", n_clusters, 2, integer=True)
        check_range("max_points", max_points, 1, integer=True)
        if delta is not None:
            check_range("delta", delta, 0.0)
            if delta <= 0:
                raise ValueError(f"delta must be > 0, got {delta}")
        self.unit, self.purity, self.n_clusters = unit, purity, n_clusters
        self.delta, self.max_points = delta, max_points
        self.level = level_of(unit)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        if n == 0:
            return Query.empty()
        points = embedded_points(tables, self.unit, pool, self.max_points, seed)
        if points is None:
            return Query.empty()
        keys, x, taken = points
        n = min(n, int((~taken).sum()))
        delta = self.delta if self.delta is not None else pure_radius(x, self.n_clusters, self.purity, seed)
        rows, gains = max_coverage(ball_graph(x, delta), taken, n, seed)
        fill = n - len(rows)
        if fill:
            rest = np.setdiff1d(np.flatnonzero(~taken), rows)
            extra = np.random.default_rng(seed).choice(rest, fill, replace=False)
            rows, gains = np.concatenate([rows, extra]), np.concatenate([gains, np.zeros(fill, np.int64)])
        reasons = [f"covers={g} delta={delta:.4f}" if i < n - fill else "covered: random fill"
                   for i, g in enumerate(gains)]
        return query_from_keys(pool, self.unit, keys[rows], gains.astype(np.float64), reasons,
                               extras={"delta": delta, "points": len(keys), "random_fill": fill})
