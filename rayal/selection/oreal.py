"""OREAL (papers/oreal.txt): class-budgeted one-vs-rest-entropy selection of regions.

Per class c, ``ovr_max[c]`` (regions table) is the max over a region's pixels of the
one-vs-rest entropy ``H_c = -p_c log p_c - (1 - p_c) log(1 - p_c)`` (nats). With ``n_c``
the labelled units whose dominant ground-truth class is c (:meth:`PoolView.class_counts`)
and Q the budget in units, the class budget ``delta`` maximises ``min_c n_c + delta_c``
subject to ``sum delta = Q`` (:func:`class_budget`). Classes are served in increasing
``n_c + delta_c`` (ties: lowest id); class c takes its ``delta_c`` selectable units of
highest ``ovr_max[c]`` (ties: frame_id, then region_id, ascending; NaN scores are never
taken); a unit already taken this round (or labelled / queued before) is skipped and the next
best one is used. With fewer selectable units than Q the query is shorter than Q.

Scale: the regions table is streamed (:meth:`ScoreTables.iter_batches`) and never
materialised. Units that are not selectable are dropped per batch, then each class keeps
an exact bounded top-Q candidate set (Q is enough: classes served before c take at most
``Q - delta_c`` units, so at least ``delta_c`` of c's top Q are still free). Memory is
O(batch rows x C + C x Q) whatever the table size.

The streaming helpers here (:class:`TopK`, :func:`fixed_list_rows`)
are shared with :mod:`rayal.selection.madbal`.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.core.units import REGION_UNITS
from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy, unit_keys
from rayal.selection.registry import register_strategy

UNITS = REGION_UNITS   # live view of the unit registry


def class_budget(n_c, Q: int) -> np.ndarray:
    """Water-filling class budget of OREAL (Eq. 3).

    n_c: (C,) non-negative labelled-unit counts per class; Q: units to add.
    Returns (C,) int64 ``delta`` with ``delta.sum() == Q`` maximising ``min_c n_c + delta_c``,
    equal to the iterative rule "+1 to the class with the smallest ``n_c + delta_c``, ties to
    the lowest class id", in O(C log C): the water level L is the largest value with
    ``sum_c max(0, L - n_c) <= Q``; every class below L is raised to L and the remaining
    ``r < #{c: n_c <= L}`` units go one each to the lowest ids among the classes at L.
    """
    n = np.asarray(n_c, dtype=np.int64)
    Q = int(Q)
    if n.ndim != 1:
        raise ValueError(f"class_budget: n_c must be 1-D, got shape {n.shape}")
    if Q < 0:
        raise ValueError(f"class_budget: Q must be >= 0, got {Q}")
    if n.size and n.min() < 0:
        raise ValueError("class_budget: n_c must be >= 0")
    if n.size == 0:
        if Q:
            raise ValueError("class_budget: Q > 0 needs at least one class")
        return np.zeros(0, np.int64)
    s = np.sort(n)
    prefix = np.cumsum(s)
    # cost[k-1] = units needed to raise the k smallest classes to s[k-1] (non-decreasing)
    cost = np.arange(1, n.size + 1, dtype=np.int64) * s - prefix
    k = int(np.searchsorted(cost, Q, side="right"))  # >= 1 since cost[0] == 0
    level = (Q + int(prefix[k - 1])) // k
    delta = np.maximum(level - n, 0)
    rest = Q - int(delta.sum())
    delta[np.flatnonzero(n <= level)[:rest]] += 1
    return delta


def fixed_list_rows(column: pa.Array | pa.ChunkedArray, mask: np.ndarray) -> np.ndarray:
    """fixed_size_list<T>[D] column (N rows), (N,) bool mask -> (mask.sum(), D) numpy array.

    Rows must be valid (non-null) where ``mask`` is set."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.list_size
    picked = column.filter(pa.array(mask))
    if picked.null_count:
        raise ValueError("fixed_list_rows: null rows under the mask")
    return picked.flatten().to_numpy(zero_copy_only=False).reshape(len(picked), width)


