"""CEAL: threshold schedule, pseudo-label mask, top-K query over frames and regions."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import (LABELED, QUARANTINED, QUEUED, Budget, PoolView, ScoreTables,
                             get_strategy, unit_keys)
from rayal.selection.ceal import CEAL, pseudo_label_mask, pseudo_label_threshold


def frames_table(n: int = 10, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"frame_id": [f"f{i}" for i in range(n)],
                     "entropy_mean": rng.random(n).astype(np.float32),
                     "entropy_max": rng.random(n).astype(np.float32),
                     "margin_mean": rng.random(n).astype(np.float32)})


def regions_table(n_frames: int = 4, per_frame: int = 4, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = n_frames * per_frame
    units = ["patch"] * n + ["superpixel"] * n
    return pa.table({"frame_id": [f"f{i // per_frame}" for i in range(n)] * 2,
                     "region_id": pa.array(np.tile(np.arange(n) % per_frame, 2).astype(np.int32)),
                     "unit": units, "pixel_count": pa.array(np.full(2 * n, 10, np.int32)),
                     "entropy_mean": rng.random(2 * n).astype(np.float32)})


def test_threshold_schedule():
    assert pseudo_label_threshold(0) == pytest.approx(0.005)
    assert pseudo_label_threshold(3) == pytest.approx(0.005 - 0.00099)
    assert pseudo_label_threshold(15) == pytest.approx(0.005 - 15 * 0.00033)
    assert pseudo_label_threshold(16) == 0.0  # 0.005 - 0.00528 < 0 -> clamped
    assert pseudo_label_threshold(1000) == 0.0
    assert pseudo_label_threshold(2, delta0=0.01, delta_decay=0.001) == pytest.approx(0.008)
    with pytest.raises(ValueError, match="round_index"):
        pseudo_label_threshold(-1)
    with pytest.raises(ValueError, match="delta0"):
        pseudo_label_threshold(0, delta0=-1.0)


def test_pseudo_label_mask():
    entropy = np.array([[0.0, 0.001, 0.005], [0.0051, np.nan, 2.0]], np.float32)
    mask = pseudo_label_mask(entropy, 0.005)
    assert mask.dtype == bool and mask.shape == (2, 3)
    assert mask.tolist() == [[True, True, True], [False, False, False]]
    assert not pseudo_label_mask(entropy, 0.0).any()  # schedule exhausted: nothing
    assert pseudo_label_mask(np.zeros((2, 4, 5)), 0.001).all()  # batched maps work too


def test_query_is_top_k_images_with_extras():
    frames = frames_table()
    scores = frames.column("entropy_mean").to_numpy()
    strategy = get_strategy("ceal", round_index=3)
    query = strategy.select(ScoreTables(frames=frames), PoolView.fresh(frames.column("frame_id")),
                            Budget(units=4), seed=0)
    expected = [f"f{i}" for i in np.argsort(-scores)[:4]]
    assert list(query.frame_id) == expected
    assert list(query.region_id) == [-1] * 4 and set(query.unit) == {"image"}
    assert np.all(np.diff(query.score) <= 0)
    assert query.reason[0].startswith("ceal entropy_mean=")
    assert query.extras["pseudo_label_threshold"] == pytest.approx(0.005 - 0.00099)
    assert query.extras["pseudo_label_measure"] == "entropy"
    assert strategy.level == "image"


def test_query_skips_taken_units_and_other_measures():
    frames = frames_table()
    ids = frames.column("frame_id")
    order = np.argsort(-frames.column("margin_mean").to_numpy())
    taken = order[:3]  # the three best are queued / labelled / quarantined
    pool = PoolView(frame_ids=ids, keys=unit_keys(taken, np.full(3, -1)),
                    status=np.array([QUEUED, LABELED, QUARANTINED], np.int8),
                    dominant_class=np.full(3, -1, np.int16))
    query = CEAL(measure="margin").select(ScoreTables(frames=frames), pool, Budget(units=2), 0)
    assert list(query.frame_id) == [f"f{i}" for i in order[3:5]]


def test_region_level_and_frames_outside_pool():
    regions = regions_table()
    pool = PoolView.fresh(["f0", "f1", "f2"])  # f3 is not in the pool
    strategy = CEAL(unit="patch")
    assert strategy.level == "region"
    query = strategy.select(ScoreTables(regions=regions), pool, Budget(units=5), 0)
    table = regions.to_pandas()
    table = table[(table.unit == "patch") & (table.frame_id != "f3")]
    table = table.sort_values("entropy_mean", ascending=False, kind="stable").head(5)
    assert list(zip(query.frame_id, query.region_id)) == list(zip(table.frame_id, table.region_id))
    assert set(query.unit) == {"patch"}


def test_query_matches_entropy_top_k_strategy():
    regions = regions_table(n_frames=50, per_frame=8, seed=3)
    tables, pool = ScoreTables(regions=regions), PoolView.fresh([f"f{i}" for i in range(50)])
    ceal = CEAL(unit="superpixel", round_index=20).select(tables, pool, Budget(units=17), 0)
    topk = get_strategy("entropy", unit="superpixel").select(tables, pool, Budget(units=17), 0)
    assert list(ceal.frame_id) == list(topk.frame_id)
    assert np.array_equal(ceal.region_id, topk.region_id)
    assert ceal.extras["pseudo_label_threshold"] == 0.0


def test_budget_larger_than_pool_and_zero():
    frames = frames_table(n=3)
    tables, pool = ScoreTables(frames=frames), PoolView.fresh(frames.column("frame_id"))
    assert len(CEAL().select(tables, pool, Budget(units=10), 0)) == 3
    assert len(CEAL().select(tables, pool, Budget(units=0), 0)) == 0


def test_bad_parameters():
    with pytest.raises(ValueError, match="unit"):
        CEAL(unit="pixel")
    with pytest.raises(ValueError, match="measure"):
        CEAL(measure="dice")
    with pytest.raises(ValueError, match="aggregate"):
        CEAL(aggregate="median")
    with pytest.raises(ValueError, match="round_index"):
        CEAL(round_index=-2)
    with pytest.raises(ValueError, match="round_index"):
        CEAL(round_index=1.5)
    frames = frames_table()
    with pytest.raises(ValueError, match="bald_mean"):
        CEAL(measure="bald").select(ScoreTables(frames=frames), PoolView.fresh(frames.column("frame_id")),
                                    Budget(units=1), 0)
    with pytest.raises(ValueError, match="units"):
        CEAL().select(ScoreTables(frames=frames), PoolView.fresh(frames.column("frame_id")),
                      Budget(cost=3.0), 0)
