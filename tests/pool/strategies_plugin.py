"""Test-only strategy plugin: top scores of the frames or regions table (loaded by file path,
so the coordinator actor can import it too)."""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Query, Strategy
from rayal.selection.registry import register_strategy


@register_strategy("pool_test_top")
class PoolTestTop(Strategy):
    """Highest ``column`` first (ties: table order); skips units the pool says are taken."""

    def __init__(self, column: str = "score", level: str = "image"):
        if level not in ("image", "region"):
            raise ValueError(f"level must be image or region, got {level!r}")
        self.column, self.level = column, level

    def select(self, tables, pool, budget, seed):
        if self.level == "image":
            t = tables.read("frames", ["frame_id", self.column])
            unit = np.full(t.num_rows, "image", object)
            rid = np.full(t.num_rows, -1, np.int32)
        else:
            t = tables.read("regions", ["frame_id", "unit", "region_id", self.column])
            unit = t.column("unit").to_numpy(zero_copy_only=False)
            rid = t.column("region_id").to_numpy().astype(np.int32)
        frame_ids = t.column("frame_id").to_numpy(zero_copy_only=False)
        score = t.column(self.column).to_numpy().astype(np.float64)
        ok = pool.selectable(pool.frame_index(frame_ids), rid)
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(-score[idx], kind="stable")][: budget.units]
        return Query(frame_id=frame_ids[idx], unit=unit[idx], region_id=rid[idx], score=score[idx],
                     reason=np.full(len(idx), f"top {self.column}", object))
