"""Batch diversity: one stage any score-based strategy runs through (pure numpy / sklearn).

Top-B by uncertainty over a video pool takes runs of near-identical adjacent frames (on
CamVid, in a round of 49 frames of an earlier protocol, entropy took 39 from one dusk
sequence). This stage takes
the strategy's top ``n_candidates`` (its own ranking: entropy, margin, BALD, Area
Disagreement, OREAL's class-budgeted order, ...) and picks the budget B among them spread in
embedding space, skipping near-duplicates (DESIGN.md, "Batch diversity"; the two-stage
"uncertain, then diverse" scheme of MEAL's top-N_I, Suggestive Annotation's top-K and the
cluster budgets of Cai et al. / MADBAL):

``diversity``
    ``none``            the strategy's order (only the duplicate filters below apply);
    ``kcenter``         k-center greedy (Sener & Savarese 2018) over the candidates, the
                        labelled and queued units acting as centres; with none, the
                        best-scoring candidate first;
    ``kmeans``          k-means (B clusters, seeded) over the candidates, the best-scoring
                        candidate of each cluster;
    ``cluster_budget``  k-means (``n_clusters``) over the candidates, cluster budgets
                        ``ceil(s_k / sum s * B)`` trimmed to exactly B, largest first, the
                        best-scoring candidates within a cluster; s_k is the cluster's summed
                        score (``cluster_mass: score``) or its size (``size``: a sample
                        stratified like the candidates, uncertain within each stratum; with
                        ``n_candidates: all`` stratified like the whole pool).
``dedup_threshold``
    cosine similarity above which a candidate counts as a near-duplicate of a unit already
    picked this round or already labelled / queued, and is skipped.
``sequence_key`` / ``per_sequence`` / ``sequence_window``
    a regular expression over ``frame_id`` naming each frame's video sequence and, with an
    ``index`` group and a window, its window of ``sequence_window`` consecutive frame numbers
    (:mod:`rayal.selection.sequence_cap`). ``per_sequence`` (default 1): at most that many
    units per window in one round, units labelled earlier not counted (``"frame"``: at most
    that many regions per frame); ``proportional``: a window takes a pick only while its
    labelled, queued and picked units are fewer than its share of the pool's frames times
    the labelled set after the round, so the labelled set covers the sequences as a uniform
    sample does and the strategy's order chooses within each window. ``per_sequence`` and
    ``sequence_window`` without ``sequence_key`` are refused.

Units skipped by a filter are replaced by the next candidate in the stage's order; when the
filters leave fewer than B, ``n_candidates`` doubles until B are found or the strategy has
no more units. Then an integer ``per_sequence`` or the duplicate filter may return fewer than
B (they are hard limits); the proportional cap is a share, not a limit: when windows that
cannot fill (quarantined, unscored or used-up frames) leave the round short, it takes the
capped candidates in order up to B (``extras["sequence_cap_relaxed"]``).

Needs the embeddings table (``scoring.embeddings: [frame]`` for images, ``[region]`` for
patches / superpixels) unless ``diversity`` is ``none`` and no ``dedup_threshold`` is set.
Memory: the candidates' and the labelled units' embeddings.
"""
from __future__ import annotations

import inspect

import numpy as np

from rayal.selection.base import (LABELED, QUEUED, Budget, PoolView, Query, ScoreTables, Strategy,
                                  split_keys, unit_keys)
from rayal.selection.common import check_choice, check_range, table_of, unit_budget
from rayal.selection.embeddings import read_embeddings
from rayal.selection.sequence_cap import PROPORTIONAL, SequenceKey, WindowCap

MODES = ("none", "kcenter", "kmeans", "cluster_budget")
PARAMS = ("diversity", "n_candidates", "dedup_threshold", "sequence_key", "per_sequence",
          "sequence_window", "n_clusters", "cluster_mass")


def split_diversity_params(params: dict, cls: type) -> tuple[dict, dict]:
    """(strategy params, diversity params) of one ``selection.params`` mapping; a name the
    strategy's own constructor takes (MEAL's ``n_candidates``) stays the strategy's."""
    own = set(inspect.signature(cls.__init__).parameters)
    ours = {k for k in params if k in PARAMS and k not in own}
    return ({k: v for k, v in params.items() if k not in ours},
            {k: v for k, v in params.items() if k in ours})