def top_order(score: np.ndarray, rank: np.ndarray, region_id: np.ndarray, k: int) -> np.ndarray:
    """Indices of the exact top-k rows by (score desc, frame rank asc, region id asc), in that order.

    score: (N,) float (NaN must already be replaced); rank, region_id: (N,) int.
    O(N) selection with ``np.argpartition`` plus a sort of the k winners (and of the ties at
    the k-th score, so the result does not depend on row order)."""
    n = len(score)
    if k <= 0 or n == 0:
        return np.zeros(0, np.int64)
    if n > k:
        kth = score[np.argpartition(-score, k - 1)[:k]].min()
        above = np.flatnonzero(score > kth)
        ties = np.flatnonzero(score == kth)
        ties = ties[np.lexsort((region_id[ties], rank[ties]))[:k - len(above)]]
        idx = np.concatenate([above, ties])
    else:
        idx = np.arange(n)
    return idx[np.lexsort((region_id[idx], rank[idx], -score[idx]))]


class TopK:
    """Streamed exact top-k distinct units by (score desc, frame_id asc, region_id asc).

    A unit offered twice (duplicate rows) is held once, with its best row.
    Holds at most k rows: score (float64), frame index (into the pool) and region id.
    ``frame_rank`` (F,) is :attr:`rayal.selection.base.FrameLookup.rank`."""

    def __init__(self, k: int, frame_rank: np.ndarray):
        self.k = int(k)
        self.frame_rank = frame_rank
        self.score = np.zeros(0, np.float64)
        self.frame_index = np.zeros(0, np.int64)
        self.region_id = np.zeros(0, np.int64)

    def push(self, score: np.ndarray, frame_index: np.ndarray, region_id: np.ndarray) -> None:
        """Offer (N,) rows; only those that can still enter the top-k are kept."""
        if self.k == 0 or len(score) == 0:
            return
        score = np.asarray(score, np.float64)
        if len(self.score) == self.k:  # full: anything below the k-th score cannot enter
            keep = score >= self.score[-1]
            if not keep.any():
                return
            score, frame_index, region_id = score[keep], frame_index[keep], region_id[keep]
        s = np.concatenate([self.score, score])
        f = np.concatenate([self.frame_index, np.asarray(frame_index, np.int64)])
        r = np.concatenate([self.region_id, np.asarray(region_id, np.int64)])
        rank = self.frame_rank[f]
        idx = top_order(s, rank, r, self.k)
        if len(np.unique(unit_keys(f[idx], r[idx]))) < len(idx):  # duplicate rows of one unit
            full = top_order(s, rank, r, len(s))  # rare: keep each unit's best row, refill
            first = np.unique(unit_keys(f[full], r[full]), return_index=True)[1]
            idx = full[np.sort(first)][:self.k]
        self.score, self.frame_index, self.region_id = s[idx], f[idx], r[idx]


def selectable_rows(pool: PoolView, lookup, batch: pa.RecordBatch):
    """-> (frame_index (N,) int64, region_id (N,) int64, ok (N,) bool) for a batch with
    ``frame_id`` and ``region_id``: ok = the unit is selectable (see :meth:`PoolView.selectable`)."""
    frame_index = lookup.index(batch.column("frame_id"))
    region = batch.column("region_id")
    ok = frame_index >= 0
    if region.null_count:
        ok &= region.is_valid().to_numpy(zero_copy_only=False)
        region = pc.fill_null(region, 0)
    region_id = region.to_numpy(zero_copy_only=False).astype(np.int64)
    ok &= region_id >= 0  # region strategies never pick whole images
    if ok.any():
        ok[ok] = pool.selectable(frame_index[ok], region_id[ok])
    return frame_index, region_id, ok


def units_budget(budget: Budget, name: str) -> int:
    if budget.units is None:
        raise ValueError(f"{name}: the budget must be given in units (budget.units)")
    return int(budget.units)


