"""Helpers shared by selection strategies (numpy / pyarrow only).

A *unit kind* is ``"image"`` (rows of the ``frames`` score table, ``region_id = -1``)
or ``"patch"`` / ``"superpixel"`` (rows of the ``regions`` table whose ``unit``
column matches). The embeddings table names image rows ``unit = "frame"``.

Typical use in a strategy::

    rows = load_units(tables, "image", pool, ["entropy_mean"])
    score = rows.column("entropy_mean")                 # (N,) float64, NaN for nulls
    picked = rank_top(rows, score, unit_budget(budget, self))
    return query_from_rows(rows, picked, score[picked], reasons)

Everything is vectorised over rows (10M-row frame tables are read as two columns
and ranked with ``np.partition``); only the selected units are touched one by one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.core.units import REGION_UNITS, UNITS, get_unit  # noqa: F401  (live registry views)
from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy, split_keys, unit_keys


# ---------------------------------------------------------------- parameters

def check_choice(param: str, value, choices: Sequence) -> None:
    """ValueError naming ``param`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{param} must be one of {list(choices)}, got {value!r}")


def check_column(name: str, value) -> None:
    """A parameter that names a score column must be a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a column name, got {value!r}")


def check_range(param: str, value, low: float | None = None, high: float | None = None,
                integer: bool = False) -> None:
    """ValueError naming ``param`` unless ``low <= value <= high`` (and an int if ``integer``)."""
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    ok = ok and not isinstance(value, bool) and value == value  # NaN fails
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bounds = f" in [{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{param} must be {kind}{bounds}, got {value!r}")


def level_of(unit: str) -> str:
    """Strategy level for a unit kind (unit registry): ``"image"`` or ``"region"``."""
    return get_unit(unit).level


def table_of(unit: str) -> str:
    """Score table holding the rows of a unit kind (unit registry): ``"frames"`` or ``"regions"``."""
    return get_unit(unit).table


def unit_budget(budget: Budget, strategy: Strategy) -> int:
    """Budget in units; a cost budget for a strategy without a cost model is an error
    (counting a unit as one click would silently change what the budget means)."""
    if budget.units is None:
        raise ValueError(f"strategy {strategy.name or type(strategy).__name__!r} counts its budget in "
                         f"units; got a cost budget ({budget.cost} clicks)")
    return int(budget.units)


def take_within_cost(cost_in_order: np.ndarray, limit: float) -> int:
    """How many of the ranked units fit: the longest prefix whose summed cost is <= ``limit``
    (greedy stops at the first unit that would overflow; it does not skip ahead)."""
    total = np.cumsum(np.asarray(cost_in_order, np.float64))
    return int(np.searchsorted(total, limit, side="right"))


# ---------------------------------------------------------------- score tables

def require_columns(tables: ScoreTables, table: str, columns: Sequence[str]) -> None:
    """ValueError naming the first missing column and the table."""
    have = tables.columns(table)
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"column {missing[0]!r} is missing from the {table!r} score table "
                         f"(columns: {', '.join(have)})")


def float_column(table: pa.Table, name: str) -> np.ndarray:
    """(N,) float64 copy of a numeric column; nulls become NaN."""
    col = pc.cast(table.column(name), pa.float64())
    return pc.fill_null(col, np.nan).to_numpy()


def resolve_units(pool: PoolView, frame_index: np.ndarray,
                  region_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, selectable) of units given by (n,) pool frame index (-1: not in pool) and region id;
    keys are -1 for units outside the pool (never selectable)."""
    in_pool = (frame_index >= 0) & (region_id >= -1)
    keys = np.full(len(frame_index), -1, np.int64)
    keys[in_pool] = unit_keys(frame_index[in_pool], region_id[in_pool])
    selectable = np.zeros(len(frame_index), bool)
    selectable[in_pool] = pool.selectable(frame_index[in_pool], region_id[in_pool])
    return keys, selectable


@dataclass
class UnitRows:
    """Rows of one unit kind read from a score table, (N,) row-aligned.

    frame_id: frame ids (string) as stored in the table.
    region_id: int64 region ids (-1 for images).
    Pool lookups are lazy: :meth:`resolve` maps a few rows (what top-B needs) cheaply;
    the properties ``frame_index`` (-1: not in pool), ``keys`` (unit keys, -1 outside the
    pool) and ``selectable`` (``PoolView.selectable``) resolve every row once and cache.
    """

    unit: str
    table: pa.Table
    frame_id: pa.ChunkedArray
    region_id: np.ndarray
    pool: PoolView
    _all: tuple | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.region_id)

    def _resolve_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._all is None:
            frame_index = self.pool.frame_index(self.frame_id)
            self._all = (frame_index, *resolve_units(self.pool, frame_index, self.region_id))
        return self._all

    @property
    def frame_index(self) -> np.ndarray:
        return self._resolve_all()[0]

    @property
    def keys(self) -> np.ndarray:
        return self._resolve_all()[1]

    @property
    def selectable(self) -> np.ndarray:
        return self._resolve_all()[2]

    def resolve(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keys, selectable) of the rows ``idx`` without resolving the whole table."""
        idx = np.asarray(idx, np.int64)
        if self._all is not None or len(idx) * 4 >= len(self):
            _, keys, selectable = self._resolve_all()
            return keys[idx], selectable[idx]
        frame_index = self.pool.frame_index(pc.take(self.frame_id, pa.array(idx)))
        return resolve_units(self.pool, frame_index, self.region_id[idx])

    def column(self, name: str) -> np.ndarray:
        """(N,) float64 values of a numeric column (NaN for nulls)."""
        return float_column(self.table, name)

    def has(self, name: str) -> bool:
        return name in self.table.column_names


def load_units(tables: ScoreTables, unit: str, pool: PoolView, columns: Sequence[str] = (),
               optional: Sequence[str] = ()) -> UnitRows:
    """Read only ``frame_id`` (+ ``region_id``) and ``columns`` for the rows of ``unit``.

    ``columns`` must exist (ValueError naming column and table); ``optional`` are read
    when present. Region rows are filtered to ``unit`` at read time.
    """
    check_choice("unit", unit, UNITS)
    name = table_of(unit)
    ids = ["frame_id"] if name == "frames" else ["frame_id", "region_id", "unit"]
    require_columns(tables, name, ids + list(columns))
    have = tables.columns(name)
    wanted = list(dict.fromkeys(ids[:2] + list(columns) + [c for c in optional if c in have]))
    filt = None if name == "frames" else pc.field("unit") == unit
    table = tables.read(name, columns=wanted, filter=filt)
    if name == "frames":
        region_id = np.full(table.num_rows, -1, np.int64)
    else:
        region_id = pc.fill_null(table.column("region_id"), -2).to_numpy().astype(np.int64)
    return UnitRows(unit, table, table.column("frame_id"), region_id, pool)


def scored_rows(tables: ScoreTables, unit: str, pool: PoolView,
                score: str) -> tuple[UnitRows, np.ndarray, np.ndarray]:
    """Rows of ``unit`` with their ``score`` column: (rows, phi (N,) float, usable (N,) bool =
    selectable with a non-NaN score)."""
    rows = load_units(tables, unit, pool, [score])
    phi = rows.column(score)
    return rows, phi, rows.selectable & ~np.isnan(phi)


# ---------------------------------------------------------------- ranking

def _sorted_by_score(rows: UnitRows, idx: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``idx`` ordered by score descending, then frame_id, region_id, row (a total order)."""
    if len(idx) == 0:
        return idx
    order = pa.table({
        "s": score[idx], "f": pc.take(rows.frame_id, pa.array(idx)),
        "r": rows.region_id[idx], "i": idx,
    }).sort_by([("s", "descending"), ("f", "ascending"), ("r", "ascending"), ("i", "ascending")])
    return order.column("i").to_numpy()


def rank_top(rows: UnitRows, score: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Row indices of the ``k`` best selectable units, best first (fewer if fewer exist).

    score: (N,) float, higher is better; NaN rows are never returned.
    eligible: optional (N,) bool further restricting the rows.
    Ties are broken by frame_id then region_id; a unit listed twice in the table is
    returned once (its best row). Selectability is resolved only for the best rows,
    widening while taken units leave the top short: an O(N) partition per round plus
    a sort of ~k rows (and the rows tied with the k-th score).
    """
    ok = ~np.isnan(score)
    valid = np.flatnonzero(ok if eligible is None else ok & eligible)
    if k <= 0 or len(valid) == 0:
        return np.zeros(0, np.int64)
    want = k
    while True:
        if want >= len(valid):
            cand = valid
        else:
            s = score[valid]
            kth = np.partition(s, len(s) - want)[len(s) - want]
            # everything tied with the want-th value competes on (frame_id, region_id)
            cand = valid[s >= kth]
        ranked = _sorted_by_score(rows, cand, score)
        keys, selectable = rows.resolve(ranked)
        ranked, keys = ranked[selectable], keys[selectable]
        _, first = np.unique(keys, return_index=True)
        unique = ranked[np.sort(first)]
        if len(unique) >= k or len(cand) == len(valid):
            return unique[:k]
        # taken or repeated units ate slots; the ranking is a total order, so widen and redo
        want = min(len(valid), 2 * want + (k - len(unique)))


def minmax(values: np.ndarray, constant: float = 0.0) -> np.ndarray:
    """Scale to [0, 1] by min-max over the finite entries (non-finite stay NaN);
    a constant input maps to ``constant``."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.full_like(values, np.nan)
    low, high = values[finite].min(), values[finite].max()
    if high <= low:
        return np.where(finite, constant, np.nan)
    return np.where(finite, (values - low) / (high - low), np.nan)


# ---------------------------------------------------------------- queries

def query_from_rows(rows: UnitRows, idx: np.ndarray, score: np.ndarray, reason: Sequence[str],
                    cost: np.ndarray | None = None, cluster: np.ndarray | None = None,
                    class_id: np.ndarray | None = None, extras: dict | None = None) -> Query:
    """Query of the rows ``idx`` (in that order); ``score`` / ``reason`` / ... are per picked row."""
    idx = np.asarray(idx, np.int64)
    frame_id = pc.take(rows.frame_id, pa.array(idx)).to_numpy(zero_copy_only=False).astype(object)
    return Query(frame_id=frame_id, unit=np.full(len(idx), rows.unit, object),
                 region_id=rows.region_id[idx].astype(np.int32),
                 score=np.asarray(score, np.float64), reason=np.asarray(list(reason), object),
                 class_id=class_id, cluster=cluster,
                 cost=None if cost is None else np.asarray(cost, np.float32), extras=extras or {})


def query_from_keys(pool: PoolView, unit: str, keys: np.ndarray, score: np.ndarray,
                    reason: Sequence[str], extras: dict | None = None, **columns) -> Query:
    """Query of unit keys (in that order); frame ids come from ``pool.frame_ids``."""
    frame_index, region_id = split_keys(np.asarray(keys, np.int64))
    frame_id = pc.take(pool.frame_ids, pa.array(frame_index)).to_numpy(zero_copy_only=False)
    return Query(frame_id=frame_id.astype(object), unit=np.full(len(keys), unit, object),
                 region_id=region_id.astype(np.int32), score=np.asarray(score, np.float64),
                 reason=np.asarray(list(reason), object), extras=extras or {}, **columns)

