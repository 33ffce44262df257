"""MEAL and MEAL-FT: entropy candidates, UMAP to 2-D, k-means++ seeding (numpy / umap-learn).

Manifold Embedding-based Active Learning (papers/meal.txt, Algorithm 1), as
DESIGN.md specifies it:

1. patch score = mean pixel entropy (``entropy_mean`` of the regions table);
   the ``n_candidates`` (N_I, 200) highest-scoring selectable patches are the
   candidates (ranked by :func:`rayal.selection.common.rank_top`: ties by
   frame_id, then region_id);
2. patch feature = the deepest encoder map average-pooled over the patch (the
   ``embeddings`` table, same unit); a UMAP maps features to 2-D. **MEAL** fits
   it once on (a seeded uniform sample of ``umap_sample`` = 20,000 rows of) all
   patches of the pool and transforms the candidates; **MEAL-FT** fits it on the candidates
   each round (fit-transform);
3. k-means++ seeding over the candidates' 2-D points picks ``N = budget`` real
   patches: the first is the highest-entropy candidate, every next one is drawn
   with probability proportional to its squared distance to the nearest pick
   (D^2 sampling, ``np.random.default_rng(seed)``). Picks are distinct; the
   query is in pick order (``Query.cluster`` = pick index).

If there are at most N candidates they are all returned (no UMAP). Candidates
without an embedding row are dropped (counted in ``extras["missing_embeddings"]``).

Fitted once (MEAL): the paper fits Phi before active learning starts, on the features of the
initial model, and maps every later round's candidate features through it. ``manifold_from``
names the score directory whose embeddings the UMAP is fitted on (``rayal run`` passes its
round-0 scores, made by the initial model) and ``umap_seed`` its seed (``rayal run``: the run's
seed), so every round uses the same map; without them the UMAP is fitted on the current
round's tables with the selection seed.

Reducer cache (MEAL): the fitted UMAP is kept on the strategy instance, keyed
by the identity of the embeddings source (the same ``pa.Table`` object, or the
same path/URI string) plus seed, unit, ``umap_sample`` and ``n_neighbors``; a
later ``select`` with the same key only transforms. A fresh strategy instance
refits; the pipeline keeps one instance per run. The fit set is the pool at the
time of the fit (labelled and unlabelled patches alike, as in the paper).

Cost: UMAP (numba) compiles its kernels on first use in a process (about a
minute on 2 busy cores); :func:`meal_benchmark` reports that warm-up apart.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy, unit_keys
from rayal.selection.common import (REGION_UNITS, check_choice, check_range, load_units,
                                    query_from_rows, rank_top, unit_budget)
from rayal.selection.embeddings import embedding_matrix
from rayal.selection.registry import register_strategy

SCORE_COLUMN = "entropy_mean"
EMBEDDING_BATCH = 1 << 14
# rows of the pool the MEAL UMAP is fitted on. A seeded UMAP runs single-threaded:
# measured on 2 shared cores (1280-d float16), fitting 100k rows took 127 s, 20k rows 15-18 s
# (meal_benchmark: 100k pool, 20k sample -> ~16 s per select after numba's one-off warm-up).
UMAP_SAMPLE = 20_000


# MEAL UMAPs fitted on a named score directory (``manifold_from``), kept for the process: every
# round of a run maps through the same Phi, and rebuilding the strategy each round would refit
# it (~25 s on 6k patches on 2 cores). Key: (manifold_from, seed, unit, umap_sample, n_neighbors).
_MANIFOLDS: dict[tuple, tuple[object, int]] = {}
_MANIFOLDS_KEPT = 4


def sample_pool_embeddings(tables: ScoreTables, pool: PoolView, unit: str, sample: int, seed: int,
                           batch_size: int = EMBEDDING_BATCH) -> np.ndarray:
    """(m, D) float32 embeddings of up to ``sample`` rows of ``unit`` whose frame is in the pool.

    One streaming pass: every row gets a seeded uniform key and the ``sample``
    smallest keys are kept (a uniform sample without replacement), in table order.
    """
    rng = np.random.default_rng([seed, 1])
    kept_keys, kept_pos = np.zeros(0), np.zeros(0, np.int64)
    kept_x: np.ndarray | None = None
    cutoff, offset = np.inf, 0
    for batch in tables.iter_batches("embeddings", columns=["frame_id", "embedding"],
                                     filter=pc.field("unit") == unit, batch_size=batch_size):
        n = batch.num_rows
        keys = rng.random(n)
        ok = (pool.frame_index(batch.column("frame_id")) >= 0) & (keys < cutoff)
        ok &= pc.is_valid(batch.column("embedding")).to_numpy(zero_copy_only=False)
        idx = np.flatnonzero(ok)
        if len(idx):
            x = embedding_matrix(pc.take(batch.column("embedding"), pa.array(idx)))
            kept_x = x if kept_x is None else np.concatenate([kept_x, x])
            kept_keys = np.concatenate([kept_keys, keys[idx]])
            kept_pos = np.concatenate([kept_pos, offset + idx])
            if len(kept_keys) > sample:
                sel = np.argpartition(kept_keys, sample - 1)[:sample]
                kept_x, kept_keys, kept_pos = kept_x[sel], kept_keys[sel], kept_pos[sel]
                cutoff = kept_keys.max()
        offset += n
    if kept_x is None:
        return np.zeros((0, 0), np.float32)
    return kept_x[np.argsort(kept_pos)].astype(np.float32)


def candidate_embeddings(tables: ScoreTables, pool: PoolView, unit: str, frame_ids: np.ndarray,
                         keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw embeddings of a few units (``keys``; ``frame_ids`` their frames, used to filter the read)
    -> ((n_found, D) float32 in ``keys`` order, (n,) bool found). A unit stored twice takes its first row."""
    n = len(keys)
    frames = pa.array(np.unique(np.asarray(frame_ids, dtype=object)).tolist(), pa.string())
    filt = (pc.field("unit") == unit) & pc.field("frame_id").isin(frames)
    table = tables.read("embeddings", columns=["frame_id", "region_id", "embedding"], filter=filt)
    table = table.filter(pc.is_valid(table.column("embedding")))
    frame_index = pool.frame_index(table.column("frame_id"))
    in_pool = np.flatnonzero(frame_index >= 0)
    table_keys = unit_keys(frame_index[in_pool],
                           table.column("region_id").to_numpy(zero_copy_only=False)[in_pool])
    order = np.argsort(table_keys, kind="stable")
    pos = np.minimum(np.searchsorted(table_keys[order], keys), max(len(order) - 1, 0))
    found = table_keys[order][pos] == keys if len(order) else np.zeros(n, bool)
    if not found.any():
        return np.zeros((0, 0), np.float32), found
    rows = in_pool[order[pos[found]]]
    return embedding_matrix(pc.take(table.column("embedding"), pa.array(rows))), found