def check_common(unit: str, batch_size: int) -> None:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@register_strategy("oreal")
class OREAL(Strategy):
    """OREAL over the regions table of one unit kind.

    unit: ``"superpixel"`` (default) or ``"patch"``.
    num_classes: C; inferred from the width of ``ovr_max`` when None (a given value must match).
    batch_size: rows per streamed batch of the regions table.
    """

    level = "region"
    units = "region"

    def __init__(self, unit: str = "superpixel", num_classes: int | None = None,
                 batch_size: int = 1 << 20):
        check_common(unit, batch_size)
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.unit = unit
        self.num_classes = None if num_classes is None else int(num_classes)
        self.batch_size = int(batch_size)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        """Deterministic (``seed`` unused). extras: class_counts (n), class_budget (delta)."""
        Q = units_budget(budget, "oreal")
        if "ovr_max" not in tables.columns("regions"):
            raise ValueError("oreal needs the regions column 'ovr_max' (score with ovr enabled)")
        if Q == 0:
            return Query.empty()
        lookup = pool.lookup
        C, n, delta, tops = None, None, None, None
        batches = tables.iter_batches("regions", columns=["frame_id", "region_id", "ovr_max"],
                                      filter=pc.field("unit") == self.unit,
                                      batch_size=self.batch_size)
        for batch in batches:
            column = batch.column("ovr_max")
            if C is None:
                C = column.type.list_size
                if self.num_classes is not None and self.num_classes != C:
                    raise ValueError(f"num_classes={self.num_classes} but ovr_max has {C} classes")
                n = pool.class_counts(C)
                delta = class_budget(n, Q)
                tops = [TopK(Q if d > 0 else 0, lookup.rank) for d in delta]
            frame_index, region_id, ok = selectable_rows(pool, lookup, batch)
            if column.null_count:
                ok &= column.is_valid().to_numpy(zero_copy_only=False)
            if not ok.any():
                continue
            ovr = fixed_list_rows(column, ok)  # (m, C) float32
            ovr = np.where(np.isnan(ovr), -np.inf, ovr)  # NaN: ranks last, never served
            fi, rid = frame_index[ok], region_id[ok]
            for c in np.flatnonzero(delta):
                tops[c].push(ovr[:, c], fi, rid)
        if C is None:
            return Query.empty()
        return self._serve(pool, n, delta, tops)

    def _serve(self, pool: PoolView, n: np.ndarray, delta: np.ndarray, tops: list[TopK]) -> Query:
        """Serve classes in increasing n_c + delta_c (ties: lowest id), skipping taken units."""
        order = np.lexsort((np.arange(len(n)), n + delta))
        taken = np.zeros(0, np.int64)
        picks = []  # (class, frame_index, region_id, score) per class
        for c in order:
            if delta[c] == 0:
                continue
            top = tops[c]
            keys = unit_keys(top.frame_index, top.region_id)
            # TopK units are distinct; a NaN score (held as -inf) is never selected
            free = np.flatnonzero(~np.isin(keys, taken) & (top.score > -np.inf))[:delta[c]]
            taken = np.concatenate([taken, keys[free]])
            picks.append((int(c), top.frame_index[free], top.region_id[free], top.score[free]))
        cls = np.concatenate([np.full(len(p[1]), p[0], np.int16) for p in picks])
        fi = np.concatenate([p[1] for p in picks]).astype(np.int64)
        rid = np.concatenate([p[2] for p in picks])
        score = np.concatenate([p[3] for p in picks])
        frame_id = pool.frame_ids.take(pa.array(fi, pa.int64())).to_numpy(zero_copy_only=False)
        reason = np.array([f"oreal class={c} ovr={s:.2f}" for c, s in zip(cls, score)], dtype=object)
        return Query(frame_id=np.asarray(frame_id, dtype=object),
                     unit=np.full(len(fi), self.unit, dtype=object),
                     region_id=rid.astype(np.int32), score=score, reason=reason, class_id=cls,
                     extras={"class_counts": n.tolist(), "class_budget": delta.tolist()})
