"""Test-only plugin (loaded by file path through ``selection.plugins`` / load_plugins): one
unit, one measure and one strategy, each registered the way docs/extending.md shows."""
import numpy as np
import torch

from rayal.core import Strategy, register_measure, register_strategy, register_unit
from rayal.selection.common import check_choice, load_units, query_from_rows, rank_top, unit_budget
from rayal.core import UNITS


def stripe_map(image: np.ndarray, scoring) -> np.ndarray:
    """Three horizontal stripes: rows [0, H/3) -> 0, [H/3, 2H/3) -> 1, the rest -> 2."""
    h, w = image.shape[:2]
    return np.repeat((np.arange(h) * 3 // h)[:, None], w, axis=1).astype(np.int32)


def top1_gap(p: torch.Tensor) -> torch.Tensor:
    """1 - max_c p_c: (B, C, H, W) -> (B, H, W)."""
    return 1.0 - p.max(dim=1).values


register_unit("stripe", level="region", label="full", region_map=stripe_map,
              regions_per_frame=lambda scoring: 3)
register_measure("top1_gap", compute=top1_gap)


@register_strategy("toy_lowest", column="top1_gap_max")
class LowestFirst(Strategy):
    """Lowest ``column`` first (the opposite of uncertainty sampling); ``round_tag`` is filled
    in by the loop from the round context."""

    level = "region"

    def __init__(self, unit: str = "stripe", column: str = "top1_gap_max", round_tag: int = -99):
        check_choice("unit", unit, UNITS)
        self.unit, self.column, self.round_tag = unit, column, round_tag

    @classmethod
    def round_params(cls, params, context):
        return {"round_tag": context.round_index}

    def select(self, tables, pool, budget, seed):
        rows = load_units(tables, self.unit, pool, [self.column])
        score = rows.column(self.column)
        picked = rank_top(rows, -score, unit_budget(budget, self))
        reasons = [f"toy round_tag={self.round_tag}"] * len(picked)
        return query_from_rows(rows, picked, score[picked], reasons)
