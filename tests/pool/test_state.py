"""PoolState: invariants, idempotent mutations, leases, status counts (no Ray, no disk)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.pool.labels import summary_table
from rayal.pool.state import PoolState
from rayal.selection.base import LABELED, QUARANTINED, QUEUED, ScoreTables


def check_invariants(s: PoolState) -> None:
    assert s.keys.dtype == np.int64 and np.all(np.diff(s.keys) > 0), "keys sorted and unique"
    for name, col in s.cols.items():
        assert len(col) == len(s.keys), name
    status = s.cols["status"]
    queued = status == QUEUED
    assert (s.cols["owner"][queued] >= 0).all() and np.isfinite(s.cols["expiry"][queued]).all()
    assert (s.cols["owner"][~queued] == -1).all() and np.isnan(s.cols["expiry"][~queued]).all()
    labeled = status == LABELED
    rows = s.cols["label_row"][labeled]
    assert (rows >= 0).all() and (rows < len(s.label_counts)).all()
    assert len(np.unique(rows)) == len(rows), "label rows are not shared"
    assert (s.cols["reason"][status == QUARANTINED] >= 0).all()
    assert s.frame_ids.null_count == 0 and len(set(s.frame_ids.to_pylist())) == s.num_frames


def tables(h, tmp_path, n, **kw) -> ScoreTables:
    return ScoreTables.from_dir(h.write_scores(tmp_path / "scores", n, **kw))


def test_register_idempotent_and_conflicts(h):
    s = PoolState("image").register(h.frames_table(5))
    assert s.num_frames == 5
    assert s.register(h.frames_table(5)) is s                      # same frames: no change
    assert s.plan_register(h.frames_table(3)) is None
    grown = s.register(h.frames_table(7))
    assert grown.num_frames == 7 and grown.frame_index(["f006", "nope"]).tolist() == [6, -1]
    assert grown.frame_ids.to_pylist()[:5] == s.frame_ids.to_pylist()  # dense index is stable
    with pytest.raises(ValueError, match="f001 is already registered"):
        s.register({"frame_id": ["f001"], "uri": ["/elsewhere.png"]})
    with pytest.raises(ValueError, match="f009 is listed twice"):
        s.register({"frame_id": ["f009", "f009"], "uri": ["a", "b"]})
    with pytest.raises(ValueError, match="unit"):
        PoolState("pixel")


def test_select_marks_queued_and_retry_changes_nothing(h, plugin, tmp_path):
    s = PoolState("image").register(h.frames_table(20))
    t = tables(h, tmp_path, 20)
    s1, q1 = s.select("pool_test_top", {}, 5, 1, t, 0, now=100.0, owner="alice", lease_seconds=50)
    assert q1.num_rows == 5 and s1.seq == s.seq
    assert set(q1.column("frame_id").to_pylist()) <= set(s.frame_ids.to_pylist())
    status = s1.view().status_of(s1.keys)
    assert (status == QUEUED).sum() == 5
    assert (s1.cols["round"] == 1).sum() == 5 and (s1.cols["expiry"] == 150.0).all()
    assert s1.owners == ("alice",)
    check_invariants(s1)
    # retried with the same round id: the same query, the very same state
    s2, q2 = s1.select("pool_test_top", {}, 5, 1, t, 0, now=999.0, owner="bob", lease_seconds=50)
    assert s2 is s1 and q2.equals(q1)
    with pytest.raises(ValueError, match="round 1 was already selected"):
        s1.select("pool_test_top", {}, 6, 1, t, 0, now=100.0)
    # the next round never picks queued units
    s3, q3 = s1.select("pool_test_top", {}, 5, 2, t, 0, now=101.0)
    assert not set(q3.column("frame_id").to_pylist()) & set(q1.column("frame_id").to_pylist())
    assert s3.status_counts()["queued"] == 10
    check_invariants(s3)


def test_select_validates_strategy_output(h, plugin, tmp_path):
    patch_pool = PoolState("patch").register(h.frames_table(4))
    with pytest.raises(ValueError, match="returned \\['image'\\] units, but this pool's unit is 'patch'"):
        patch_pool.select("pool_test_top", {}, 2, 0, tables(h, tmp_path, 4), 0, now=0.0)
    small = PoolState("image").register(h.frames_table(2))      # scores name unregistered frames
    _, q = small.select("pool_test_top", {}, 3, 0, tables(h, tmp_path, 4), 0, now=0.0)
    assert sorted(q.column("frame_id").to_pylist()) == ["f000", "f001"]
    with pytest.raises(ValueError, match="unknown strategy"):
        small.select("no-such-strategy", {}, 1, 0, tables(h, tmp_path, 4), 0, now=0.0)


def test_leases_expire_back_to_unlabeled(h, plugin, tmp_path):
    s = PoolState("image").register(h.frames_table(6))
    t = tables(h, tmp_path, 6)
    s, q = s.select("pool_test_top", {}, 3, 1, t, 0, now=0.0, lease_seconds=10)
    assert s.expire_leases(9.9) is s                            # not yet
    expired = s.expire_leases(10.0)
    assert expired.status_counts()["queued"] == 0 and expired.status_counts()["unlabeled"] == 6
    assert (expired.cols["owner"] == -1).all() and (expired.cols["round"] == -1).all()
    check_invariants(expired)
    # a later select checks leases itself: the expired units are selectable again
    s2, q2 = s.select("pool_test_top", {}, 3, 2, t, 0, now=50.0, lease_seconds=10)
    assert q2.column("frame_id").to_pylist() == q.column("frame_id").to_pylist()
    assert s2.status_counts()["per_round"][2]["queued"] == 3
    assert s2.query(1).equals(q)                                # the old round's query is kept


def test_ingest_idempotent_update_and_skip(h):
    s = PoolState("image").register(h.frames_table(4))
    lab = summary_table(["f000", "f001"], [-1, -1], [0, 2], np.array([[9, 1, 0], [0, 3, 7]]))
    s1 = s.ingest(lab, round_id=0)
    assert s1.status_counts()["labeled"] == 2 and s1.num_classes == 3
    assert s1.ingest(lab, round_id=0) is s1                      # twice -> no change
    record, report = s1.plan_ingest(lab)
    assert record is None and report["unchanged"] == 2
    fixed = summary_table(["f001"], [-1], [1], np.array([[0, 8, 2]]))
    s2 = s1.ingest(fixed)
    keys, dom, counts = s2.labels()
    assert dom.tolist() == [0, 1] and counts.tolist() == [[9, 1, 0], [0, 8, 2]]
    assert len(s2.label_counts) == 2, "an update reuses the unit's label row"
    s3 = s2.quarantine(["f002"], [-1], ["unreadable"])
    _, report = s3.plan_ingest(summary_table(["f002"], [-1], [0], np.array([[1, 0, 0]])))
    assert report["skipped_quarantined"] == 1
    with pytest.raises(ValueError, match="not registered"):
        s1.ingest(summary_table(["zzz"], [-1], [0], np.array([[1, 0, 0]])))
    with pytest.raises(ValueError, match="4 classes, the pool has 3"):
        s1.ingest(summary_table(["f002"], [-1], [0], np.array([[1, 0, 0, 0]])))
    with pytest.raises(ValueError, match="region_id -1"):
        s1.ingest(summary_table(["f002"], [3], [0], np.array([[1, 0, 0]])))
    check_invariants(s3)


def test_quarantined_frame_blocks_its_regions(h):
    s = PoolState("patch").register(h.frames_table(3))
    s = s.quarantine(["f001", "nope"], [-1, -1], ["cannot decode image"])
    view = s.view()
    fi = np.array([0, 1, 1]); rid = np.array([0, 0, 5])
    assert view.selectable(fi, rid).tolist() == [True, False, False]
    st = s.status_counts(units_per_frame=16)
    assert st["quarantined_frames"] == 1 and st["quarantined"] == 0 and st["unlabeled"] == 48
    assert s.quarantine(["f001"], [-1], ["cannot decode image"]) is s
    _, report = s.plan_quarantine(["f001", "nope"], [-1, -1], ["x", "x"])
    assert report == {"quarantined": 1, "unchanged": 0, "unknown_frames": 1}


def test_status_per_class_and_round(h, plugin, tmp_path):
    s = PoolState("patch").register(h.frames_table(4))
    t = tables(h, tmp_path, 4, regions=4)
    s, q = s.select("pool_test_top", {"level": "region"}, 6, 3, t, 0, now=0.0)
    f, r = q.column("frame_id").to_pylist(), q.column("region_id").to_pylist()
    counts = np.zeros((6, 2), np.int64)
    counts[np.arange(6), np.arange(6) % 2] = 10
    s = s.ingest(summary_table(f[:4], r[:4], np.arange(4) % 2, counts[:4]))
    st = s.status_counts(units_per_frame=4)
    assert st["per_round"] == {3: {"selected": 6, "queued": 2, "labeled": 4}}
    assert st["per_class"] == {"units": [2, 2], "pixels": [20, 20]}
    assert (st["unlabeled"], st["queued"], st["labeled"]) == (10, 2, 4)
    assert s.view().class_counts(2).tolist() == [2, 2]
    assert st["unlabeled"] is not None and PoolState("superpixel").status_counts()["unlabeled"] is None


def test_random_operations_keep_invariants(h, plugin, tmp_path):
    rng = np.random.default_rng(1)
    s = PoolState("patch").register(h.frames_table(10))
    t = tables(h, tmp_path, 10, regions=8)
    now = 0.0
    for round_id in range(8):
        now += 5
        s, q = s.select("pool_test_top", {"level": "region"}, 7, round_id, t, round_id,
                        now=now, lease_seconds=12)
        take = rng.random(q.num_rows) < 0.5
        f = np.asarray(q.column("frame_id").to_pylist())[take]
        r = np.asarray(q.column("region_id").to_pylist())[take]
        c = rng.integers(0, 50, (len(f), 4))
        s = s.ingest(summary_table(f, r, c.argmax(1), c), round_id=round_id)
        if round_id % 3 == 0:
            s = s.quarantine([f"f00{round_id}"], [-1], [f"bad {round_id}"])
        check_invariants(s)
    st = s.status_counts(units_per_frame=8)
    assert st["queued"] + st["labeled"] + st["quarantined"] + st["unlabeled"] == 80


def test_memory_per_touched_unit(h):
    n_frames, regions = 62_500, 16                       # 1M touched units
    s = PoolState("patch").register(h.frames_table(1)).register(
        {"frame_id": [f"g{i}" for i in range(n_frames)], "uri": [f"/g/{i}" for i in range(n_frames)]})
    frames = np.repeat([f"g{i}" for i in range(n_frames)], regions)
    s = s.quarantine(frames, np.tile(np.arange(regions), n_frames), "bad")
    assert len(s.keys) == n_frames * regions
    per_unit = (s.keys.nbytes + sum(c.nbytes for c in s.cols.values())) / len(s.keys)
    assert per_unit <= 34, per_unit                      # 10M units ~ 340 MB
    assert isinstance(s.frame_ids, pa.Array) and s.reasons == ("bad",)
    assert s.status_counts(units_per_frame=regions)["quarantined"] == n_frames * regions