class LinearReducer:
    """Fallback 2-D map for fewer than 3 points (UMAP cannot fit them): centred SVD projection."""

    def fit(self, x: np.ndarray) -> "LinearReducer":
        x = np.asarray(x, np.float64)
        self.mean_ = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        self.components_ = np.zeros((2, x.shape[1]))
        self.components_[:min(2, len(vt))] = vt[:2]
        self.embedding_ = self.transform(x)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean_) @ self.components_.T


def fit_reducer(x: np.ndarray, seed: int, n_neighbors: int = 15):
    """Fit a seeded 2-D UMAP on ``x`` (n, D); ``reducer.embedding_`` holds the fitted points.

    ``n_neighbors = min(n_neighbors, n - 1)``; spectral init from 16 points up,
    random init below (the spectral solver fails on tiny graphs); fewer than 3
    points get a :class:`LinearReducer`. A seeded UMAP runs single-threaded.
    """
    n = len(x)
    if n < 3:
        return LinearReducer().fit(x)
    import umap

    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=max(2, min(n_neighbors, n - 1)),
                        init="spectral" if n >= 16 else "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer.fit(np.asarray(x, np.float32))
    return reducer


def transform(reducer, x: np.ndarray) -> np.ndarray:
    """(n, D) -> (n, 2) float64 with a fitted reducer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(reducer.transform(np.asarray(x, np.float32)), np.float64)


def d2_step(min_d2: np.ndarray, rng: np.random.Generator, available: np.ndarray | None = None) -> int:
    """One D^2 draw: index i with probability ``min_d2[i] / sum(min_d2)``.

    When every weight is 0 (the rest coincide with picks), a uniform draw among
    ``available`` (default: all) is made instead.
    """
    weights = np.asarray(min_d2, np.float64)
    cum = np.cumsum(weights)
    if len(cum) and cum[-1] > 0 and np.isfinite(cum[-1]):
        i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        if i >= len(weights) or weights[i] <= 0:  # float round-off at the top end
            i = int(np.flatnonzero(weights > 0)[-1])
        return i
    pool = np.flatnonzero(available) if available is not None else np.arange(len(weights))
    if len(pool) == 0:
        raise ValueError("d2_step: nothing left to draw")
    return int(pool[rng.integers(len(pool))])


def kmeanspp_seeding(points: np.ndarray, n: int, rng: np.random.Generator, first: int = 0) -> np.ndarray:
    """k-means++ seeding: ``first``, then D^2 draws -> (min(n, len(points)),) distinct indices in pick order."""
    points = np.asarray(points, np.float64)
    m = len(points)
    n = min(int(n), m)
    if n <= 0:
        return np.zeros(0, np.int64)
    picks = [int(first)]
    available = np.ones(m, bool)
    available[first] = False
    min_d2 = ((points - points[first]) ** 2).sum(axis=1)
    min_d2[~available] = 0.0
    while len(picks) < n:
        i = d2_step(min_d2, rng, available)
        picks.append(i)
        available[i] = False
        min_d2 = np.minimum(min_d2, ((points - points[i]) ** 2).sum(axis=1))
        min_d2[~available] = 0.0
    return np.asarray(picks, np.int64)


@register_strategy("meal", fine_tune=False)
@register_strategy("meal_ft", fine_tune=True)
class MEAL(Strategy):
    """MEAL (UMAP fitted on the pool, cached) or MEAL-FT (``fine_tune``: fitted on the candidates).

    Parameters: ``unit`` (patch | superpixel), ``n_candidates`` (N_I), ``umap_sample``
    (rows of the pool the MEAL UMAP is fitted on), ``n_neighbors`` (UMAP),
    ``fine_tune``, ``manifold_from`` (score directory the MEAL UMAP is fitted on; None: the
    current tables), ``umap_seed`` (None: the selection seed). Budgets are in units; a budget
    above N_I returns the N_I candidates.
    """

    needs_embeddings = True   # its score tables must hold this unit's embeddings
    level = "region"
    units = "region"

    @classmethod
    def round_params(cls, params: dict, context) -> dict:
        """MEAL: one UMAP for the run, fitted on the initial model's features (round 0's
        scores) with the run's seed; MEAL-FT refits on each round's candidates."""
        if params.get("fine_tune") or context.initial_scores is None:
            return {}
        return {"manifold_from": context.initial_scores(), "umap_seed": context.seed}

    def __init__(self, unit: str = "patch", n_candidates: int = 200, umap_sample: int = UMAP_SAMPLE,
                 n_neighbors: int = 15, fine_tune: bool = False, manifold_from: str | None = None,
                 umap_seed: int | None = None):
        check_choice("unit", unit, REGION_UNITS)
        check_range("n_candidates", n_candidates, 1, integer=True)
        check_range("umap_sample", umap_sample, 1, integer=True)
        check_range("n_neighbors", n_neighbors, 2, integer=True)
        if not isinstance(fine_tune, bool):
            raise ValueError(f"fine_tune must be a bool, got {fine_tune!r}")
        self.unit, self.n_candidates, self.umap_sample = unit, int(n_candidates), int(umap_sample)
        self.n_neighbors, self.fine_tune = int(n_neighbors), fine_tune
        if manifold_from is not None and not isinstance(manifold_from, str):
            raise ValueError(f"manifold_from must be a score directory path or URI, got {manifold_from!r}")
        if umap_seed is not None:
            check_range("umap_seed", umap_seed, 0, integer=True)
        self.manifold_from, self.umap_seed = manifold_from, umap_seed
        self._fit_source = None
        self._fit_key: tuple | None = None
        self.reducer = None
        self.fit_rows = 0

    def _pool_reducer(self, tables: ScoreTables, pool: PoolView, seed: int) -> tuple[object, float, bool]:
        """The cached pool-fitted UMAP, fitting it first when the key changed -> (reducer, seconds, reused)."""
        if self.manifold_from is not None:
            tables = ScoreTables.from_dir(self.manifold_from)
        seed = seed if self.umap_seed is None else self.umap_seed
        source = tables.embeddings
        key = (seed, self.unit, self.umap_sample, self.n_neighbors)
        same_source = (source is self._fit_source if isinstance(source, pa.Table)
                       else isinstance(self._fit_source, str) and source == self._fit_source)
        if self.reducer is not None and same_source and key == self._fit_key:
            return self.reducer, 0.0, True
        named = (self.manifold_from,) + key if self.manifold_from is not None else None
        if named in _MANIFOLDS:
            self.reducer, self.fit_rows = _MANIFOLDS[named]
            self._fit_source, self._fit_key = source, key
            return self.reducer, 0.0, True
        start = time.perf_counter()
        x = sample_pool_embeddings(tables, pool, self.unit, self.umap_sample, seed)
        if len(x) == 0:
            raise ValueError(f"meal: the embeddings table has no {self.unit} rows of pool frames "
                             "(score with scoring.embeddings: [region])")
        self.reducer = fit_reducer(x, seed, self.n_neighbors)
        self._fit_source, self._fit_key, self.fit_rows = source, key, len(x)
        if named is not None:
            while len(_MANIFOLDS) >= _MANIFOLDS_KEPT:
                _MANIFOLDS.pop(next(iter(_MANIFOLDS)))
            _MANIFOLDS[named] = (self.reducer, self.fit_rows)
        return self.reducer, time.perf_counter() - start, False

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        """Pick ``budget.units`` diverse high-entropy patches (see the module docstring)."""
        n = unit_budget(budget, self)
        tag = "meal_ft" if self.fine_tune else "meal"
        extras = {"umap_fit_seconds": 0.0, "umap_transform_seconds": 0.0, "kmeanspp_seconds": 0.0,
                  "candidates": 0, "missing_embeddings": 0,
                  "umap_fit_on": "candidates" if self.fine_tune else "pool",
                  "umap_fit_rows": 0, "umap_reused": False}
        if n == 0:
            query = Query.empty()
            query.extras.update(extras)
            return query
        rows = load_units(tables, self.unit, pool, [SCORE_COLUMN])
        entropy = rows.column(SCORE_COLUMN)
        cand = rank_top(rows, entropy, self.n_candidates)  # best first
        coords = np.full((len(cand), 2), np.nan)
        if len(cand) > n:
            keys, _ = rows.resolve(cand)
            frame_ids = pc.take(rows.frame_id, pa.array(cand)).to_numpy(zero_copy_only=False)
            x, found = candidate_embeddings(tables, pool, self.unit, frame_ids, keys)
            extras["missing_embeddings"] = int((~found).sum())
            if not found.any():
                raise ValueError(f"meal: no {self.unit} embeddings for the candidates "
                                 "(score with scoring.embeddings: [region])")
            cand = cand[found]
            coords = self._coords(tables, pool, x, seed, extras)
        extras["candidates"] = len(cand)
        start = time.perf_counter()
        if len(cand) > n:
            order = kmeanspp_seeding(coords, n, np.random.default_rng(seed), first=0)
        else:  # few candidates: all of them, best first
            order = np.arange(len(cand))
        extras["kmeanspp_seconds"] = time.perf_counter() - start
        scores = entropy[cand[order]]
        reasons = [f"{tag} entropy={v:.6g} umap=({x:.4g},{y:.4g})" if np.isfinite([x, y]).all()
                   else f"{tag} entropy={v:.6g} umap=none" for v, (x, y) in zip(scores, coords[order])]
        return query_from_rows(rows, cand[order], scores, reasons,
                               cluster=np.arange(len(order), dtype=np.int32), extras=extras)

    def _coords(self, tables: ScoreTables, pool: PoolView, x: np.ndarray, seed: int,
                extras: dict) -> np.ndarray:
        """(n, 2) UMAP coordinates of the candidates' embeddings ``x``; fills the timing extras."""
        if self.fine_tune:
            start = time.perf_counter()
            reducer = fit_reducer(x, seed, self.n_neighbors)
            extras["umap_fit_seconds"] = time.perf_counter() - start
            extras["umap_fit_rows"] = len(x)
            return np.asarray(reducer.embedding_, np.float64)
        reducer, seconds, reused = self._pool_reducer(tables, pool, seed)
        extras.update(umap_fit_seconds=seconds, umap_reused=reused, umap_fit_rows=self.fit_rows)
        start = time.perf_counter()
        coords = transform(reducer, x)
        extras["umap_transform_seconds"] = time.perf_counter() - start
        return coords


