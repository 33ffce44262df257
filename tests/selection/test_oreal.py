"""OREAL: water-filling class budget, class-served selection with refill, streaming."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayal.selection import (LABELED, QUEUED, Budget, PoolView, ScoreTables, get_strategy,
                             unit_keys)
from rayal.selection.base import FrameLookup
from rayal.selection.oreal import OREAL, TopK, class_budget


def iterative_budget(n, Q):
    """The definition: +1 to the class with the smallest n_c + delta_c, ties to the lowest id."""
    n = np.asarray(n, np.int64)
    delta = np.zeros(len(n), np.int64)
    for _ in range(Q):
        delta[int(np.argmin(n + delta))] += 1  # argmin returns the first (lowest id) minimum
    return delta


def regions_table(frame_id, region_id, ovr, unit="superpixel"):
    ovr = np.asarray(ovr, np.float32)
    n, C = ovr.shape
    return pa.table({
        "frame_id": pa.array(list(frame_id), pa.string()),
        "region_id": pa.array(np.asarray(region_id, np.int32)),
        "unit": pa.array([unit] * n),
        "pixel_count": pa.array(np.full(n, 100, np.int32)),
        "entropy_mean": pa.array(ovr.mean(1)),
        "ovr_max": pa.FixedSizeListArray.from_arrays(pa.array(ovr.ravel()), C),
        "dominant_pred": pa.array(ovr.argmax(1).astype(np.int16)),
    })


def pool_with(frames, labeled=(), status=LABELED):
    """labeled: (frame_index, region_id, dominant_class) triples."""
    if not labeled:
        return PoolView.fresh(frames)
    fi, rid, dom = (np.array(x) for x in zip(*labeled))
    return PoolView(frame_ids=pa.array(frames), keys=unit_keys(fi, rid),
                    status=np.full(len(fi), status, np.int8), dominant_class=dom.astype(np.int16))


def rows(query):
    return list(zip(query.frame_id, query.region_id.tolist(), query.class_id.tolist()))


# ---------------------------------------------------------------- class budget
def test_class_budget_example():
    n = np.array([10, 2, 5])
    delta = class_budget(n, 6)
    assert delta.sum() == 6 and (n + delta).min() == 6
    assert delta.tolist() == iterative_budget(n, 6).tolist() == [0, 5, 1]


def test_class_budget_matches_iterative_definition():
    rng = np.random.default_rng(0)
    for _ in range(200):
        C = int(rng.integers(1, 9))
        n = rng.integers(0, int(rng.choice([1, 5, 30])), size=C)
        Q = int(rng.integers(0, 60))
        delta = class_budget(n, Q)
        assert delta.dtype.kind == "i" and delta.sum() == Q and delta.min() >= 0
        assert delta.tolist() == iterative_budget(n, Q).tolist(), (n, Q)


def test_class_budget_edges():
    assert class_budget([4, 1, 7], 0).tolist() == [0, 0, 0]
    assert class_budget([3], 11).tolist() == [11]
    assert class_budget([3, 3, 3], 2).tolist() == [1, 1, 0]  # ties to the lowest ids
    assert class_budget([0, 5, 0], 1).tolist() == [1, 0, 0]
    assert class_budget([0, 0], 5).tolist() == [3, 2]
    assert class_budget([], 0).tolist() == []
    big = class_budget([0, 10**9], 10**12)  # closed form: no O(Q) loop
    assert big.tolist() == [(10**12 + 10**9) // 2, (10**12 - 10**9) // 2]
    for bad in (([1, 2], -1), ([-1, 2], 1), ([], 1), ([[1]], 1)):
        with pytest.raises(ValueError):
            class_budget(*bad)


# ---------------------------------------------------------------- helpers
def test_frame_lookup_and_topk_ties():
    frames = ["b", "a", "d", "c"]
    lookup = FrameLookup(pa.array(frames))
    assert lookup.index(pa.array(["c", "x", None, "b", "c"])).tolist() == [3, -1, -1, 0, 3]
    assert lookup.rank.tolist() == [1, 0, 3, 2]
    top = TopK(3, lookup.rank)
    top.push(np.array([1.0, 1.0]), np.array([0, 3]), np.array([5, 1]))  # b, c
    top.push(np.array([1.0, 1.0, 0.5]), np.array([1, 0, 2]), np.array([9, 2, 0]))  # a, b, d
    assert top.frame_index.tolist() == [1, 0, 0] and top.region_id.tolist() == [9, 2, 5]


# ---------------------------------------------------------------- selection
def test_shared_best_unit_is_taken_once_and_second_class_refills():
    frames = ["f0", "f1"]
    # unit (f0, 0) is the best for both classes
    table = regions_table(["f0", "f0", "f1", "f1"], [0, 1, 0, 1],
                          [[0.9, 0.9], [0.8, 0.1], [0.2, 0.7], [0.1, 0.6]])
    q = OREAL().select(ScoreTables(regions=table), PoolView.fresh(frames), Budget(units=2), seed=0)
    assert rows(q) == [("f0", 0, 0), ("f1", 0, 1)]
    assert q.reason.tolist() == ["oreal class=0 ovr=0.90", "oreal class=1 ovr=0.70"]
    assert q.extras["class_budget"] == [1, 1] and q.extras["class_counts"] == [0, 0]
    assert q.unit.tolist() == ["superpixel"] * 2 and q.cluster.tolist() == [-1, -1]


def test_previously_taken_units_are_never_selected():
    frames = ["f0", "f1", "f2"]
    table = regions_table(["f0", "f0", "f1", "f1", "f2"], [0, 1, 0, 1, 0],
                          [[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6], [0.5, 0.5]])
    labeled = pool_with(frames, [(0, 0, 0), (1, -1, 1)])  # (f0, 0) and the whole of f1 labelled
    q = OREAL().select(ScoreTables(regions=table), labeled, Budget(units=2), seed=0)
    # n = [1, 1] -> delta [1, 1]; (f0,0) and every region of f1 are gone
    assert rows(q) == [("f0", 1, 0), ("f2", 0, 1)]
    queued = pool_with(frames, [(0, 0, -1), (0, 1, -1)], status=QUEUED)
    q = OREAL().select(ScoreTables(regions=table), queued, Budget(units=3), seed=0)
    assert ("f0", 0) not in [(f, r) for f, r, _ in rows(q)] and len(q) == 3
    assert all(f != "f0" for f in q.frame_id)


def test_classes_served_in_increasing_level():
    frames = ["f0", "f1", "f2"]
    # labelled: 5 units of class 0, 2 of class 2 (on frame f2, regions 10..) -> n = [5, 0, 2]
    lab = [(2, 10 + i, 0) for i in range(5)] + [(2, 20 + i, 2) for i in range(2)]
    pool = pool_with(frames, lab)
    # delta = [0, 3, 1], n + delta = [5, 3, 3]: class 1 is served before class 2
    assert class_budget(pool.class_counts(3), 4).tolist() == [0, 3, 1]
    table = regions_table(["f0", "f0", "f0", "f1", "f1"], [0, 1, 2, 0, 1],
                          [[0.0, 0.9, 0.9], [0.0, 0.8, 0.1], [0.0, 0.7, 0.1],
                           [0.9, 0.1, 0.8], [0.0, 0.6, 0.2]])
    q = OREAL().select(ScoreTables(regions=table), pool, Budget(units=4), seed=0)
    assert rows(q) == [("f0", 0, 1), ("f0", 1, 1), ("f0", 2, 1), ("f1", 0, 2)]


def test_budget_larger_than_pool_takes_everything_once():
    table = regions_table(["a", "a", "b"], [0, 1, 0], [[0.3, 0.1], [0.2, 0.9], [0.5, 0.4]])
    q = OREAL().select(ScoreTables(regions=table), PoolView.fresh(["a", "b"]), Budget(units=10), 0)
    assert sorted((f, r) for f, r, _ in rows(q)) == [("a", 0), ("a", 1), ("b", 0)]


def test_unit_filter_nan_and_errors():
    t1 = regions_table(["a", "a"], [0, 1], [[np.nan, 0.2], [0.1, 0.3]])
    t2 = regions_table(["a"], [0], [[0.99, 0.99]], unit="patch")
    table = pa.concat_tables([t1, t2])
    pool = PoolView.fresh(["a"])
    q = OREAL().select(ScoreTables(regions=table), pool, Budget(units=1), 0)
    assert rows(q) == [("a", 1, 0)]  # NaN ranks last; the patch row is another unit kind
    q = OREAL().select(ScoreTables(regions=t1.slice(0, 2)), pool, Budget(units=2), 0)
    assert rows(q) == [("a", 1, 0), ("a", 0, 1)]  # (a, 0) is only taken where it has a score
    nan_only = regions_table(["a", "a"], [0, 1], [[np.nan], [0.1]])
    q = OREAL().select(ScoreTables(regions=nan_only), pool, Budget(units=2), 0)
    assert rows(q) == [("a", 1, 0)]  # a NaN score is never selected
    q = OREAL(unit="patch").select(ScoreTables(regions=table), pool, Budget(units=1), 0)
    assert rows(q) == [("a", 0, 0)]
    assert len(OREAL().select(ScoreTables(regions=table), pool, Budget(units=0), 0)) == 0
    with pytest.raises(ValueError, match="num_classes"):
        OREAL(num_classes=3).select(ScoreTables(regions=table), pool, Budget(units=1), 0)
    with pytest.raises(ValueError, match="units"):
        OREAL().select(ScoreTables(regions=table), pool, Budget(cost=3.0), 0)
    with pytest.raises(ValueError, match="ovr_max"):
        OREAL().select(ScoreTables(regions=table.drop_columns(["ovr_max"])), pool, Budget(units=1), 0)
    with pytest.raises(ValueError, match="unit"):
        OREAL(unit="image")
    assert isinstance(get_strategy("oreal"), OREAL)


def reference_oreal(table, pool, Q):
    """Whole-table reference: sort each class by (score desc, frame_id, region_id)."""
    fid = table.column("frame_id").to_pylist()
    rid = table.column("region_id").to_pylist()
    ovr = np.stack(table.column("ovr_max").to_numpy(zero_copy_only=False))
    fi = pool.frame_index(table.column("frame_id"))
    ok = pool.selectable(fi, np.asarray(rid))
    n = pool.class_counts(ovr.shape[1])
    delta = class_budget(n, Q)
    taken, out = set(), []
    for c in np.lexsort((np.arange(len(n)), n + delta)):
        ranked = sorted(np.flatnonzero(ok), key=lambda i: (-ovr[i, c], fid[i], rid[i]))
        got = 0
        for i in ranked:
            if got == delta[c]:
                break
            if (fid[i], rid[i]) not in taken:
                taken.add((fid[i], rid[i]))
                out.append((fid[i], rid[i], int(c)))
                got += 1
    return out


def test_streaming_parquet_matches_in_memory_and_reference(tmp_path):
    rng = np.random.default_rng(3)
    frames = [f"frame_{i:03d}" for i in rng.permutation(40)]
    fid = [frames[i] for i in rng.integers(0, 40, 600)]
    rid = rng.integers(0, 50, 600)
    keep = sorted({(f, int(r)): i for i, (f, r) in enumerate(zip(fid, rid))}.values())  # unique units
    fid, rid = [fid[i] for i in keep], rid[keep]
    ovr = np.round(rng.random((len(fid), 5)) * 4) / 4  # many ties: exercises tie-breaking
    table = regions_table(fid, rid, ovr)
    labeled = [(int(rng.integers(0, 40)), int(r), int(rng.integers(0, 5))) for r in range(30)]
    pool = pool_with(frames + ["not_scored"], labeled)
    out = tmp_path / "regions"
    out.mkdir()
    for part in range(4):  # several files, many small row groups each
        chunk = table.slice(part * 150, 150)
        pq.write_table(chunk, out / f"part-{part:03d}.parquet", row_group_size=7)
    for Q in (1, 17, 60):
        ref = reference_oreal(table, pool, Q)
        mem = OREAL().select(ScoreTables(regions=table), pool, Budget(units=Q), seed=0)
        disk = OREAL(batch_size=5).select(ScoreTables(regions=str(out)), pool, Budget(units=Q), 1)
        assert rows(mem) == ref
        assert mem.to_table().equals(disk.to_table())
        assert len(set((f, r) for f, r, _ in ref)) == Q


def test_duplicate_rows_are_selected_once():
    table = regions_table(["a", "a", "a"], [0, 0, 1], [[0.9], [0.9], [0.5]])
    for batch_size in (1, 2, 100):
        q = OREAL(batch_size=batch_size).select(ScoreTables(regions=table), PoolView.fresh(["a"]),
                                                Budget(units=2), seed=0)
        assert rows(q) == [("a", 0, 0), ("a", 1, 0)]
