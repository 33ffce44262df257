"""Core-set k-center greedy (rayal.selection.coreset).

Embeddings are L2-normalised before distances, so the hand-checked layouts put
points on the unit circle: the distance between angles a and b is 2 sin(|a - b| / 2).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayal.selection import LABELED, QUEUED, Budget, PoolView, ScoreTables, get_strategy, unit_keys
from rayal.selection.coreset import min_distances


pool_with = PoolView.from_statuses


def circle(degrees) -> np.ndarray:
    rad = np.deg2rad(np.asarray(degrees, np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], 1) * 3.0  # any scale: normalised inside


def embeddings(ids, vectors, unit="frame", region_ids=None) -> pa.Table:
    vectors = np.asarray(vectors, np.float16)
    return pa.table({
        "frame_id": ids, "unit": [unit] * len(ids),
        "region_id": pa.array(region_ids if region_ids is not None else [-1] * len(ids), pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
    })


ANGLES = [0, 30, 60, 90, 120, 180]
IDS = [f"a{d:03d}" for d in ANGLES]


def test_farthest_from_labelled_first():
    tables = ScoreTables(embeddings=embeddings(IDS, circle(ANGLES)))
    pool = pool_with(IDS, {("a000", -1): LABELED})
    q = get_strategy("coreset").select(tables, pool, Budget(units=2), seed=0)
    # 180 deg is 2.0 from 0; then 90 deg is sqrt(2) from both 0 and 180
    assert list(q.frame_id) == ["a180", "a090"]
    assert np.allclose(q.score, [2.0, np.sqrt(2)], atol=2e-3)
    assert q.reason[0] == "coreset min_dist=2.000"
    assert q.extras == {"centres": 1, "centres_missing": 0}


def test_queued_units_are_centres_and_never_picked():
    tables = ScoreTables(embeddings=embeddings(IDS, circle(ANGLES)))
    pool = pool_with(IDS, {("a000", -1): LABELED, ("a180", -1): QUEUED})
    q = get_strategy("coreset").select(tables, pool, Budget(units=10), seed=0)
    assert q.frame_id[0] == "a090" and sorted(q.frame_id) == ["a030", "a060", "a090", "a120"]


def test_nothing_labelled_seeded_first_pick(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"p{i:02d}" for i in range(40)]
    table = embeddings(ids, rng.normal(size=(40, 8)))
    pq.write_table(table, tmp_path / "e.parquet")
    strategy, pool = get_strategy("coreset"), pool_with(ids)
    a = strategy.select(ScoreTables(embeddings=table), pool, Budget(units=5), seed=1)
    b = strategy.select(ScoreTables(embeddings=str(tmp_path)), pool, Budget(units=5), seed=1)
    assert a.to_table().equals(b.to_table()) and len(set(a.frame_id)) == 5
    assert np.isinf(a.score[0]) and "random" in a.reason[0]
    firsts = {strategy.select(ScoreTables(embeddings=table), pool, Budget(units=1), seed=s).frame_id[0]
              for s in range(10)}
    assert len(firsts) > 1


def test_regions_and_missing_centre_embeddings():
    ids = ["f0", "f0", "f1", "f1"]
    table = embeddings(ids, circle([0, 90, 180, 30]), unit="patch", region_ids=[0, 1, 0, 1])
    frame_rows = embeddings(["f0", "f1"], circle([0, 0]))  # other unit kind: ignored
    tables = ScoreTables(embeddings=pa.concat_tables([table, frame_rows]))
    pool = pool_with(["f0", "f1", "f2"], {("f0", 0): LABELED, ("f2", 3): LABELED})
    q = get_strategy("coreset", unit="patch").select(tables, pool, Budget(units=3), seed=0)
    assert list(zip(q.frame_id, q.region_id)) == [("f1", 0), ("f0", 1), ("f1", 1)]
    assert q.extras == {"centres": 1, "centres_missing": 1}
    # a frame taken whole makes its regions centres, not candidates
    pool = pool_with(["f0", "f1"], {("f1", -1): LABELED})
    q = get_strategy("coreset", unit="patch").select(tables, pool, Budget(units=1), seed=0)
    assert list(zip(q.frame_id, q.region_id)) == [("f0", 1)]  # 90 deg: 1.0 from 30, 0 deg only 0.52


def test_chunked_distances_match_brute_force():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    c = rng.normal(size=(11, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    brute = np.linalg.norm(x[:, None] - c[None], axis=2).min(1)
    assert np.allclose(min_distances(x, c, chunk=4), brute, atol=1e-3)
    assert np.all(np.isinf(min_distances(x, c[:0])))


def test_budget_zero_and_empty_pool():
    tables = ScoreTables(embeddings=embeddings(IDS, circle(ANGLES)))
    assert len(get_strategy("coreset").select(tables, pool_with(IDS), Budget(units=0), 0)) == 0
    everyone = pool_with(IDS, {(f, -1): LABELED for f in IDS})
    assert len(get_strategy("coreset").select(tables, everyone, Budget(units=3), 0)) == 0
