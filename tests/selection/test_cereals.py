"""CEREALS cost-aware region selection (rayal.selection.cereals)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import LABELED, QUEUED, Budget, PoolView, ScoreTables, get_strategy, unit_keys


pool_with = PoolView.from_statuses


def regions(pixel_count=(100, 400, 900, 1600), entropy=(0.2, 0.8, 0.5, 1.0), clicks=None,
            dominant=(0, 1, 2, 1)) -> ScoreTables:
    n = len(pixel_count)
    cols = {"frame_id": ["f0"] * n, "region_id": pa.array(range(n), pa.int32()),
            "unit": ["superpixel"] * n, "pixel_count": pa.array(pixel_count, pa.int32()),
            "entropy_mean": pa.array(entropy, pa.float32()),
            "dominant_pred": pa.array(dominant, pa.int16())}
    if clicks is not None:
        cols["clicks"] = pa.array(clicks, pa.float32())
    return ScoreTables(regions=pa.table(cols))


def run(t, budget, pool=None, **params):
    params.setdefault("unit", "superpixel")
    return get_strategy("cereals", **params).select(t, pool or pool_with(["f0", "f1"]), budget, seed=0)


def test_g_formula_by_hand():
    # clicks = 1 + 0.25 sqrt(px) = [3.5, 6, 8.5, 11] -> C = [0, 1/3, 2/3, 1]
    # I = minmax([.2, .8, .5, 1]) = [0, .75, .375, 1]; g = (1 - C) I = [0, .5, .125, 0]
    q = run(regions(), Budget(units=4))
    assert list(q.region_id) == [1, 2, 0, 3]  # g ties at 0 go to the lower region_id
    assert np.allclose(q.score, [0.5, 0.125, 0.0, 0.0], atol=1e-6)
    assert np.allclose(q.cost, [6.0, 8.5, 3.5, 11.0])
    assert q.reason[0] == "g=0.500 I=0.750 C=0.333 clicks=6.0"
    assert list(run(regions(), Budget(units=1)).region_id) == [1]


def test_cost_budget_is_a_respected_prefix():
    assert list(run(regions(), Budget(cost=14.4)).region_id) == [1]  # 6 + 8.5 > 14.4
    q = run(regions(), Budget(cost=14.5))
    assert list(q.region_id) == [1, 2] and float(np.sum(q.cost, dtype=np.float64)) == 14.5
    assert len(run(regions(), Budget(cost=0.0))) == 0
    assert len(run(regions(), Budget(cost=5.0))) == 0  # the best region alone costs 6


def test_random_tables_never_exceed_cost_budget():
    rng = np.random.default_rng(0)
    n = 3000
    t = regions(rng.integers(10, 5000, n), rng.random(n), dominant=np.zeros(n))
    units = run(t, Budget(units=n))
    for limit in (0.5, 17.3, 250.0, 4000.0, 1e9):
        q = run(t, Budget(cost=limit))
        total = float(np.sum(q.cost, dtype=np.float64))
        assert total <= limit
        assert list(q.region_id) == list(units.region_id[:len(q)])  # the g ranking's prefix
        if len(q) < n:
            assert total + float(units.cost[len(q)]) > limit


def test_clicks_column_and_class_weights():
    # clicks override: [10, 2, null -> 8.5 estimate, 6] -> C = minmax = [1, 0, .8125, .5]
    q = run(regions(clicks=[10, 2, None, 6]), Budget(units=4))
    info = np.array([0.0, 0.75, 0.375, 1.0])
    g = (1 - np.array([1.0, 0.0, 0.8125, 0.5])) * info  # [0, .75, .0703, .5]
    assert list(q.region_id) == [1, 3, 2, 0]
    assert np.allclose(q.score, np.sort(g)[::-1], atol=1e-6)
    assert q.extras["clicks_from_column"] == 3
    # weights per predicted class: [1, 1, 0] -> clicks = [3.5, 6, 1, 11]
    q = run(regions(), Budget(units=4), class_weights=[1.0, 1.0, 0.0])
    assert np.allclose(sorted(q.cost), [1.0, 3.5, 6.0, 11.0])
    with pytest.raises(ValueError, match="class_weights"):
        run(regions(), Budget(units=1), class_weights=[1.0])


def test_taken_regions_skipped_and_params():
    pool = pool_with(["f0"], {("f0", 1): LABELED, ("f0", 2): QUEUED})
    q = run(regions(), Budget(units=4), pool=pool)
    assert sorted(q.region_id) == [0, 3]
    assert len(run(regions(), Budget(units=4), pool=pool_with(["f0"], {("f0", -1): LABELED}))) == 0
    with pytest.raises(ValueError, match="unit"):
        get_strategy("cereals", unit="image")
    with pytest.raises(ValueError, match="'vote_entropy_mean'.*'regions'"):
        run(regions(), Budget(units=1), score="vote_entropy_mean")
    assert get_strategy("cereals").supports_cost and get_strategy("cereals").level == "region"
