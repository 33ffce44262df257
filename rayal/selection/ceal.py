"""CEAL: top-K uncertain units plus a shrinking pseudo-label threshold (pure numpy / pyarrow).

Cost-Effective Active Learning (survey_ceal_sa_cereals_vaal.txt, section on CEAL):
each round the ``K = budget`` most uncertain selectable units (whole images or
regions) are queried for annotation, and the pixels of unlabelled frames the
model is already confident about are pseudo-labelled with its prediction.
DESIGN.md fixes the schedule: a pixel is pseudo-labelled when its entropy is
``<= delta_t`` with ``delta_t = max(delta0 - delta_decay * round_index, 0)``
(``delta0 = 0.005``, ``delta_decay = 0.00033``).

Selection only decides what to annotate; the pseudo-labels are made by the
trainer. The query's ``extras`` carry ``pseudo_label_threshold`` and
``pseudo_label_measure`` (always ``"entropy"``), and the trainer turns each
unlabelled frame's entropy map into a mask with :func:`pseudo_label_mask`.

The query part ranks exactly like the ``entropy`` / ``margin`` / ... top-B
strategies (:func:`rayal.selection.common.rank_top`: ties by frame_id, then
region_id).
"""
from __future__ import annotations

import numpy as np

from rayal.core.measures import AGGREGATES, PIXEL_MEASURES
from rayal.core.tables import score_column
from rayal.selection.base import Budget, PoolView, Query, ScoreTables, Strategy
from rayal.selection.common import (UNITS, check_choice, level_of, load_units, query_from_rows,
                                    rank_top, unit_budget)
from rayal.selection.registry import register_strategy

MEASURES = PIXEL_MEASURES   # live view of the measure registry


def pseudo_label_threshold(round_index: int, delta0: float = 0.005,
                           delta_decay: float = 0.00033) -> float:
    """Entropy threshold of round ``round_index``: ``max(delta0 - delta_decay * round_index, 0)``."""
    if int(round_index) != round_index or round_index < 0:
        raise ValueError(f"round_index must be an integer >= 0, got {round_index!r}")
    if not delta0 >= 0:
        raise ValueError(f"delta0 must be >= 0, got {delta0!r}")
    if not delta_decay >= 0:
        raise ValueError(f"delta_decay must be >= 0, got {delta_decay!r}")
    return float(max(delta0 - delta_decay * int(round_index), 0.0))


def pseudo_label_mask(entropy_map: np.ndarray, threshold: float) -> np.ndarray:
    """(H, W) pixel entropy -> (H, W) bool: True where the pixel gets a pseudo-label.

    A pixel is pseudo-labelled when its entropy is ``<= threshold``. NaN pixels
    never are, and a threshold ``<= 0`` (the schedule has run out) pseudo-labels
    nothing. Works element-wise, so a (B, H, W) stack is fine too.
    """
    entropy_map = np.asarray(entropy_map)
    if not np.issubdtype(entropy_map.dtype, np.floating):
        entropy_map = entropy_map.astype(np.float64)
    if not threshold > 0:
        return np.zeros(entropy_map.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return entropy_map <= threshold  # NaN <= t is False


@register_strategy("ceal")
class CEAL(Strategy):
    """Top-K uncertain units, plus the round's pseudo-label threshold for training.

    Parameters: ``unit`` (image | patch | superpixel; image ranks the frames
    table, the others the regions table), ``measure`` and ``aggregate``
    (the ranked column is ``{measure}_{aggregate}``), ``delta0``,
    ``delta_decay`` and ``round_index`` (the pseudo-label schedule).
    """

    level = "image"

    @classmethod
    def round_params(cls, params: dict, context) -> dict:
        """The pseudo-label threshold shrinks with the AL round: ``round_index`` from the run."""
        return {"round_index": context.round_index}

    @classmethod
    def training_extras(cls, params: dict) -> dict:
        """``pseudo_label_threshold`` of the round (entropy, nats) for CEAL's pseudo-labels."""
        return {"pseudo_label_threshold": pseudo_label_threshold(
            params.get("round_index", 0), params.get("delta0", 0.005),
            params.get("delta_decay", 0.00033))}

    def __init__(self, unit: str = "image", measure: str = "entropy", aggregate: str = "mean",
                 delta0: float = 0.005, delta_decay: float = 0.00033, round_index: int = 0):
        check_choice("unit", unit, UNITS)
        check_choice("measure", measure, MEASURES)
        check_choice("aggregate", aggregate, AGGREGATES)
        if isinstance(round_index, bool) or not isinstance(round_index, (int, np.integer)):
            raise ValueError(f"round_index must be an integer >= 0, got {round_index!r}")
        self.threshold = pseudo_label_threshold(round_index, delta0, delta_decay)  # validates
        self.unit, self.measure, self.aggregate = unit, measure, aggregate
        self.delta0, self.delta_decay, self.round_index = float(delta0), float(delta_decay), int(round_index)
        self.level = level_of(unit)

    @property
    def column(self) -> str:
        return score_column(self.measure, self.aggregate)

    def _extras(self) -> dict:
        return {"pseudo_label_threshold": self.threshold, "pseudo_label_measure": "entropy",
                "round_index": self.round_index, "delta0": self.delta0,
                "delta_decay": self.delta_decay}

    def select(self, tables: ScoreTables, pool: PoolView, budget: Budget, seed: int) -> Query:
        """Top ``budget.units`` selectable units by ``{measure}_{aggregate}``, best first."""
        n = unit_budget(budget, self)
        rows = load_units(tables, self.unit, pool, [self.column])
        score = rows.column(self.column)
        picked = rank_top(rows, score, n)
        values = score[picked]
        reasons = [f"ceal {self.column}={v:.6g}" for v in values]
        return query_from_rows(rows, picked, values, reasons, extras=self._extras())
