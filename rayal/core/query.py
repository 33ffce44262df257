"""What a selection round takes and returns: pool status codes, unit keys, :class:`Budget`
and :class:`Query` (numpy / pyarrow layer; re-exported by :mod:`rayal.selection.base`).

Unit keys: a unit is ``(frame_id, region_id)`` with ``region_id = -1`` for a whole image. Inside
the pool a frame has a dense integer index, and ``unit_key = frame_index << 21 | (region_id + 1)``
packs a unit into one int64 so membership tests are vectorised ``searchsorted``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from rayal.core.tables import QUERY_SCHEMA

__all__ = ["LABELED", "MAX_REGION_ID", "QUARANTINED", "QUERY_SCHEMA", "QUEUED", "REGION_BITS",
           "STATUS_NAMES", "UNLABELED", "Budget", "Query", "split_keys", "unit_keys"]

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