def orphan_params(params: dict) -> list[tuple[str, str]]:
    """(name, what it needs) of each diversity parameter in ``params`` that does nothing
    without another one: ``per_sequence`` / ``sequence_window`` without ``sequence_key``,
    ``n_clusters`` / ``cluster_mass`` without ``diversity: cluster_budget``."""
    out = [(name, "sequence_key") for name in ("per_sequence", "sequence_window")
           if name in params and not params.get("sequence_key")]
    return out + [(name, "diversity: cluster_budget") for name in ("n_clusters", "cluster_mass")
                  if name in params and params.get("diversity") != "cluster_budget"]


def wants_diversity(params: dict) -> bool:
    """True when the diversity params ask for anything beyond the strategy's own order.

    Raises ValueError naming a parameter that does nothing without another one
    (:func:`orphan_params`)."""
    orphans = orphan_params(params)
    if orphans:
        name, wanted = orphans[0]
        raise ValueError(f"{name} does nothing without {wanted}: set that too, or drop {name}")
    return (params.get("diversity", "none") != "none" or params.get("dedup_threshold") is not None
            or params.get("sequence_key") is not None)


def kcenter_order(x: np.ndarray, centres: np.ndarray, score_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first order of all rows of ``x`` (n, D unit-norm) against ``centres`` (m, D).

    The first row is the farthest from the centres (with none: rank 0, the best-scoring);
    ties go to the better score rank. Returns (order (n,), distance at pick time (n,)).
    """
    n = len(x)
    dist = np.full(n, np.inf)
    if len(centres):
        dist = np.sqrt(np.maximum(2.0 - 2.0 * (x @ centres.T).max(axis=1).astype(np.float64), 0.0))
    order, gaps = np.zeros(n, np.int64), np.zeros(n)
    free = np.ones(n, bool)
    for t in range(n):
        cand = np.flatnonzero(free)
        best = dist[cand].max()
        tied = cand[dist[cand] >= best - 1e-12]
        i = int(tied[np.argmin(score_rank[tied])])
        order[t], gaps[t] = i, dist[i]
        free[i] = False
        np.minimum(dist, np.sqrt(np.maximum(2.0 - 2.0 * (x @ x[i]).astype(np.float64), 0.0)), out=dist)
    return order, gaps


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(x)))
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x.astype(np.float64))


def cluster_budgets(mass: np.ndarray, size: np.ndarray, budget: int) -> np.ndarray:
    """Budget per cluster ``ceil(mass_k / sum mass * B)`` capped at the cluster size, trimmed
    (largest budgets first, ties to the lower cluster id) to exactly ``min(B, sum size)``."""
    total = mass.sum()
    share = mass / total if total > 0 else size / size.sum()
    out = np.minimum(np.ceil(share * budget).astype(np.int64), size)
    target = min(budget, int(size.sum()))
    while out.sum() > target:
        out[int(np.argmax(out))] -= 1
    while out.sum() < target:   # caps left budget over: give it to clusters with room
        room = np.flatnonzero(out < size)
        out[room[np.argmax(share[room])]] += 1
    return out


def cluster_order(labels: np.ndarray, score_rank: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Rows in pick order: each cluster's ``budgets[k]`` best (by score rank), best first, then
    every other row by score rank (the refill when filters skip a pick)."""
    first = [np.flatnonzero(labels == k)[np.argsort(score_rank[labels == k])][:b]
             for k, b in enumerate(budgets)]
    head = np.concatenate(first) if first else np.zeros(0, np.int64)
    head = head[np.argsort(score_rank[head])]
    rest = np.setdiff1d(np.arange(len(labels)), head)
    return np.concatenate([head, rest[np.argsort(score_rank[rest])]]).astype(np.int64)


class Diverse(Strategy):
    """Wrap a score-based strategy: its top ``n_candidates`` -> B spread and de-duplicated.

    inner: the strategy giving the candidates (its order is the score rank).
    diversity: one of :data:`MODES`. n_candidates: candidates to draw (default 4 x B; ``"all"``:
    every unit the strategy ranks). cluster_mass: ``score`` | ``size`` (``cluster_budget``).
    dedup_threshold: cosine similarity in (0, 1] or None. sequence_key: regex, ``"frame"``
    or None; per_sequence >= 1 or ``"proportional"``; sequence_window >= 1 or None. n_clusters: k of
    ``cluster_budget`` (default 9, MADBAL's).
    Raises ValueError naming the parameter for bad values, and naming
    ``scoring.embeddings`` when the embeddings it needs are missing.
    """

    def __init__(self, inner: Strategy, diversity: str = "none", n_candidates: int | None = None,
                 dedup_threshold: float | None = None, sequence_key: str | None = None,
                 per_sequence: int | str = 1, sequence_window: int | None = None, n_clusters: int = 9,
                 cluster_mass: str = "score"):
        check_choice("diversity", diversity, MODES)
        check_choice("cluster_mass", cluster_mass, ("score", "size"))
        if n_candidates is not None and n_candidates != "all":
            check_range("n_candidates", n_candidates, 1, integer=True)
        if dedup_threshold is not None:
            check_range("dedup_threshold", dedup_threshold, 0.0, 1.0)
            if dedup_threshold <= 0:
                raise ValueError(f"dedup_threshold must be in (0, 1], got {dedup_threshold!r}")
        if per_sequence != PROPORTIONAL:
            if isinstance(per_sequence, str):
                raise ValueError(f"per_sequence must be an integer >= 1 or 'proportional', "
                                 f"got {per_sequence!r}")
            check_range("per_sequence", per_sequence, 1, integer=True)
        if sequence_window is not None:
            check_range("sequence_window", sequence_window, 1, integer=True)
        check_range("n_clusters", n_clusters, 1, integer=True)
        self.inner, self.diversity, self.n_candidates = inner, diversity, n_candidates
        self.dedup_threshold, self.per_sequence, self.n_clusters = dedup_threshold, per_sequence, n_clusters
        self.cluster_mass = cluster_mass
        self.sequence = SequenceKey(sequence_key, sequence_window) if sequence_key is not None else None
        self.level, self.unit = inner.level, getattr(inner, "unit", "image")
        self.supports_cost = False

    @property
    def needs_embeddings(self) -> bool:
        return (getattr(self.inner, "needs_embeddings", False) or self.diversity != "none"
                or self.dedup_threshold is not None)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        if n == 0:
            return Query.empty()
        m = (max(tables.num_rows(table_of(self.unit)), n) if self.n_candidates == "all"
             else max(self.n_candidates or 4 * n, n))
        # the pool's windows once a select (O(pool) for the proportional cap), not once a draw
        caps = (WindowCap(self.sequence, self.per_sequence, pool, self.unit, n)
                if self.sequence is not None else None)
        while True:
            cand = self.inner.select(tables, pool, Budget(units=m), seed)
            picked, notes, cluster, skipped = self._pick(cand, tables, pool, n, seed, caps,
                                                         exhausted=len(cand) < m)
            if len(picked) >= n or len(cand) < m:
                break
            m *= 2   # the filters ate too many: draw more candidates
        if caps is not None:
            caps.check_matches()
        out = Query(frame_id=cand.frame_id[picked], unit=cand.unit[picked],
                    region_id=cand.region_id[picked], score=cand.score[picked],
                    reason=np.array([f"{r}; {note}" for r, note in zip(cand.reason[picked], notes)], object),
                    class_id=cand.class_id[picked], cluster=cluster, cost=cand.cost[picked],
                    extras={**cand.extras, "diversity": self.diversity, "candidates": len(cand),
                            **skipped})
        return out

    def _keys(self, query: Query, pool: PoolView) -> np.ndarray:
        fi = pool.frame_index(query.frame_id.astype(object))
        return unit_keys(np.maximum(fi, 0), np.asarray(query.region_id, np.int64))

    def _embeddings(self, tables: ScoreTables, pool: PoolView, keys: np.ndarray) -> np.ndarray:
        x, found = read_embeddings(tables, self.unit, pool, keys)
        if not found.all():
            level = "frame" if self.unit == "image" else "region"
            raise ValueError(f"diversity {self.diversity!r} / dedup_threshold need {self.unit} embeddings: "
                             f"{int((~found).sum())} of {len(keys)} candidates have none; add "
                             f"'{level}' to scoring.embeddings")
        return x

    def _taken_embeddings(self, tables: ScoreTables, pool: PoolView) -> np.ndarray:
        keys = pool.keys[np.isin(pool.status, (LABELED, QUEUED))]
        region = split_keys(keys)[1]
        keys = keys[(region == -1) if self.unit == "image" else (region >= 0)]
        if len(keys) == 0:
            return np.zeros((0, 0), np.float32)
        x, found = read_embeddings(tables, self.unit, pool, keys)
        return x[found]

    def _order(self, x: np.ndarray, centres: np.ndarray, score: np.ndarray, n: int, seed: int):
        rank = np.arange(len(x))   # the strategy's order is the score rank
        if self.diversity == "kcenter":
            order, gaps = kcenter_order(x, centres, rank)
            gap = gaps[np.argsort(order)]   # per row: its distance to the centres when picked
            return order, [f"kcenter d={g:.3f}" if np.isfinite(g) else "kcenter first" for g in gap], None
        if self.diversity in ("kmeans", "cluster_budget"):
            k = n if self.diversity == "kmeans" else self.n_clusters
            labels = _kmeans(x, k, seed)
            size = np.bincount(labels)
            if self.diversity == "kmeans":
                budgets = np.minimum(1, size)
            else:
                usable = np.all(np.isfinite(score)) and np.all(score >= 0) and score.sum() > 0
                weight = (np.ones(len(x)) if self.cluster_mass == "size"
                          else score if usable else 1.0 / (1.0 + rank))
                mass = np.bincount(labels, weights=weight, minlength=len(size))
                budgets = cluster_budgets(mass, size, n)
            notes = [f"{self.diversity} cluster {c}" for c in labels]
            return cluster_order(labels, rank, budgets), notes, labels.astype(np.int32)
        return rank, [f"rank {i}" for i in rank], None

    def _pick(self, cand: Query, tables: ScoreTables, pool: PoolView, n: int, seed: int,
              base_caps: WindowCap | None = None, exhausted: bool = False):
        if len(cand) == 0:
            return np.zeros(0, np.int64), [], np.zeros(0, np.int32), {}
        x = centres = None
        if self.needs_embeddings:
            x = self._embeddings(tables, pool, self._keys(cand, pool))
            centres = self._taken_embeddings(tables, pool)
            if centres.shape[1] != x.shape[1]:
                centres = np.zeros((0, x.shape[1]), np.float32)
        order, notes, labels = self._order(x if x is not None else np.zeros((len(cand), 0)),
                                           centres if centres is not None else np.zeros((0, 0)),
                                           np.asarray(cand.score, np.float64), n, seed)
        caps = base_caps.fresh() if base_caps is not None else None
        near = centres if (self.dedup_threshold is not None and centres is not None) else None
        kept, capped, dup = [], [], 0
        for i in order:
            if len(kept) == n:
                break
            if self._duplicate(x, near, kept, i):
                dup += 1
                continue
            if caps is not None:
                window = caps.window(str(cand.frame_id[i]))
                if not caps.allows(window):
                    capped.append(int(i))
                    continue
                caps.take(window)
            kept.append(int(i))
        skipped = {"skipped_duplicates": dup, "skipped_sequence": len(capped)}
        if caps is not None:
            if self.per_sequence == PROPORTIONAL:   # a share, not a limit: fill B when it can
                before = len(kept)
                for i in capped if exhausted else []:
                    if len(kept) == n:
                        break
                    if not self._duplicate(x, near, kept, i):
                        kept.append(i)
                skipped["sequence_cap_relaxed"] = len(kept) - before
        kept = np.asarray(kept, np.int64)
        cluster = labels[kept] if labels is not None else cand.cluster[kept]
        return kept, [notes[i] for i in kept], cluster, skipped

    def _duplicate(self, x: np.ndarray | None, near: np.ndarray | None, kept: list, i: int) -> bool:
        """Whether candidate row i is above ``dedup_threshold`` to a kept or a taken unit."""
        if self.dedup_threshold is None:
            return False
        ref = np.concatenate([near, x[kept]]) if kept else near
        return bool(len(ref)) and float((ref @ x[i]).max()) > self.dedup_threshold
