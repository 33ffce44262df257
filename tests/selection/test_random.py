"""Random baseline (rayal.selection.random)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import LABELED, QUARANTINED, QUEUED, Budget, PoolView, ScoreTables, get_strategy, unit_keys

IDS = [f"f{i:03d}" for i in range(100)]


pool_with = PoolView.from_statuses


def frames() -> ScoreTables:
    return ScoreTables(frames=pa.table({"frame_id": IDS, "uri": IDS, "entropy_mean": np.zeros(100)}))


def pick(tables, pool, n, seed, **params):
    return get_strategy("random", **params).select(tables, pool, Budget(units=n), seed)


def test_seeded_determinism_and_seed_dependence():
    a, b = pick(frames(), pool_with(IDS), 10, seed=3), pick(frames(), pool_with(IDS), 10, seed=3)
    assert a.to_table().equals(b.to_table())
    c = pick(frames(), pool_with(IDS), 10, seed=4)
    assert list(a.frame_id) != list(c.frame_id)
    assert len(set(a.frame_id)) == 10 and set(a.reason) == {"random"}


def test_independent_of_row_order():
    shuffled = ScoreTables(frames=frames().frames.take(np.random.default_rng(0).permutation(100)))
    assert list(pick(frames(), pool_with(IDS), 5, 1).frame_id) == list(pick(shuffled, pool_with(IDS), 5, 1).frame_id)


def test_only_unlabeled_and_fewer_than_budget():
    taken = {(f, -1): s for f, s in zip(IDS[:97], [LABELED, QUEUED, QUARANTINED] * 40)}
    q = pick(frames(), pool_with(IDS, taken), 10, seed=0)
    assert sorted(q.frame_id) == IDS[97:]
    assert len(pick(frames(), pool_with(IDS), 0, seed=0)) == 0


def test_region_units_use_their_rows():
    regions = pa.table({
        "frame_id": ["f000", "f000", "f001", "f002", "f002"],
        "region_id": pa.array([0, 1, 0, 0, 5], pa.int32()),
        "unit": ["patch", "superpixel", "patch", "patch", "patch"],
        "pixel_count": pa.array([9] * 5, pa.int32()),
    })
    pool = pool_with(IDS, {("f001", -1): LABELED, ("f002", 5): QUEUED})
    q = pick(ScoreTables(regions=regions), pool, 10, seed=0, unit="patch")
    assert sorted(zip(q.frame_id, q.region_id)) == [("f000", 0), ("f002", 0)]
    assert set(q.unit) == {"patch"}
    with pytest.raises(ValueError, match="unit"):
        get_strategy("random", unit="pixel")


def test_unit_priority_is_order_free_and_uniform():
    from rayal.selection.hashing import string_hashes, unit_priority

    ids = pa.array([f"frame_{i:06d}" for i in range(100_000)])
    regions = np.arange(100_000) % 7
    p = unit_priority(ids, regions, seed=3)
    perm = np.random.default_rng(0).permutation(100_000)
    assert np.array_equal(unit_priority(ids.take(pa.array(perm)), regions[perm], seed=3), p[perm])
    assert abs(p.mean() - 0.5) < 0.01 and p.min() >= 0 and p.max() < 1
    assert np.histogram(p, bins=10, range=(0, 1))[0].min() > 9_000  # no empty decile
    assert not np.array_equal(unit_priority(ids, regions, seed=4), p)
    # chunked input and sliced arrays hash the same strings the same way
    chunked = pa.chunked_array([ids.slice(0, 10), ids.slice(10, 5)])
    assert np.array_equal(string_hashes(chunked, 1), string_hashes(ids.slice(0, 15), 1))


def test_random_query_does_not_depend_on_row_order():
    ids = [f"f{i}" for i in range(50)]
    table = pa.table({"frame_id": ids, "entropy_mean": np.zeros(50)})
    shuffled = table.take(pa.array(np.random.default_rng(1).permutation(50)))
    pool = PoolView.fresh(ids)
    a = get_strategy("random").select(ScoreTables(frames=table), pool, Budget(units=10), 5)
    b = get_strategy("random").select(ScoreTables(frames=shuffled), pool, Budget(units=10), 5)
    assert list(a.frame_id) == list(b.frame_id)
