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

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

# the vocabulary lives in rayal.core; re-exported here for strategies and older imports
from rayal.core.query import (LABELED, MAX_REGION_ID, QUARANTINED, QUERY_SCHEMA, QUEUED,  # noqa: F401
                              REGION_BITS, STATUS_NAMES, UNLABELED, Budget, Query, split_keys,
                              unit_keys)
from rayal.core.strategy import RoundContext, Strategy  # noqa: F401

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


# the setting that makes ``rayal score`` write each table
_TABLE_SETTING = {"frames": "scoring.measures", "regions": "scoring.units (e.g. [superpixel])",
                  "embeddings": "scoring.embeddings ([frame] for images, [region] for regions)"}


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
            raise ValueError(f"this strategy needs the '{name}' score table, which is missing: "
                             f"set {_TABLE_SETTING[name]} and rescore")
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
