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
   delta is read off the sorted ``r`` (exact, no search; in squared distances, so the graph
   tests the same numbers). ``delta`` given as a parameter skips this.
2. **Max coverage, greedy** (Alg. 1): the graph has an edge ``x -> x'`` when
   ``||x - x'|| < delta``; the points in the labelled / queued units' balls start covered.
   B times: take the selectable unit whose ball holds the most uncovered points (ties: a
   seeded random one of them), mark its ball covered.

When every point is covered before B picks, the rest is a seeded uniform sample of the
selectable units (the paper lowers delta for larger budgets; rayal keeps the purity rule and
says so: ``extras["random_fill"]``). Reason ``covers=<points> delta=<radius>``; score = the
newly covered points. Memory and time: the sparse graph (edges) plus one chunk of distances,
``O(N^2 D)`` work for N points (``max_points`` caps the selectable units with a seeded sample,
default 20,000; the labelled / queued units with an embedding come on top). The graph holds
up to N^2 int32 edges when delta reaches across the pool (one cluster).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import UNITS, check_choice, check_range, level_of, query_from_keys
from rayal.selection.embeddings import representative_points
from rayal.selection.registry import register_strategy

_CHUNK = 1024   # rows of the distance matrix held at once


def _chunked_sq_distances(x: np.ndarray):
    """Yield (row offset, (rows, N) float64 squared Euclidean distances) chunk by chunk."""
    x = x.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    for start in range(0, len(x), _CHUNK):
        d2 = x[start:start + _CHUNK] @ x.T
        d2 *= -2.0
        d2 += sq[start:start + _CHUNK, None]
        d2 += sq[None, :]
        yield start, np.maximum(d2, 0.0, out=d2)


def pure_radius(x: np.ndarray, n_clusters: int, purity: float, seed: int) -> float:
    """Squared delta of Sec. 4.1: the largest squared radius at which a fraction ``purity`` of the
    balls around the rows of ``x`` (N, D) hold only their centre's k-means cluster
    (``n_clusters``, seeded). Squared, so that the graph's ``d2 < delta2`` test uses the very
    numbers the quantile was read from. With a single cluster (identical points) every ball is
    pure: 4 + eps, the squared diameter of the unit sphere, so every ball holds every point.
    ValueError when ``x`` has fewer than 2 rows."""
    from sklearn.cluster import KMeans

    if len(x) < 2:
        raise ValueError(f"probcover: purity needs at least 2 points, got {len(x)}")
    k = min(n_clusters, len(np.unique(x, axis=0)))   # identical points: one cluster
    label = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x.astype(np.float64))
    r2 = np.empty(len(x))
    for start, d2 in _chunked_sq_distances(x):
        d2[label[None, :] == label[start:start + len(d2), None]] = np.inf
        r2[start:start + len(d2)] = d2.min(axis=1)
    # B(x) is pure iff delta2 <= r2(x): the largest delta2 with #{r2 >= delta2} >= purity * N
    index = len(r2) - int(np.ceil(purity * len(r2) - 1e-9))
    delta2 = float(np.sort(r2)[index])
    return delta2 if np.isfinite(delta2) else 4.0 + 1e-6


def ball_graph(x: np.ndarray, delta2: float) -> sp.csr_matrix:
    """(N, N) int32 CSR adjacency: ``x_i -> x_j`` when ``||x_i - x_j||^2 < delta2`` (self
    included for delta2 > 0); symmetric."""
    parts = [sp.csr_matrix((d2 < delta2).astype(np.int32)) for _, d2 in _chunked_sq_distances(x)]
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, 0), dtype=np.int32)


def max_coverage(graph: sp.csr_matrix, taken: np.ndarray, budget: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Alg. 1 on the symmetric ``graph`` (N, N), the ``taken`` (N,) bool rows' balls covered
    first: up to ``budget`` rows (never taken ones), each the one covering most uncovered points
    at its turn (ties: seeded random). Returns (rows, newly covered points per row); stops early
    when nothing is left to cover. Work: O(edges) over the whole selection."""
    tie = np.random.default_rng([seed, 1]).random(graph.shape[0])
    a = graph
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
        # symmetric graph: the points whose balls held a newly covered one lose it
        gain -= np.asarray(a[newly].sum(axis=0)).ravel()
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

    needs_embeddings = True   # its score tables must hold this unit's embeddings

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
        points = representative_points(self, tables, pool, budget, seed)
        if points is None:
            return Query.empty()
        n, keys, x, taken = points
        n = min(n, int((~taken).sum()))
        if self.delta is not None:
            delta2 = float(self.delta) ** 2
        elif len(keys) >= 2:
            delta2 = pure_radius(x, self.n_clusters, self.purity, seed)
        else:
            delta2 = 4.0 + 1e-6   # one point: its ball is the whole (one-point) pool
        rows, gains = max_coverage(ball_graph(x, delta2), taken, n, seed)
        fill = n - len(rows)
        if fill:
            rest = np.setdiff1d(np.flatnonzero(~taken), rows)
            extra = np.random.default_rng([seed, 2]).choice(rest, fill, replace=False)
            rows, gains = np.concatenate([rows, extra]), np.concatenate([gains, np.zeros(fill, np.int64)])
        delta = float(np.sqrt(delta2))
        reasons = [f"covers={g} delta={delta:.4g}" if i < n - fill else "covered: random fill"
                   for i, g in enumerate(gains)]
        return query_from_keys(pool, self.unit, keys[rows], gains.astype(np.float64), reasons,
                               extras={"delta": delta, "points": len(keys), "random_fill": fill})
