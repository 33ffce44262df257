"""What every selection strategy takes and returns (pure numpy / pyarrow, no Ray).

A strategy reads the score tables of one round (``frames`` / ``regions`` /
``embeddings``, see :mod:`rayal.scoring.tables`), a read-only :class:`PoolView`
of the pool state, a :class:`Budget` and a seed, and returns a :class:`Query`:
the ordered units to annotate, each with the reason it was picked. Units that
are queued, labelled or quarantined are never selected; units of frames that
are not registered in the pool are not selectable either.

Unit keys: a unit is ``(frame_id, region_id)`` with ``region_id = -1`` for a
whole image. Inside the pool a frame has a dense integer index (its position
in :attr:`PoolView.frame_ids`), and ``unit_key = frame_index << 21 | (region_id + 1)``
packs a unit into one int64 so membership tests are vectorised ``searchsorted``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

UNLABELED, QUEUED, LABELED, QUARANTINED = 0, 1, 2, 3
STATUS_NAMES = ("unlabeled", "queued", "labeled", "quarantined")
REGION_BITS = 21  # up to 2M regions per frame
MAX_REGION_ID = (1 << REGION_BITS) - 2


def unit_keys(frame_index: np.ndarray, region_id: np.ndarray) -> np.ndarray:
    """(N,) frame indices and region ids (-1 = image) -> (N,) int64 unit keys."""
    frame_index = np.asarray(frame_index, dtype=np.int64)
    region_id = np.asarray(region_id, dtype=np.int64)
    if region_id.size and (region_id.min() < -1 or region_id.max() > MAX_REGION_ID):
        raise ValueError(f"region_id must be in [-1, {MAX_REGION_ID}]")
    return (frame_index << REGION_BITS) | (region_id + 1)


def split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`unit_keys`: -> (frame_index, region_id)."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys >> REGION_BITS, (keys & ((1 << REGION_BITS) - 1)) - 1


class FrameLookup:
    """Pool frame id -> pool index, and the frame id's rank in sorted (byte) order.

    Built once per selection (one O(F log F) sort of the F pool frame ids); a lookup then
    costs a dictionary encoding of the batch plus a vectorised binary search of its
    distinct ids, instead of re-hashing all F pool ids per batch as ``pc.index_in`` does.
    ``rank`` (F,) int64 orders pool frames by frame_id, for deterministic tie-breaking.
    """

    def __init__(self, frame_ids: pa.Array | pa.ChunkedArray):
        ids = frame_ids.combine_chunks() if isinstance(frame_ids, pa.ChunkedArray) else frame_ids
        self.ids = ids.cast(pa.string()) if ids.type != pa.string() else ids
        self.order = pc.sort_indices(self.ids).to_numpy().astype(np.int64)  # (F,)
        self.rank = np.empty(len(self.order), np.int64)
        self.rank[self.order] = np.arange(len(self.order), dtype=np.int64)

    def index(self, frame_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """(N,) int64 pool index of each frame id; -1 for ids not in the pool (or null)."""
        if isinstance(frame_ids, pa.ChunkedArray):
            frame_ids = frame_ids.combine_chunks()
        if pa.types.is_dictionary(frame_ids.type):
            frame_ids = frame_ids.dictionary_decode()
        if frame_ids.type != pa.string():
            frame_ids = frame_ids.cast(pa.string())
        F = len(self.order)
        if len(frame_ids) == 0 or F == 0:
            return np.full(len(frame_ids), -1, np.int64)
        enc = pc.dictionary_encode(frame_ids)
        uniq, codes = enc.dictionary, enc.indices
        lo = np.zeros(len(uniq), np.int64)
        hi = np.full(len(uniq), F, np.int64)
        while True:  # lower bound of each distinct id in the sorted pool ids
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            probe = pc.take(self.ids, pa.array(self.order[np.minimum(mid, F - 1)]))
            less = pc.less(probe, uniq).to_numpy(zero_copy_only=False) & active
            lo = np.where(less, mid + 1, lo)
            hi = np.where(active & ~less, mid, hi)
        pos = self.order[np.minimum(lo, F - 1)]
        same = pc.fill_null(pc.equal(pc.take(self.ids, pa.array(pos)), uniq), False)
        found = same.to_numpy(zero_copy_only=False) & (lo < F)
        per_uniq = np.where(found, pos, -1)
        codes_np = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(codes_np >= 0, per_uniq[np.maximum(codes_np, 0)], -1)


@dataclass
class PoolView:
    """Read-only view of the pool state (numpy columns, no Python object per unit).

    frame_ids: pool frame ids; a frame's index is its position here.
    keys: sorted int64 unit keys of every unit whose status is known.
    status: int8 status per key (UNLABELED / QUEUED / LABELED / QUARANTINED).
    dominant_class: int16 ground-truth dominant class per key (-1 unknown), for labelled units.
    """

    frame_ids: pa.Array
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    status: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    dominant_class: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    def __post_init__(self):
        self._frame_lookup = None
        if not isinstance(self.frame_ids, (pa.Array, pa.ChunkedArray)):
            self.frame_ids = pa.array(list(self.frame_ids), pa.string())
        order = np.argsort(self.keys, kind="stable")
        if len(order) and np.any(order != np.arange(len(order))):
            self.keys, self.status = self.keys[order], self.status[order]
            self.dominant_class = self.dominant_class[order]

    @classmethod
    def fresh(cls, frame_ids) -> "PoolView":
        """A pool where every unit of these frames is unlabelled."""
        return cls(frame_ids=frame_ids)

    @classmethod
    def from_statuses(cls, frame_ids, statuses: dict | None = None) -> "PoolView":
        """A small view from ``{(frame_id, region_id): status}`` (tests, notebooks)."""
        statuses = statuses or {}
        index = {f: i for i, f in enumerate(frame_ids)}
        keys = unit_keys([index[f] for f, _ in statuses], [r for _, r in statuses])
        return cls(pa.array(list(frame_ids), pa.string()), keys,
                   np.array(list(statuses.values()), np.int8), np.full(len(statuses), -1, np.int16))

    @property
    def lookup(self) -> "FrameLookup":
        """Sorted frame-id lookup, built once per view (one sort of the pool's ids)."""
        if self._frame_lookup is None:
            self._frame_lookup = FrameLookup(self.frame_ids)
        return self._frame_lookup

    def frame_index(self, frame_ids: pa.Array | np.ndarray | list) -> np.ndarray:
        """(N,) int64 pool index of each frame id; -1 for frames not in the pool."""
        if not isinstance(frame_ids, (pa.Array, pa.ChunkedArray)):
            frame_ids = pa.array(np.asarray(frame_ids, dtype=object), pa.string())
        return self.lookup.index(frame_ids)

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(len(self.keys) - 1, 0))
        found = (self.keys[pos] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return pos, found

    def status_of(self, keys: np.ndarray) -> np.ndarray:
        """(N,) int8 status of each unit key (UNLABELED when unknown)."""
        pos, found = self._lookup(np.asarray(keys, np.int64))
        out = np.full(len(keys), UNLABELED, np.int8)
        out[found] = self.status[pos[found]]
        return out

    def selectable(self, frame_index: np.ndarray, region_id: np.ndarray) -> np.ndarray:
        """(N,) bool: frame is in the pool, and neither the unit nor its whole image is taken."""
        frame_index = np.asarray(frame_index, np.int64)
        ok = frame_index >= 0
        fi = np.where(ok, frame_index, 0)
        ok &= self.status_of(unit_keys(fi, region_id)) == UNLABELED
        # a frame annotated whole makes all its regions unavailable
        ok &= self.status_of(unit_keys(fi, np.full(len(fi), -1))) == UNLABELED
        return ok

    def labeled(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, dominant_class) of the labelled units."""
        mask = self.status == LABELED
        return self.keys[mask], self.dominant_class[mask]

    def class_counts(self, num_classes: int) -> np.ndarray:
        """(C,) labelled units per ground-truth dominant class (n_c of OREAL)."""
        _, dominant = self.labeled()
        dominant = dominant[(dominant >= 0) & (dominant < num_classes)]
        return np.bincount(dominant, minlength=num_classes).astype(np.int64)


@dataclass
class ScoreTables:
    """One round's score tables: parquet dataset paths/URIs or in-memory Arrow tables."""

    frames: str | pa.Table | None = None
    regions: str | pa.Table | None = None
    embeddings: str | pa.Table | None = None

    @classmethod
    def from_dir(cls, directory: str) -> "ScoreTables":
        """The tables ``rayal score`` wrote under ``directory`` (local or a pyarrow URI such
        as ``s3://``; missing or empty ones are None)."""
        found = {}
        for name in ("frames", "regions", "embeddings"):
            uri = f"{directory.rstrip('/')}/{name}"
            fs, path = (pafs.FileSystem.from_uri(uri) if "://" in uri
                        else (pafs.LocalFileSystem(), uri))
            info = fs.get_file_info(path)
            empty = info.type == pafs.FileType.Directory and not fs.get_file_info(
                pafs.FileSelector(path, recursive=True))
            found[name] = uri if info.type != pafs.FileType.NotFound and not empty else None
        return cls(**found)

    def _source(self, name: str):
        source = getattr(self, name)
        if source is None:
            raise ValueError(f"this strategy needs the '{name}' score table, which is missing")
        return source

    def columns(self, name: str) -> list[str]:
        source = self._source(name)
        schema = source.schema if isinstance(source, pa.Table) else pads.dataset(source, format="parquet").schema
        return schema.names

    def num_rows(self, name: str) -> int:
        """Row count (parquet metadata only for datasets)."""
        source = self._source(name)
        if isinstance(source, pa.Table):
            return source.num_rows
        return pads.dataset(source, format="parquet").count_rows()

    def read(self, name: str, columns: list[str] | None = None, filter=None) -> pa.Table:
        """The whole table (only ``columns``; ``filter`` a pyarrow.compute expression)."""
        source = self._source(name)
        if isinstance(source, pa.Table):
            table = source.filter(filter) if filter is not None else source
            return table.select(columns) if columns else table
        return pads.dataset(source, format="parquet").to_table(columns=columns, filter=filter)

    def iter_batches(self, name: str, columns: list[str] | None = None, filter=None,
                     batch_size: int = 1 << 20) -> Iterator[pa.RecordBatch]:
        """Stream the table in record batches (bounded memory for 100M-row tables)."""
        source = self._source(name)
        if isinstance(source, pa.Table):
            table = source.filter(filter) if filter is not None else source
            yield from (table.select(columns) if columns else table).to_batches(batch_size)
            return
        # one fragment at a time with minimal read-ahead: Dataset.to_batches reads ahead
        # without waiting for a slow consumer and would buffer much of a 100M-row table
        dataset = pads.dataset(source, format="parquet")
        for fragment in dataset.get_fragments(filter=filter):
            yield from fragment.to_batches(columns=columns, filter=filter, batch_size=batch_size,
                                           batch_readahead=1, fragment_readahead=1)


@dataclass
class Budget:
    """How much to select: a number of units, or (cost-aware strategies) annotation cost in clicks."""

    units: int | None = None
    cost: float | None = None

    def __post_init__(self):
        if (self.units is None) == (self.cost is None):
            raise ValueError("budget: give exactly one of units or cost")
        if self.units is not None and self.units < 0:
            raise ValueError(f"budget.units must be >= 0, got {self.units}")
        if self.cost is not None and not self.cost >= 0:
            raise ValueError(f"budget.cost must be >= 0, got {self.cost}")


QUERY_SCHEMA = pa.schema([
    ("rank", pa.int64()), ("frame_id", pa.string()), ("unit", pa.string()),
    ("region_id", pa.int32()), ("score", pa.float64()), ("reason", pa.string()),
    ("class_id", pa.int16()), ("cluster", pa.int32()), ("cost", pa.float32()),
])


@dataclass
class Query:
    """Ordered units to annotate. ``class_id`` / ``cluster`` are -1 where not applicable;
    ``extras`` carries strategy outputs for training (e.g. CEAL's pseudo-label threshold)."""

    frame_id: np.ndarray
    unit: np.ndarray
    region_id: np.ndarray
    score: np.ndarray
    reason: np.ndarray
    class_id: np.ndarray | None = None
    cluster: np.ndarray | None = None
    cost: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.frame_id)
        self.class_id = np.full(n, -1, np.int16) if self.class_id is None else self.class_id
        self.cluster = np.full(n, -1, np.int32) if self.cluster is None else self.cluster
        self.cost = np.ones(n, np.float32) if self.cost is None else self.cost
        for name in ("unit", "region_id", "score", "reason", "class_id", "cluster", "cost"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Query.{name} has {len(getattr(self, name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.frame_id)

    def to_table(self) -> pa.Table:
        return pa.table({
            "rank": np.arange(len(self), dtype=np.int64),
            "frame_id": pa.array(np.asarray(self.frame_id, dtype=object), pa.string()),
            "unit": pa.array(np.asarray(self.unit, dtype=object), pa.string()),
            "region_id": np.asarray(self.region_id, np.int32),
            "score": np.asarray(self.score, np.float64),
            "reason": pa.array(np.asarray(self.reason, dtype=object), pa.string()),
            "class_id": np.asarray(self.class_id, np.int16),
            "cluster": np.asarray(self.cluster, np.int32),
            "cost": np.asarray(self.cost, np.float32),
        }, schema=QUERY_SCHEMA)

    @classmethod
    def empty(cls) -> "Query":
        e = np.zeros(0)
        return cls(np.zeros(0, object), np.zeros(0, object), e.astype(np.int32), e,
                   np.zeros(0, object))


class Strategy(ABC):
    """Base class: subclasses set ``level`` and implement :meth:`select`.

    ``level``: ``"image"`` strategies rank rows of the frames table, ``"region"``
    strategies rank rows of the regions table (one ``unit`` kind: patch or superpixel).
    Constructor keyword arguments are the strategy's parameters; bad values raise
    ValueError naming the parameter.
    """

    name: ClassVar[str] = ""
    level: ClassVar[Literal["image", "region"]] = "image"
    supports_cost: ClassVar[bool] = False

    @abstractmethod
    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        """Return the ordered query; the same inputs give the same query."""
