"""Random baseline: a seeded uniform sample of the selectable units.

``unit="image"`` samples rows of the ``frames`` table; ``"patch"`` / ``"superpixel"``
sample rows of that unit in the ``regions`` table. The regions table only holds each
frame's kept (top-k) regions, so region-level random samples among those.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import UNITS, check_choice, level_of, load_units, query_from_rows, unit_budget
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
        # sample over sorted unique keys: the result does not depend on the table's row order
        # and a unit stored twice is one unit
        keys, first = np.unique(rows.keys[rows.selectable], return_index=True)
        candidates = np.flatnonzero(rows.selectable)[first]
        if n == 0 or len(candidates) == 0:
            return Query.empty()
        rng = np.random.default_rng(seed)
        picked = candidates[rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)]
        return query_from_rows(rows, picked, np.zeros(len(picked)), ["random"] * len(picked),
                               extras={"candidates": int(len(candidates))})
