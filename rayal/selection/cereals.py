"""CEREALS (Mackowiak et al. 2018): cost-effective region selection.

    g = (1 - C) * I

I: region uncertainty (score column, default ``entropy_mean``) min-max normalised to
[0, 1] over the candidates (selectable regions with a finite score and cost); all
equal -> I = 1, so cost alone decides.
C: predicted annotation cost in clicks, min-max normalised the same way; all equal
-> C = 0, so uncertainty alone decides.

Click-cost model. CEREALS learns a cost model from recorded annotation clicks and
the predicted mask. rayal's score tables keep no pixel masks, so the number of
segments inside a region is unknown; what the regions table does hold is
``pixel_count`` and ``dominant_pred``. The default estimate is a polygon prior:

    clicks = cost_a + cost_b * w[dominant_pred] * sqrt(pixel_count)

i.e. one polygon whose outline (~4 sqrt(area) pixels for a compact region) gets a
vertex every ~16 pixels (cost_b = 4 / 16 = 0.25), plus one click to assign the
class (cost_a = 1). ``class_weights`` (w, default all 1) lets a team encode that
some predicted classes take more clicks (e.g. fitted on their annotation logs).
For equal-size patches this estimate is constant, so CEREALS then ranks by
uncertainty alone: supply real predictions as a ``clicks`` column in the regions
table (non-negative; nulls fall back to the estimate) to get the paper's behaviour.

Budgets: ``Budget(units=N)`` takes the top N by g. ``Budget(cost=X)`` walks the
g ranking and stops at the first region whose clicks would take the sum above X,
so ``sum(Query.cost) <= X``. Query.cost is the per-region clicks (float32).
"""
from __future__ import annotations

import numpy as np

from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (REGION_UNITS, UnitRows, check_choice, check_range, load_units,
                                    minmax, query_from_rows, rank_top, take_within_cost)
from rayal.selection.registry import register_strategy


def estimated_clicks(pixel_count: np.ndarray, dominant_pred: np.ndarray | None, cost_a: float,
                     cost_b: float, class_weights: np.ndarray | None) -> np.ndarray:
    """(N,) polygon-prior clicks from (N,) pixel counts and predicted dominant classes."""
    weight = 1.0
    if class_weights is not None:
        classes = np.asarray(dominant_pred, np.int64)
        bad = (classes < 0) | (classes >= len(class_weights))
        if bad.any():
            raise ValueError(f"class_weights has {len(class_weights)} entries but dominant_pred "
                             f"contains class {int(classes[bad][0])}")
        weight = class_weights[classes]
    return cost_a + cost_b * weight * np.sqrt(np.maximum(pixel_count, 0.0))


@register_strategy("cereals", score="entropy_mean", unit="patch", cost_a=1.0, cost_b=0.25)
class Cereals(Strategy):
    """Regions ranked by g = (1 - C) * I; budgets in units or clicks.

    score: region uncertainty column.   unit: ``"patch"`` | ``"superpixel"``.
    cost_a, cost_b: polygon-prior click model (see module docstring).
    class_weights: optional per-predicted-class click multipliers (list of floats).
    cost_column: regions-table column of predicted clicks that overrides the estimate.
    """

    level = "region"
    units = "region"
    supports_cost = True

    def __init__(self, score: str = "entropy_mean", unit: str = "patch", cost_a: float = 1.0,
                 cost_b: float = 0.25, class_weights: list[float] | None = None,
                 cost_column: str = "clicks"):
        if not isinstance(score, str) or not score:
            raise ValueError(f"score must be a column name, got {score!r}")
        check_choice("unit", unit, REGION_UNITS)
        check_range("cost_a", cost_a, 0.0)
        check_range("cost_b", cost_b, 0.0)
        if class_weights is not None:
            class_weights = np.asarray(class_weights, np.float64)
            if class_weights.ndim != 1 or not np.all(np.isfinite(class_weights) & (class_weights >= 0)):
                raise ValueError(f"class_weights must be a list of non-negative numbers, got {class_weights}")
        self.score, self.unit, self.cost_a, self.cost_b = score, unit, float(cost_a), float(cost_b)
        self.class_weights, self.cost_column = class_weights, cost_column

    def clicks(self, rows: UnitRows) -> tuple[np.ndarray, int]:
        """(N,) clicks per row (float32-representable) and how many came from ``cost_column``."""
        dominant = rows.column("dominant_pred") if self.class_weights is not None else None
        cost = estimated_clicks(rows.column("pixel_count"), dominant, self.cost_a, self.cost_b,
                                self.class_weights)
        given = 0
        if rows.has(self.cost_column):
            column = rows.column(self.cost_column)
            if np.any(column < 0):
                raise ValueError(f"column {self.cost_column!r} of the 'regions' table has negative clicks")
            known = np.isfinite(column)
            cost[known] = column[known]
            given = int(np.count_nonzero(known & rows.selectable))
        # the query stores float32: rank and budget on exactly the stored values
        return cost.astype(np.float32).astype(np.float64), given

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        needed = [self.score, "pixel_count"] + (["dominant_pred"] if self.class_weights is not None else [])
        rows = load_units(tables, self.unit, pool, needed, optional=[self.cost_column])
        uncertainty = rows.column(self.score)
        cost, given = self.clicks(rows)
        usable = rows.selectable & ~np.isnan(uncertainty) & np.isfinite(cost)
        info = np.full(len(rows), np.nan)
        norm_cost = np.full(len(rows), np.nan)
        info[usable] = minmax(uncertainty[usable], constant=1.0)
        norm_cost[usable] = minmax(cost[usable], constant=0.0)
        g = (1.0 - norm_cost) * info  # NaN outside usable
        extras = {"nan_skipped": int(np.count_nonzero(rows.selectable & np.isnan(uncertainty))),
                  "clicks_from_column": given}
        if budget.units is not None:
            picked = rank_top(rows, g, int(budget.units), usable)
        else:
            picked = self._within_cost(rows, g, cost, usable, float(budget.cost))
        extras["total_cost"] = float(cost[picked].sum())
        reasons = [f"g={a:.3f} I={b:.3f} C={c:.3f} clicks={d:.1f}"
                   for a, b, c, d in zip(g[picked], info[picked], norm_cost[picked], cost[picked])]
        return query_from_rows(rows, picked, g[picked], reasons, cost=cost[picked], extras=extras)

    @staticmethod
    def _within_cost(rows: UnitRows, g: np.ndarray, cost: np.ndarray, usable: np.ndarray,
                     limit: float) -> np.ndarray:
        """Longest prefix of the g ranking with summed clicks <= limit (ranks only what it needs)."""
        total = int(np.count_nonzero(usable))
        if limit <= 0 or total == 0:
            return np.zeros(0, np.int64)
        typical = max(float(np.median(cost[usable])), 1e-9)
        k = min(total, int(2 * limit / typical) + 16)
        while True:
            order = rank_top(rows, g, k, usable)
            fit = take_within_cost(cost[order], limit)
            if fit < len(order) or len(order) >= total:
                return order[:fit]
            k = min(total, 2 * k)