def synthetic_tables(n_embeddings: int, dim: int, seed: int = 0, patches_per_frame: int = 16,
                     n_clusters: int = 32) -> tuple[ScoreTables, PoolView]:
    """In-memory regions + embeddings tables of clustered float16 patch embeddings and random entropy."""
    rng = np.random.default_rng(seed)
    n_frames = math.ceil(n_embeddings / patches_per_frame)
    frame_names = np.array([f"frame{i:07d}" for i in range(n_frames)], dtype=object)
    frame_ids = pa.array(frame_names[np.arange(n_embeddings) // patches_per_frame].tolist(), pa.string())
    region_id = pa.array((np.arange(n_embeddings) % patches_per_frame).astype(np.int32))
    unit = pa.array(["patch"] * n_embeddings, pa.string())
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    emb = centers[rng.integers(0, n_clusters, n_embeddings)]
    emb += 0.3 * rng.standard_normal((n_embeddings, dim), dtype=np.float32)
    flat = pa.array(emb.astype(np.float16).ravel())
    regions = pa.table({"frame_id": frame_ids, "region_id": region_id, "unit": unit,
                        "pixel_count": pa.array(np.full(n_embeddings, 1024, np.int32)),
                        SCORE_COLUMN: pa.array((rng.random(n_embeddings) * np.log(11)).astype(np.float32))})
    embeddings = pa.table({"frame_id": frame_ids, "unit": unit, "region_id": region_id,
                           "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)})
    return ScoreTables(regions=regions, embeddings=embeddings), PoolView.fresh(frame_names.tolist())


def meal_benchmark(n_embeddings: int = 100_000, dim: int = 1280, n_candidates: int = 200,
                   budget: int = 32, seed: int = 0, umap_sample: int = UMAP_SAMPLE,
                   warmup: bool = True) -> dict:
    """Time one MEAL selection over in-memory tables of ``n_embeddings`` random clustered patches.

    ``warmup`` first runs MEAL on 5,000 tiny points so numba's one-off kernel
    compilation (``seconds_warmup``) is not counted in the steady-state numbers.
    Returns seconds_fit (sampling + UMAP fit), seconds_transform,
    seconds_kmeanspp, total (the whole ``select``), plus the sizes used.
    """
    seconds_warmup = 0.0
    if warmup:
        start = time.perf_counter()
        tiny, tiny_pool = synthetic_tables(5_000, 8, seed=seed + 1)
        MEAL(n_candidates=50).select(tiny, tiny_pool, Budget(units=4), seed)
        seconds_warmup = time.perf_counter() - start
    tables, pool = synthetic_tables(n_embeddings, dim, seed=seed)
    strategy = MEAL(n_candidates=n_candidates, umap_sample=umap_sample)
    start = time.perf_counter()
    query = strategy.select(tables, pool, Budget(units=budget), seed)
    total = time.perf_counter() - start
    extras = query.extras
    return {"seconds_fit": extras["umap_fit_seconds"], "seconds_transform": extras["umap_transform_seconds"],
            "seconds_kmeanspp": extras["kmeanspp_seconds"], "total": total,
            "seconds_warmup": seconds_warmup, "umap_fit_rows": extras["umap_fit_rows"],
            "n_embeddings": n_embeddings, "dim": dim, "selected": len(query)}
