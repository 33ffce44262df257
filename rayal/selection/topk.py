"""Top-B uncertainty: rank units by one score column and take the best B.

Registered names (each binds ``measure``): ``entropy``, ``margin``,
``least_confidence``, ``bald``, ``vote_entropy``, ``variance`` (column
``{measure}_{aggregate}`` of the frames table for ``unit="image"``, of the regions
table for ``"patch"`` / ``"superpixel"``) and ``area_disagreement`` (frame column
``area_disagreement``; image level only).

Scale: reads two columns (``frame_id`` and the score), one ``np.partition`` over
the scored rows, then sorts and checks pool status only for the ~B best (widening
while taken units leave the top short), so the pool is never hashed whole. NaN scores are never selected;
their count (among selectable units) is reported in ``Query.extras["nan_skipped"]``.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (UNITS, check_choice, level_of, load_units, query_from_rows,
                                    rank_top, unit_budget)
from rayal.selection.registry import register_strategy

MEASURES = ("entropy", "margin", "least_confidence", "bald", "vote_entropy", "variance")
AGGREGATES = ("mean", "max")


def score_column(measure: str, aggregate: str) -> str:
    """Column name of a measure in the score tables."""
    return "area_disagreement" if measure == "area_disagreement" else f"{measure}_{aggregate}"


class TopK(Strategy):
    """Highest ``{measure}_{aggregate}`` first; ties by frame_id then region_id.

    measure: one of MEASURES or ``"area_disagreement"``.
    aggregate: ``"mean"`` | ``"max"`` (pixel-to-unit reduction; ignored by area_disagreement).
    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``.
    """

    def __init__(self, measure: str = "entropy", aggregate: str = "mean", unit: str = "image"):
        check_choice("measure", measure, MEASURES + ("area_disagreement",))
        check_choice("aggregate", aggregate, AGGREGATES)
        check_choice("unit", unit, UNITS)
        if measure == "area_disagreement" and unit != "image":
            raise ValueError(f"unit must be 'image' for area_disagreement (a frame score), got {unit!r}")
        self.measure, self.aggregate, self.unit = measure, aggregate, unit
        self.level = level_of(unit)
        self.column = score_column(measure, aggregate)

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        rows = load_units(tables, self.unit, pool, [self.column])
        score = rows.column(self.column)
        nan_skipped = int(np.count_nonzero(rows.resolve(np.flatnonzero(np.isnan(score)))[1]))
        picked = rank_top(rows, score, n)
        values = score[picked]
        reasons = [f"{self.column}={v:.3f}" for v in values]
        return query_from_rows(rows, picked, values, reasons, extras={"nan_skipped": nan_skipped})


for _measure in MEASURES + ("area_disagreement",):
    register_strategy(_measure, measure=_measure)(TopK)
