"""Top-B uncertainty strategies (rayal.selection.topk) on hand-made score tables."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayal.selection import (LABELED, QUARANTINED, QUEUED, Budget, PoolView, ScoreTables,
                             get_strategy, unit_keys)
from rayal.selection.common import load_units, rank_top

NAN = float("nan")
IDS = [f"f{i}" for i in range(6)]


pool_with = PoolView.from_statuses


def frames_table() -> pa.Table:
    return pa.table({
        "frame_id": IDS, "uri": [f"/d/{f}.png" for f in IDS],
        "entropy_mean": pa.array([0.1, 0.9, 0.5, NAN, 0.9, 0.3], pa.float32()),
        "entropy_max": [0.2, 0.3, 0.99, 0.4, 0.5, 0.6],
        "area_disagreement": [0.5, None, 0.7, 0.1, 0.2, 0.3],
    })


def select(name, tables, pool, n, seed=0, **params):
    return get_strategy(name, **params).select(tables, pool, Budget(units=n), seed)


def test_order_ties_and_reasons():
    q = select("entropy", ScoreTables(frames=frames_table()), pool_with(IDS), 3)
    # 0.9 tie between f1 and f4 goes to the smaller frame_id
    assert list(q.frame_id) == ["f1", "f4", "f2"]
    assert list(q.reason) == ["entropy_mean=0.900", "entropy_mean=0.900", "entropy_mean=0.500"]
    assert np.allclose(q.score, [0.9, 0.9, 0.5])
    assert list(q.unit) == ["image"] * 3 and list(q.region_id) == [-1] * 3
    assert q.extras["nan_skipped"] == 1


def test_aggregate_max_and_area_disagreement():
    tables, pool = ScoreTables(frames=frames_table()), pool_with(IDS)
    assert list(select("entropy", tables, pool, 2, aggregate="max").frame_id) == ["f2", "f5"]
    q = select("area_disagreement", tables, pool, 6)
    assert list(q.frame_id) == ["f2", "f0", "f5", "f4", "f3"]  # null is skipped like NaN
    assert q.extras["nan_skipped"] == 1 and q.reason[0] == "area_disagreement=0.700"


def test_nan_never_selected_even_when_budget_exceeds():
    q = select("entropy", ScoreTables(frames=frames_table()), pool_with(IDS), 10)
    assert "f3" not in set(q.frame_id) and len(q) == 5


def test_taken_units_never_selected_and_refilled():
    pool = pool_with(IDS, {("f1", -1): LABELED, ("f4", -1): QUEUED, ("f2", -1): QUARANTINED})
    q = select("entropy", ScoreTables(frames=frames_table()), pool, 3)
    assert list(q.frame_id) == ["f5", "f0"]  # fewer than B: f3 is NaN


def test_frames_outside_pool_and_duplicate_rows():
    table = pa.concat_tables([frames_table(), frames_table().slice(1, 1)])  # f1 twice
    q = select("entropy", ScoreTables(frames=table), pool_with(["f0", "f1", "f2", "f3"]), 3)
    assert list(q.frame_id) == ["f1", "f2", "f0"]


def test_missing_column_names_column_and_table():
    with pytest.raises(ValueError, match=r"'bald_mean'.*'frames'"):
        select("bald", ScoreTables(frames=frames_table()), pool_with(IDS), 2)
    with pytest.raises(ValueError, match="regions"):
        select("entropy", ScoreTables(frames=frames_table()), pool_with(IDS), 2, unit="patch")


def test_parameters_and_budgets():
    with pytest.raises(ValueError, match="unit"):
        get_strategy("area_disagreement", unit="patch")
    with pytest.raises(ValueError, match="aggregate"):
        get_strategy("entropy", aggregate="median")
    tables, pool = ScoreTables(frames=frames_table()), pool_with(IDS)
    assert len(select("margin", ScoreTables(frames=frames_table().append_column(
        "margin_mean", pa.array(np.ones(6)))), pool, 0)) == 0
    with pytest.raises(ValueError, match="cost"):
        get_strategy("entropy").select(tables, pool, Budget(cost=5.0), 0)


@pytest.mark.parametrize("name", ["entropy", "margin", "least_confidence", "bald",
                                  "vote_entropy", "variance"])
def test_every_measure_name_reads_its_column(name):
    rng = np.random.default_rng(1)
    values = rng.random(6)
    table = pa.table({"frame_id": IDS, f"{name}_mean": values})
    q = select(name, ScoreTables(frames=table), pool_with(IDS), 2)
    assert list(q.frame_id) == [IDS[i] for i in np.argsort(-values)[:2]]
    assert q.reason[0].startswith(f"{name}_mean=")


def regions_table() -> pa.Table:
    return pa.table({
        "frame_id": ["f0", "f0", "f0", "f1", "f1", "f2"],
        "region_id": pa.array([0, 1, 0, 3, 2, 0], pa.int32()),
        "unit": ["patch", "patch", "superpixel", "patch", "patch", "patch"],
        "pixel_count": pa.array([16] * 6, pa.int32()),
        "entropy_mean": [0.5, 0.8, 0.99, 0.7, 0.6, 0.4],
    })


def test_region_level_respects_unit_region_and_whole_image_status():
    tables = ScoreTables(regions=regions_table())
    q = select("entropy", tables, pool_with(IDS), 10, unit="patch")
    assert list(zip(q.frame_id, q.region_id)) == [("f0", 1), ("f1", 3), ("f1", 2), ("f0", 0), ("f2", 0)]
    assert set(q.unit) == {"patch"}
    pool = pool_with(IDS, {("f0", 1): LABELED, ("f1", -1): LABELED})  # f1 taken whole
    q = select("entropy", tables, pool, 10, unit="patch")
    assert list(zip(q.frame_id, q.region_id)) == [("f0", 0), ("f2", 0)]
    q = select("entropy", tables, pool_with(IDS), 10, unit="superpixel")
    assert list(zip(q.frame_id, q.region_id)) == [("f0", 0)]


def test_parquet_dataset_matches_in_memory(tmp_path):
    pq.write_table(frames_table(), tmp_path / "part-0.parquet")
    pool = pool_with(IDS, {("f4", -1): LABELED})
    a = select("entropy", ScoreTables(frames=str(tmp_path)), pool, 4)
    b = select("entropy", ScoreTables(frames=frames_table()), pool, 4)
    assert a.to_table().equals(b.to_table())


def test_rank_top_matches_full_sort_with_many_ties():
    rng = np.random.default_rng(0)
    n = 5000
    ids = np.array([f"x{i:05d}" for i in rng.permutation(n)])
    score = rng.integers(0, 20, n).astype(np.float64)  # heavy ties
    score[rng.random(n) < 0.05] = np.nan
    table = pa.table({"frame_id": ids, "entropy_mean": score})
    rows = load_units(ScoreTables(frames=table), "image", pool_with(list(ids)), ["entropy_mean"])
    ok = ~np.isnan(score)
    ref = np.flatnonzero(ok)[np.lexsort((ids[ok], -score[ok]))]
    for k in (1, 7, 300, n):
        assert np.array_equal(rank_top(rows, rows.column("entropy_mean"), k), ref[:k])


def test_deterministic():
    tables, pool = ScoreTables(frames=frames_table()), pool_with(IDS)
    assert select("entropy", tables, pool, 3, seed=1).to_table().equals(
        select("entropy", tables, pool, 3, seed=2).to_table())


def test_pool_frame_index_lookup():
    pool = pool_with([f"p{i}" for i in range(200)] + ["p5"])  # a repeated id: first position wins
    ids = pa.array(["p7", "zz", "p5", "p199", "p7", None])
    assert list(pool.frame_index(ids)) == [7, -1, 5, 199, 7, -1]


def test_widening_past_many_taken_top_units():
    ids = [f"g{i:04d}" for i in range(2000)]
    table = pa.table({"frame_id": ids, "entropy_mean": np.linspace(1.0, 0.0, 2000)})
    pool = pool_with(ids, {(f, -1): LABELED for f in ids[:900]})  # the 900 best are taken
    q = select("entropy", ScoreTables(frames=table), pool, 5)
    assert list(q.frame_id) == ids[900:905]
