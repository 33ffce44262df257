"""Top-B uncertainty: rank units by one score column and take the best B.

Registered names (each binds ``measure``): one per measure of the measure registry
(:mod:`rayal.core.measures`), including measures a plugin registers later. Pixel measures
(``entropy``, ``margin``, ``least_confidence``, ``bald``, ``vote_entropy``, ``variance``, ...)
rank column ``{measure}_{aggregate}`` of the frames table for image-level units and of the
regions table for region units; frame measures (``area_disagreement``) rank their frame
column, image level only.

Scale: reads two columns (``frame_id`` and the score), one ``np.partition`` over
the scored rows, then sorts and checks pool status only for the ~B best (widening
while taken units leave the top short), so the pool is never hashed whole. NaN scores are never selected;
their count (among selectable units) is reported in ``Query.extras["nan_skipped"]``.
"""
from __future__ import annotations

import numpy as np

from rayal.core.measures import (AGGREGATES, FRAME_MEASURES, PIXEL_MEASURES, get_measure,
                                 on_measure_registered)
from rayal.core.tables import score_column
from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (UNITS, check_choice, level_of, load_units, query_from_rows,
                                    rank_top, unit_budget)
from rayal.selection.registry import register_strategy

MEASURES = PIXEL_MEASURES   # live view of the measure registry

__all__ = ["AGGREGATES", "MEASURES", "TopK", "score_column"]


class TopK(Strategy):
    """Highest ``{measure}_{aggregate}`` first; ties by frame_id then region_id.

    measure: a registered measure (pixel measures, or a frame measure such as ``"area_disagreement"``).
    aggregate: ``"mean"`` | ``"max"`` (pixel-to-unit reduction; ignored by area_disagreement).
    unit: ``"image"`` | ``"patch"`` | ``"superpixel"``.
    """

    def __init__(self, measure: str = "entropy", aggregate: str = "mean", unit: str = "image"):
        check_choice("measure", measure, FRAME_MEASURES)
        check_choice("aggregate", aggregate, AGGREGATES)
        check_choice("unit", unit, UNITS)
        spec = get_measure(measure)
        if spec.kind == "frame" and level_of(unit) != "image":
            raise ValueError(f"unit must be 'image' for {measure} (a frame score), got {unit!r}")
        if spec.kind == "pixel" and aggregate not in spec.aggregations:
            raise ValueError(f"aggregate must be one of {list(spec.aggregations)} for {measure}, "
                             f"got {aggregate!r}")
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


def _register_top_k(spec) -> None:
    """One top-k strategy per registered measure, named like it (unless the name is taken)."""
    from rayal.core.strategy import registered

    if spec.name not in registered():
        register_strategy(spec.name, measure=spec.name)(TopK)


on_measure_registered(_register_top_k)
