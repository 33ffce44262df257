"""Embedding helpers shared by the strategies that pick in embedding space (core-set,
TypiClust, ProbCover, density, the diversity stage; numpy / pyarrow only).

The ``embeddings`` score table holds one row per frame (``unit = "frame"``) or region, with a
fixed-size list column ``embedding``. Everything here streams it in batches and keys rows by
unit key (:func:`rayal.selection.base.unit_keys`), so memory is the selected rows only.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.core.units import UNITS, get_unit
from rayal.selection.base import Budget, PoolView, ScoreTables, Strategy, split_keys, unit_keys
from rayal.selection.common import check_choice, level_of, require_columns, unit_budget


def embedding_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(N,) fixed-size (or equal-length) list column -> (N, D) float32."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    if column.null_count:
        raise ValueError(f"embedding column has {column.null_count} null rows")
    n = len(column)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if n == 0:
        return values.reshape(0, 0)
    if values.size % n:
        raise ValueError("embedding rows have different lengths")
    matrix = values.reshape(n, -1)
    if not pa.types.is_fixed_size_list(column.type):
        lengths = pc.list_value_length(column).to_numpy()
        if np.any(lengths != matrix.shape[1]):
            raise ValueError("embedding rows have different lengths")
    return matrix


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, in place (float32); all-zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    x /= np.maximum(norms, 1e-12)[:, None]
    return x


def _embedding_filter(unit: str):
    check_choice("unit", unit, UNITS)
    return pc.field("unit") == get_unit(unit).embedding_unit


def _batch_keys(batch, unit: str, pool: PoolView) -> tuple[np.ndarray, np.ndarray]:
    """(in_pool mask, keys of the in-pool rows) for a batch of embeddings rows."""
    frame_index = pool.frame_index(batch.column("frame_id"))
    if level_of(unit) == "image":
        region_id = np.full(len(frame_index), -1, np.int64)
    else:
        region_id = pc.fill_null(batch.column("region_id"), -2).to_numpy().astype(np.int64)
    ok = (frame_index >= 0) & (region_id >= -1)
    return ok, unit_keys(frame_index[ok], region_id[ok])


def embedding_keys(tables: ScoreTables, unit: str, pool: PoolView) -> np.ndarray:
    """Sorted unique keys of the pool units that have an embedding (ids read only)."""
    require_columns(tables, "embeddings", ["frame_id", "unit", "region_id", "embedding"])
    table = tables.read("embeddings", columns=["frame_id", "region_id"], filter=_embedding_filter(unit))
    return np.unique(_batch_keys(table, unit, pool)[1])


def iter_embeddings(tables: ScoreTables, unit: str, pool: PoolView,
                    batch_size: int = 1 << 13) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(keys (n,), X (n, D) float32 L2-normalised)`` for pool units of ``unit``."""
    require_columns(tables, "embeddings", ["frame_id", "unit", "region_id", "embedding"])
    for batch in tables.iter_batches("embeddings", columns=["frame_id", "region_id", "embedding"],
                                     filter=_embedding_filter(unit), batch_size=batch_size):
        ok, keys = _batch_keys(batch, unit, pool)
        if len(keys):
            x = embedding_matrix(batch.column("embedding").filter(pa.array(ok)))
            yield keys, l2_normalise(x)


def read_embeddings(tables: ScoreTables, unit: str, pool: PoolView,
                    keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of the given unit keys: ``(X (len(keys), D) float32 unit-norm, found (len(keys),) bool)``.

    Streams the table, so memory is ``len(keys) x D`` plus one batch. Missing keys get
    zero rows and ``found = False``; a key stored twice takes its last row.
    """
    keys = np.asarray(keys, np.int64)
    want = np.unique(keys)
    out, hit_any = None, np.zeros(len(want), bool)
    for batch_keys, x in iter_embeddings(tables, unit, pool):
        pos = np.minimum(np.searchsorted(want, batch_keys), max(len(want) - 1, 0))
        hit = (want[pos] == batch_keys) if len(want) else np.zeros(len(batch_keys), bool)
        if out is None:
            out = np.zeros((len(want), x.shape[1]), np.float32)
        out[pos[hit]] = x[hit]
        hit_any[pos[hit]] = True
    if out is None:
        return np.zeros((len(keys), 0), np.float32), np.zeros(len(keys), bool)
    if len(want) == len(keys) and np.array_equal(want, keys):
        return out, hit_any  # already sorted unique: no (N, D) copy
    where = np.searchsorted(want, keys)
    return out[where], hit_any[where]


def embedding_units(tables: ScoreTables, unit: str, pool: PoolView
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pool units of ``unit`` that have an embedding: (sorted unique keys, (N,) bool
    selectable, (N,) bool taken, see :func:`taken_units`)."""
    keys = embedding_keys(tables, unit, pool)
    return keys, pool.selectable(*split_keys(keys)), taken_units(pool, keys)


def taken_units(pool: PoolView, keys: np.ndarray) -> np.ndarray:
    """(N,) bool: the unit, or its whole frame, is labelled or queued."""
    from rayal.selection.base import LABELED, QUEUED

    frame_index, _ = split_keys(keys)
    taken = np.isin(pool.status_of(keys), (LABELED, QUEUED))
    whole = pool.status_of(unit_keys(frame_index, np.full(len(keys), -1)))
    return taken | np.isin(whole, (LABELED, QUEUED))


def sample_keys(keys: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Seeded uniform sample (without replacement) of ``size`` keys, sorted; all if fewer."""
    keys = np.unique(np.asarray(keys, np.int64))
    if len(keys) <= size:
        return keys
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(keys, size=size, replace=False))


def representative_points(strategy: Strategy, tables: ScoreTables, pool: PoolView, budget: Budget,
                          seed: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
    """(budget in units, then :func:`embedded_points`) of a representative strategy with ``unit``
    and ``max_points`` attributes; None when the budget is 0 or no unit is selectable."""
    n = unit_budget(budget, strategy)
    points = embedded_points(tables, strategy.unit, pool, strategy.max_points, seed) if n else None
    return None if points is None else (n, *points)


def embedded_points(tables: ScoreTables, unit: str, pool: PoolView, max_points: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The points of a representative pick (TypiClust, ProbCover): every taken unit with an
    embedding plus the selectable ones (a seeded sample of ``max_points`` beyond that).

    Returns (sorted keys (N,), X (N, D) float32 unit-norm, (N,) bool taken), or None when no
    unit is selectable. ValueError naming the first unit whose embedding is not finite."""
    keys, free, taken = embedding_units(tables, unit, pool)
    free_keys = keys[free]
    if len(free_keys) == 0:
        return None
    if len(free_keys) > max_points:
        rng = np.random.default_rng(seed)
        free_keys = np.sort(rng.choice(free_keys, max_points, replace=False))
    use = np.sort(np.concatenate([keys[taken], free_keys]))
    x, _ = read_embeddings(tables, unit, pool, use)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        frame_index, region_id = split_keys(use[bad[:1]])
        raise ValueError(f"{len(bad)} {unit} embedding(s) hold NaN or inf, the first of frame "
                         f"{pool.frame_ids[int(frame_index[0])]} region {int(region_id[0])}: "
                         f"rescore them (scoring.embeddings)")
    return use, x, np.isin(use, keys[taken])
