"""VAAL strategy (rayal.selection.vaal): top-B frames by vaal_score on hand-made tables."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import (LABELED, QUARANTINED, QUEUED, Budget, PoolView, ScoreTables,
                             get_strategy, list_strategies)

IDS = [f"f{i}" for i in range(6)]


def tables(scores) -> ScoreTables:
    return ScoreTables(frames=pa.table({"frame_id": IDS, "vaal_score": pa.array(scores, pa.float32())}))


def select(tables, pool, n, **params):
    return get_strategy("vaal", **params).select(tables, pool, Budget(units=n), seed=0)


def test_ranks_by_score_ties_by_frame_id():
    t = tables([0.2, 0.9, 0.5, None, 0.9, 0.75])
    q = select(t, PoolView.from_statuses(IDS), 4)
    assert "vaal" in list_strategies()
    assert list(q.frame_id) == ["f1", "f4", "f5", "f2"]  # 0.9 tie: smaller frame_id first
    assert np.allclose(q.score, [0.9, 0.9, 0.75, 0.5])
    assert list(q.reason) == ["vaal_score=0.900", "vaal_score=0.900", "vaal_score=0.750",
                              "vaal_score=0.500"]
    assert list(q.unit) == ["image"] * 4 and list(q.region_id) == [-1] * 4
    # the null score is never picked, even with budget to spare
    everything = select(t, PoolView.from_statuses(IDS), 10)
    assert len(everything) == 5 and "f3" not in set(everything.frame_id)
    assert everything.extras["nan_skipped"] == 1


def test_excluded_statuses_never_picked():
    t = tables([0.2, 0.9, 0.5, 0.1, 0.8, 0.75])
    pool = PoolView.from_statuses(IDS, {("f1", -1): LABELED, ("f4", -1): QUEUED,
                                        ("f5", -1): QUARANTINED})
    q = select(t, pool, 6)
    assert list(q.frame_id) == ["f2", "f0", "f3"]


def test_missing_column_and_region_units_are_errors():
    no_vaal = ScoreTables(frames=pa.table({"frame_id": IDS, "entropy_mean": [0.1] * 6}))
    with pytest.raises(ValueError, match="run the VAAL scoring step first"):
        select(no_vaal, PoolView.from_statuses(IDS), 2)
    with pytest.raises(ValueError, match="unit must be 'image'"):
        get_strategy("vaal", unit="patch")
    with pytest.raises(ValueError, match="cost budget"):
        get_strategy("vaal").select(tables([0.1] * 6), PoolView.from_statuses(IDS), Budget(cost=3.0), 0)
