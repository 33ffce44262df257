"""VAAL selection (Sinha et al. 2019): annotate the frames that look least labelled.

Ranks whole frames by the ``vaal_score`` column of the frames table (``1 - D(mu(x))``, the
discriminator's probability that the frame is unlabelled, written by
:func:`rayal.pipeline.loop.vaal_job.run_vaal_scoring`), highest first. Ties go to the smaller
frame_id (the same total order as the top-k strategies); NaN / null scores are never picked.
Image units only: the discriminator scores frames, not regions.
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import load_units, query_from_rows, rank_top, unit_budget
from rayal.selection.registry import register_strategy

SCORE_COLUMN = "vaal_score"


@register_strategy("vaal")
class Vaal(Strategy):
    """Top-B frames by ``vaal_score``. unit: ``"image"`` only."""

    level = "image"
    units = ("image",)
    score_source = "vaal"   # the loop runs rayal.pipeline.loop.vaal_job first and selects from its tables

    def __init__(self, unit: str = "image"):
        if unit != "image":
            raise ValueError(f"unit must be 'image' for vaal (the discriminator scores whole frames), "
                             f"got {unit!r}")
        self.unit = unit

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        n = unit_budget(budget, self)
        if SCORE_COLUMN not in tables.columns("frames"):
            raise ValueError(f"the frames score table has no {SCORE_COLUMN!r} column; run the VAAL "
                             "scoring step first (rayal.pipeline.loop.vaal_job.run_vaal_scoring)")
        rows = load_units(tables, "image", pool, [SCORE_COLUMN])
        score = rows.column(SCORE_COLUMN)
        nan_skipped = int(np.count_nonzero(rows.resolve(np.flatnonzero(np.isnan(score)))[1]))
        picked = rank_top(rows, score, n)
        values = score[picked]
        return query_from_rows(rows, picked, values, [f"{SCORE_COLUMN}={v:.3f}" for v in values],
                               extras={"nan_skipped": nan_skipped})
