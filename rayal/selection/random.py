"""Random baseline: a seeded uniform sample of the selectable units.

``unit="image"`` samples rows of the ``frames`` table; ``"patch"`` / ``"superpixel"``
sample rows of that unit in the ``regions`` table. The regions table only holds each
frame's kept (top-k) regions, so region-level random samples among those.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (UNITS, check_choice, level_of, load_units, query_from_rows,
                                    rank_top, unit_budget)
from rayal.selection.hashing import unit_priority
from rayal.selection.registry import register_strategy


@register_strategy("random", unit="image")
class RandomStrategy(Strategy):
    """Uniform sample without replacement; reason ``"random"``, score 0."""

    def __init__(self, unit: str = "image"):
        check_choice("unit", unit, UNITS)
        self.unit = unit
        self.level = level_of(unit)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        rows = load_units(tables, self.unit, pool)
        if n == 0:
            return Query.empty()
        # a seeded hash of each unit as its priority: the sample does not depend on the
        # table's row order, a unit stored twice is one unit, and only the best rows'
        # pool status is resolved (rank_top widens past taken units)
        priority = unit_priority(rows.frame_id, rows.region_id, seed)
        picked = rank_top(rows, priority, n)
        return query_from_rows(rows, picked, np.zeros(len(picked)), ["random"] * len(picked),
                               extras={"candidates": int(len(rows))})
