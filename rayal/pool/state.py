"""Pool state: one row per touched unit, in numpy / Arrow columns (no Python object per item).

A :class:`PoolState` is immutable. Every mutation is split in two steps so the
coordinator can journal it: ``plan_*`` validates a request against the current
state and returns a :class:`Record` of its *effect* (or None when it would
change nothing), and :meth:`PoolState.apply` turns a record into a new state,
deterministically. Replaying the same records on the same snapshot therefore
rebuilds the same state, and the convenience methods (``register``,
``select``, ...) are just ``apply(plan(...))``.

Layout: frames are an Arrow table ``frame_id, uri, mask_uri`` whose row number
is the frame's dense index. Units live in sorted int64 ``keys``
(:func:`rayal.selection.base.unit_keys`) with parallel columns; a unit that
was never touched has no row and is unlabelled. About 33 bytes per touched
unit, plus ``4 * num_classes`` bytes per labelled unit for its pixel counts
(a separate dense ``(n_labelled, C)`` array indexed by ``label_row``).
In region pools (patch / superpixel) a row with ``region_id = -1`` is a
frame-level marker (a quarantined frame), which blocks all its regions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.core.units import UNITS as _UNITS
from rayal.pool.digest import digest_state
from rayal.pool.labels import FRAME_SCHEMA, label_counts_array, normalize_frames, normalize_labels
from rayal.selection.base import (LABELED, QUARANTINED, QUEUED, STATUS_NAMES, UNLABELED, Budget,
                                  PoolView, ScoreTables, split_keys, unit_keys)

UNITS = _UNITS   # live view of the unit registry (rayal.core.units)
# unit columns: dtype and the value of a row that was just created
UNIT_COLUMNS = {"status": (np.int8, UNLABELED), "round": (np.int32, -1), "owner": (np.int16, -1),
                "expiry": (np.float64, np.nan), "dominant": (np.int16, -1),
                "reason": (np.int32, -1), "label_row": (np.int32, -1)}


@dataclass(frozen=True)
class Record:
    """The effect of one mutation: ``op`` + JSON-able ``header`` + optional Arrow ``body``."""

    op: str
    header: dict
    body: pa.Table | None = None


def apply_record(state: "PoolState | None", record: Record, seq: int | None = None) -> "PoolState":
    """Replay step: a ``create`` record starts the state, every other record applies to it."""
    if state is None:
        if record.op != "create":
            raise ValueError(f"the pool journal must start with a 'create' record, not {record.op!r}")
        return PoolState(unit=record.header["unit"], seq=seq or 0)
    return state.apply(record, seq)


@dataclass(frozen=True, eq=False)
class PoolState:
    """Immutable pool state; see the module docstring for the layout."""

    unit: str
    frames: pa.Table = field(default_factory=FRAME_SCHEMA.empty_table)
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cols: dict = field(default_factory=lambda: {n: np.zeros(0, d) for n, (d, _) in UNIT_COLUMNS.items()})
    label_counts: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))
    num_classes: int | None = None
    owners: tuple = ()
    reasons: tuple = ()
    queries: dict = field(default_factory=dict)    # round -> query table (QUERY_SCHEMA + key)
    requests: dict = field(default_factory=dict)   # round -> select header (strategy, budget, ...)
    seq: int = 0                                   # last journal record applied

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"pool unit must be one of {UNITS}, got {self.unit!r}")

    # --- lookups -----------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.frames.num_rows

    @cached_property
    def frame_ids(self) -> pa.Array:
        return self.frames.column("frame_id").combine_chunks()

    def frame_index(self, frame_ids) -> np.ndarray:
        """(N,) int64 dense index of each frame id; -1 for frames not registered."""
        return self.view().frame_index(frame_ids)  # the view caches a sorted id lookup

    def rows_of(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, found) of each unit key in :attr:`keys`."""
        keys = np.asarray(keys, np.int64)
        pos = np.searchsorted(self.keys, keys)
        found = np.zeros(len(keys), bool)
        inside = pos < len(self.keys)
        found[inside] = self.keys[pos[inside]] == keys[inside]
        return pos, found

    def column_of(self, name: str, keys: np.ndarray) -> np.ndarray:
        """Unit column ``name`` for each key (the fresh-row default where there is no row)."""
        dtype, default = UNIT_COLUMNS[name]
        pos, found = self.rows_of(keys)
        out = np.full(len(pos), default, dtype)
        out[found] = self.cols[name][pos[found]]
        return out

    def view(self) -> PoolView:
        """Read-only :class:`PoolView` for strategies (shares the arrays, no copy)."""
        return self._view

    @cached_property
    def _view(self) -> PoolView:
        # the state never changes in place, so one view (and its frame lookup) serves it
        return PoolView(frame_ids=self.frame_ids, keys=self.keys, status=self.cols["status"],
                        dominant_class=self.cols["dominant"])

    def labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, dominant_class, (n, C) pixel counts) of the labelled units."""
        mask = self.cols["status"] == LABELED
        rows = self.cols["label_row"][mask]
        return self.keys[mask], self.cols["dominant"][mask], self.label_counts[rows]

    # --- planning (validation; no state change) -----------------------------------
    def plan_register(self, items) -> Record | None:
        """Frames to add (``frame_id, uri[, mask_uri]``); already registered identical rows are
        skipped, a known frame id with a different uri / mask_uri is an error naming it."""
        table = normalize_frames(items)
        idx = self.frame_index(table.column("frame_id"))
        known = idx >= 0
        if known.any():
            old = self.frames.take(pa.array(idx[known]))
            new = table.filter(pa.array(known))
            for name in ("uri", "mask_uri"):
                same = pc.equal(pc.fill_null(old.column(name), "\0"),
                                pc.fill_null(new.column(name), "\0")).to_numpy(zero_copy_only=False)
                if not same.all():
                    i = int(np.flatnonzero(~same)[0])
                    raise ValueError(
                        f"frame {new.column('frame_id')[i].as_py()} is already registered with "
                        f"{name} {old.column(name)[i].as_py()!r}, not {new.column(name)[i].as_py()!r}")
        fresh = table.filter(pa.array(~known))
        return Record("register", {"count": fresh.num_rows}, fresh) if fresh.num_rows else None

    def _unit_keys_of(self, frame_ids, region_ids, what: str, allow_frame: bool = False) -> np.ndarray:
        """Keys of (frame_id, region_id) pairs; unknown frames and wrong unit kinds raise."""
        idx = self.frame_index(frame_ids)
        if (idx < 0).any():
            bad = pa.array(frame_ids).take(pa.array(np.flatnonzero(idx < 0)[:5])).to_pylist()
            raise ValueError(f"{what}: frame(s) not registered in the pool: {bad}")
        region_ids = np.asarray(region_ids, np.int64)
        if self.unit == "image" and (region_ids != -1).any():
            raise ValueError(f"{what}: an image pool takes region_id -1, got {np.unique(region_ids)[:5]}")
        if self.unit != "image" and not allow_frame and (region_ids < 0).any():
            raise ValueError(f"{what}: a {self.unit} pool needs region ids >= 0")
        keys = unit_keys(idx, region_ids)
        if len(np.unique(keys)) != len(keys):
            raise ValueError(f"{what}: the same unit is listed twice")
        return keys

    def _expired_mask(self, now: float) -> np.ndarray:
        return (self.cols["status"] == QUEUED) & (self.cols["expiry"] <= now)

    def plan_expire(self, now: float) -> Record | None:
        """Queued units whose lease ended at ``now`` go back to unlabelled."""
        n = int(self._expired_mask(now).sum())
        return Record("expire", {"now": float(now), "count": n}) if n else None

    def plan_select(self, strategy: str, params: dict | None, budget: Budget | int,
                    round_id: int, tables: ScoreTables, seed: int, *, now: float,
                    owner: str = "annotators", lease_seconds: float = 7 * 86400.0
                    ) -> tuple[Record | None, pa.Table]:
        """Run the strategy on the pool (after expiring leases at ``now``) -> (record, query).

        A round that was already selected returns its stored query and no record, so a
        retried call changes nothing; asking a selected round for another strategy,
        budget or seed is an error.
        """
        from rayal.selection.registry import get_strategy

        budget = budget if isinstance(budget, Budget) else Budget(units=int(budget))
        request = {"round": int(round_id), "strategy": strategy, "params": dict(params or {}),
                   "budget": {"units": budget.units, "cost": budget.cost}, "seed": int(seed)}
        if int(round_id) in self.queries:
            old = self.requests[int(round_id)]
            if any(json.dumps(old[k], sort_keys=True) != json.dumps(v, sort_keys=True)
                   for k, v in request.items()):
                raise ValueError(f"round {round_id} was already selected with "
                                 f"{ {k: old[k] for k in request} }, not {request}")
            return None, self.query(round_id)
        base = self._apply_expire(now) if self.plan_expire(now) else self
        picker = get_strategy(strategy, **request["params"])
        query = picker.select(tables, base.view(), budget, int(seed))
        table = query.to_table()
        what = f"strategy {strategy!r} (round {round_id})"
        units = set(table.column("unit").to_pylist())
        if units - {self.unit}:
            raise ValueError(f"{what} returned {sorted(units)} units, but this pool's unit is "
                             f"{self.unit!r}")
        keys = base._unit_keys_of(table.column("frame_id"), table.column("region_id").to_numpy(), what)
        fi, rid = split_keys(keys)
        if not base.view().selectable(fi, rid).all():
            raise ValueError(f"{what} selected units that are queued, labelled or quarantined")
        if budget.units is not None and len(table) > budget.units:
            raise ValueError(f"{what} selected {len(table)} units, over the budget of {budget.units}")
        extras = json.loads(json.dumps(query.extras, default=str))
        header = {**request, "now": float(now), "owner": str(owner),
                  "lease_seconds": float(lease_seconds), "extras": extras}
        table = table.append_column("key", pa.array(keys, pa.int64()))
        return Record("select", header, table), self._query_out(table, header)

    def plan_ingest(self, labels, round_id: int | None = None) -> tuple[Record | None, dict]:
        """Label summaries (``frame_id, region_id, dominant_class, pixel_counts``) -> record + report.

        Per unit: already labelled with the same summary -> unchanged; quarantined
        (or in a quarantined frame) -> skipped; otherwise labelled (or updated).
        Everything is validated before anything is planned.
        """
        table, counts = normalize_labels(labels)
        if table.num_rows == 0:
            return None, {"labeled": 0, "updated": 0, "unchanged": 0, "skipped_quarantined": 0}
        c = counts.shape[1]
        if self.num_classes is not None and c != self.num_classes:
            raise ValueError(f"labels have {c} classes, the pool has {self.num_classes}")
        dominant = table.column("dominant_class").to_numpy().astype(np.int16)
        if ((dominant < -1) | (dominant >= c)).any():
            raise ValueError(f"dominant_class must be in [-1, {c}), got {np.unique(dominant)[:5]}")
        keys = self._unit_keys_of(table.column("frame_id"), table.column("region_id").to_numpy(),
                                  "ingest")
        fi, _ = split_keys(keys)
        status = self.column_of("status", keys)
        blocked = (status == QUARANTINED) | (
            self.column_of("status", unit_keys(fi, np.full(len(fi), -1))) == QUARANTINED)
        same = status == LABELED
        if same.any():
            rows = self.column_of("label_row", keys[same])
            old = self.label_counts[rows] if c == self.label_counts.shape[1] else None
            eq = (self.column_of("dominant", keys[same]) == dominant[same])
            eq &= (old == counts[same]).all(axis=1) if old is not None else False
            same[np.flatnonzero(same)[~eq]] = False
        change = ~(same | blocked)
        report = {"labeled": int((change & (status != LABELED)).sum()),
                  "updated": int((change & (status == LABELED)).sum()),
                  "unchanged": int(same.sum()), "skipped_quarantined": int(blocked.sum())}
        if not change.any():
            return None, report
        body = pa.table({"key": keys[change], "dominant_class": dominant[change],
                         "pixel_counts": label_counts_array(counts[change])})
        header = {"round": None if round_id is None else int(round_id), "num_classes": c, **report}
        return Record("ingest", header, body), report

    def plan_quarantine(self, frame_ids, region_ids, reasons) -> tuple[Record | None, dict]:
        """Quarantine units (region_id -1: the whole frame) with a reason each; frames not
        registered are skipped and counted, already quarantined units with the same reason too."""
        idx = self.frame_index(pa.array(np.asarray(frame_ids, dtype=object), pa.string()))
        reasons = np.broadcast_to(np.asarray(reasons, dtype=object), (len(idx),))
        known = idx >= 0
        keys = unit_keys(idx[known], np.broadcast_to(np.asarray(region_ids, np.int64), (len(idx),))[known])
        keys, first = np.unique(keys, return_index=True)   # duplicates: the first reason wins
        reasons = reasons[known][first]
        status = self.column_of("status", keys)
        texts = np.asarray(self.reasons + ("",), dtype=object)[self.column_of("reason", keys)]
        change = ~((status == QUARANTINED) & (texts == reasons))
        report = {"quarantined": int(change.sum()), "unchanged": int((~change).sum()),
                  "unknown_frames": int((~known).sum())}
        if not change.any():
            return None, report
        body = pa.table({"key": keys[change], "reason": pa.array(list(reasons[change]), pa.string())})
        return Record("quarantine", dict(report), body), report

    # --- applying ----------------------------------------------------------------------
    def apply(self, record: Record, seq: int | None = None) -> "PoolState":
        """The state after ``record`` (a pure function of state and record)."""
        handler = getattr(self, f"_apply_{record.op}", None)
        if handler is None:
            raise ValueError(f"unknown pool record op {record.op!r}")
        new = handler(**record.header) if record.body is None else handler(record.body, **record.header)
        return replace(new, seq=self.seq if seq is None else int(seq))

    def _with_rows(self, keys: np.ndarray) -> tuple[np.ndarray, dict, np.ndarray]:
        """(keys, copied columns, positions of ``keys``) with a fresh row for each new key."""
        _, found = self.rows_of(keys)
        missing = np.unique(keys[~found])
        at = np.searchsorted(self.keys, missing)
        all_keys = np.insert(self.keys, at, missing)
        cols = {n: np.insert(self.cols[n], at, np.asarray(UNIT_COLUMNS[n][1], UNIT_COLUMNS[n][0]))
                for n in UNIT_COLUMNS}
        return all_keys, cols, np.searchsorted(all_keys, keys)

    @staticmethod
    def _intern(table: tuple, values) -> tuple[tuple, np.ndarray]:
        """Ids of ``values`` in a small string table, adding new ones in order of appearance."""
        index = {v: i for i, v in enumerate(table)}
        ids = [index.setdefault(v, len(index)) for v in values]
        return tuple(index), np.asarray(ids, np.int64)

    def _apply_register(self, body: pa.Table, count: int) -> "PoolState":
        # one chunk, so frame_ids (and every lookup) needs no concatenation per state
        frames = pa.concat_tables([self.frames, body.cast(FRAME_SCHEMA)]).combine_chunks()
        return replace(self, frames=frames)

    def _apply_expire(self, now: float, count: int = 0) -> "PoolState":
        expired = self._expired_mask(now)
        cols = {n: c.copy() for n, c in self.cols.items()}
        for name in ("status", "round", "owner", "expiry"):
            cols[name][expired] = UNIT_COLUMNS[name][1]
        return replace(self, cols=cols)

    def _apply_select(self, body: pa.Table, **header) -> "PoolState":
        state = self._apply_expire(header["now"])
        keys = body.column("key").to_numpy()
        all_keys, cols, pos = state._with_rows(keys)
        owners, (owner,) = self._intern(state.owners, [header["owner"]])
        cols["status"][pos] = QUEUED
        cols["round"][pos] = header["round"]
        cols["owner"][pos] = owner
        cols["expiry"][pos] = header["now"] + header["lease_seconds"]
        return replace(state, keys=all_keys, cols=cols, owners=owners,
                       queries={**self.queries, header["round"]: body},
                       requests={**self.requests, header["round"]: dict(header)})

    def _apply_ingest(self, body: pa.Table, round: int | None, num_classes: int, **_) -> "PoolState":
        keys = body.column("key").to_numpy()
        counts = body.column("pixel_counts").combine_chunks().flatten().to_numpy()
        counts = counts.reshape(len(keys), num_classes).astype(np.int32)
        all_keys, cols, pos = self._with_rows(keys)
        label_counts = self.label_counts if self.label_counts.size else np.zeros((0, num_classes), np.int32)
        rows = cols["label_row"][pos]
        new = rows < 0
        rows[new] = len(label_counts) + np.arange(int(new.sum()))
        label_counts = np.concatenate([label_counts, np.zeros((int(new.sum()), num_classes), np.int32)])
        label_counts[rows] = counts
        cols["label_row"][pos] = rows
        cols["status"][pos] = LABELED
        cols["dominant"][pos] = body.column("dominant_class").to_numpy()
        cols["owner"][pos], cols["expiry"][pos] = -1, np.nan
        if round is not None:   # units that were queued keep their query's round
            cols["round"][pos] = np.where(cols["round"][pos] >= 0, cols["round"][pos], round)
        return replace(self, keys=all_keys, cols=cols, label_counts=label_counts,
                       num_classes=num_classes)

    def _apply_quarantine(self, body: pa.Table, **_) -> "PoolState":
        keys = body.column("key").to_numpy()
        all_keys, cols, pos = self._with_rows(keys)
        reasons, ids = self._intern(self.reasons, body.column("reason").to_pylist())
        cols["status"][pos] = QUARANTINED
        cols["reason"][pos] = ids
        cols["owner"][pos], cols["expiry"][pos] = -1, np.nan
        return replace(self, keys=all_keys, cols=cols, reasons=reasons)

    # --- convenience: plan + apply (no journal) -----------------------------------------
    def _do(self, planned) -> "PoolState":
        record = planned[0] if isinstance(planned, tuple) else planned
        return self if record is None else self.apply(record)

    def register(self, items) -> "PoolState":
        return self._do(self.plan_register(items))

    def select(self, *args, **kwargs) -> tuple["PoolState", pa.Table]:
        """-> (new state, query); see :meth:`plan_select`."""
        planned = self.plan_select(*args, **kwargs)
        return self._do(planned), planned[1]

    def ingest(self, labels, round_id: int | None = None) -> "PoolState":
        return self._do(self.plan_ingest(labels, round_id))

    def quarantine(self, frame_ids, region_ids, reasons) -> "PoolState":
        return self._do(self.plan_quarantine(frame_ids, region_ids, reasons))

    def expire_leases(self, now: float) -> "PoolState":
        return self._do(self.plan_expire(now))

    # --- reporting -----------------------------------------------------------------------
    @staticmethod
    def _query_out(table: pa.Table, header: dict) -> pa.Table:
        meta = {b"rayal.round": str(header["round"]).encode(),
                b"rayal.extras": json.dumps(header.get("extras", {})).encode()}
        return table.drop_columns(["key"]).replace_schema_metadata(meta)

    def query(self, round_id: int) -> pa.Table:
        """The stored query of a round (QUERY_SCHEMA; extras in the schema metadata)."""
        if int(round_id) not in self.queries:
            raise KeyError(f"round {round_id} has no query (selected rounds: {sorted(self.queries)})")
        return self._query_out(self.queries[int(round_id)], self.requests[int(round_id)])

    def status_counts(self, units_per_frame: int | None = None) -> dict:
        """Units per status, labelled units and pixels per class, and counts per round.

        ``unlabeled`` includes untouched units when the total is known: always for an
        image pool, with ``units_per_frame`` (e.g. grid rows x cols) for region pools.
        """
        _, rid = split_keys(self.keys)
        unit_rows = rid >= 0 if self.unit != "image" else np.ones(len(rid), bool)
        status = self.cols["status"]
        counts = np.bincount(status[unit_rows], minlength=4)
        total = self.num_frames * (1 if self.unit == "image" else (units_per_frame or 0)) or None
        if total is not None:
            counts[UNLABELED] = total - counts[QUEUED] - counts[LABELED] - counts[QUARANTINED]
        out = {"unit": self.unit, "frames": self.num_frames, "units_total": total,
               **{name: int(counts[i]) for i, name in enumerate(STATUS_NAMES)},
               "quarantined_frames": int((status[~unit_rows] == QUARANTINED).sum())}
        if total is None:
            out["unlabeled"] = None   # unknown: untouched units are not counted
        c = self.num_classes or 0
        _, dominant, pixels = self.labels()
        valid = dominant[(dominant >= 0) & (dominant < c)]
        out["per_class"] = {"units": np.bincount(valid, minlength=c).tolist(),
                            "pixels": pixels.sum(axis=0, dtype=np.int64).tolist() if c else []}
        rounds = sorted(set(self.queries) | set(np.unique(self.cols["round"]).tolist()) - {-1})
        out["per_round"] = {int(r): {
            "selected": self.queries[r].num_rows if r in self.queries else 0,
            "queued": int(((status == QUEUED) & (self.cols["round"] == r)).sum()),
            "labeled": int(((status == LABELED) & (self.cols["round"] == r)).sum())} for r in rounds}
        out["seq"] = self.seq
        return out

    def digest(self) -> str:
        """sha256 of the whole logical state (independent of Arrow chunking)."""
        return digest_state(self)
