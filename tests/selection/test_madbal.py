"""MADBAL: cluster budgets, P_k, scores, within-cluster order, determinism, streaming."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayal.selection import LABELED, Budget, PoolView, ScoreTables, get_strategy, unit_keys
from rayal.selection.madbal import MADBAL, cluster_budgets


def fsl(values, dtype):
    values = np.asarray(values, dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def make_tables(frame_id, region_id, emb, dominant, score, maturity=None, frame_rows=True):
    n = len(frame_id)
    regions = {
        "frame_id": pa.array(list(frame_id), pa.string()),
        "region_id": pa.array(np.asarray(region_id, np.int32)),
        "unit": pa.array(["superpixel"] * n),
        "pixel_count": pa.array(np.full(n, 50, np.int32)),
        "entropy_mean": pa.array(np.asarray(score, np.float32)),
        "dominant_pred": pa.array(np.asarray(dominant, np.int16)),
    }
    if maturity is not None:
        regions["maturity_score"] = pa.array(np.asarray(maturity, np.float32))
    emb = np.asarray(emb, np.float16)
    embeddings = pa.table({"frame_id": regions["frame_id"], "unit": regions["unit"],
                           "region_id": regions["region_id"], "embedding": fsl(emb, np.float16)})
    if frame_rows:  # frame embeddings live in the same table under unit "frame"
        frames = sorted(set(frame_id))
        embeddings = pa.concat_tables([pa.table({
            "frame_id": pa.array(frames), "unit": pa.array(["frame"] * len(frames)),
            "region_id": pa.array(np.full(len(frames), -1, np.int32)),
            "embedding": fsl(np.full((len(frames), emb.shape[1]), 5.0), np.float16)}), embeddings])
    return ScoreTables(regions=pa.table(regions), embeddings=embeddings)


def random_scene(seed, n_frames=10, per_frame=24, K=3, D=6, C=4):
    """Well-separated embedding groups (k-means recovers them exactly) -> tables, group, frames."""
    rng = np.random.default_rng(seed)
    frames = [f"img_{i:02d}" for i in range(n_frames)]
    fid = [f for f in frames for _ in range(per_frame)]
    rid = np.tile(np.arange(per_frame), n_frames)
    group = rng.integers(0, K, len(fid))
    centres = rng.normal(0, 1, (K, D)) * 50
    emb = centres[group] + rng.normal(0, 0.5, (len(fid), D))
    dominant = rng.integers(0, C, len(fid))
    score = rng.random(len(fid))
    return make_tables(fid, rid, emb, dominant, score), group, frames


def expected(table, group, pool, B):
    """Brute force over the whole table: P_k, s, u_k and per-group picks (group ids)."""
    fid = table.column("frame_id").to_pylist()
    rid = np.asarray(table.column("region_id").to_pylist())
    u = table.column("entropy_mean").to_numpy().astype(np.float64)
    dom = table.column("dominant_pred").to_numpy().astype(np.int64)
    ok = pool.selectable(pool.frame_index(table.column("frame_id")), rid)
    K = group.max() + 1
    s = np.zeros(len(u))
    u_k = np.zeros(K)
    for k in range(K):
        m = ok & (group == k)
        P = np.bincount(dom[m], minlength=dom.max() + 1) / max(m.sum(), 1)
        s[m] = u[m] * np.exp(-P[dom[m]])
        u_k[k] = s[m].sum()
    return fid, rid, ok, s, u_k


# ---------------------------------------------------------------- budgets
def test_cluster_budgets_examples():
    assert cluster_budgets([1, 1, 1], [99, 99, 99], 10).tolist() == [3, 3, 4]  # 4,4,4 trimmed
    assert cluster_budgets([10, 1, 1], [2, 100, 100], 12).tolist() == [2, 9, 1]  # shortfall 8
    assert cluster_budgets([0, 0], [3, 1], 2).tolist() == [1, 1]  # no uncertainty: by size (2,1 trimmed)
    assert cluster_budgets([0, 0], [3, 1], 4).tolist() == [3, 1]
    assert cluster_budgets([5, 1], [1, 1], 10).tolist() == [1, 1]  # fewer units than budget
    assert cluster_budgets([1, 2], [5, 5], 0).tolist() == [0, 0]
    assert cluster_budgets([], [], 4).tolist() == []
    # one largest budget loses twice rather than zeroing the small clusters
    assert cluster_budgets([0.9, 0.05, 0.05], [50, 50, 50], 10).tolist() == [8, 1, 1]


def test_cluster_budgets_sum_exactly_in_random_cases():
    rng = np.random.default_rng(1)
    for _ in range(500):
        K = int(rng.integers(1, 12))
        u = rng.random(K) * rng.choice([1e-6, 1.0, 1e6])
        u[rng.random(K) < 0.2] = 0.0
        available = rng.integers(0, int(rng.choice([3, 20, 1000])), K)
        B = int(rng.integers(0, 200))
        b = cluster_budgets(u, available, B)
        assert b.sum() == min(B, available.sum()), (u, available, B, b)
        assert (b >= 0).all() and (b <= available).all()


# ---------------------------------------------------------------- selection
def tiny():
    """Two obvious clusters of 4 superpixels: A on frame 'a', B on frame 'b'."""
    fid = ["a"] * 4 + ["b"] * 4
    rid = [0, 1, 2, 3] * 2
    emb = [[0, 0], [0, 1], [1, 0], [1, 1], [20, 20], [20, 21], [21, 20], [21, 21]]
    dom = [0, 0, 0, 1, 2, 2, 1, 1]
    u = [1.0, 0.5, 0.2, 0.4, 0.3, 0.9, 0.6, 0.1]
    return make_tables(fid, rid, emb, dom, u), u


def test_p_k_and_scores_by_hand():
    tables, u = tiny()
    pool = PoolView.fresh(["a", "b"])
    q = MADBAL(num_clusters=2).select(tables, pool, Budget(units=8), seed=0)
    # P_A = {0: 3/4, 1: 1/4}, P_B = {2: 1/2, 1: 1/2}
    s_by_hand = {("a", 0): 1.0 * np.exp(-0.75), ("a", 1): 0.5 * np.exp(-0.75),
                 ("a", 2): 0.2 * np.exp(-0.75), ("a", 3): 0.4 * np.exp(-0.25),
                 ("b", 0): 0.3 * np.exp(-0.5), ("b", 1): 0.9 * np.exp(-0.5),
                 ("b", 2): 0.6 * np.exp(-0.5), ("b", 3): 0.1 * np.exp(-0.5)}
    got = {(f, int(r)): s for f, r, s in zip(q.frame_id, q.region_id, q.score)}
    assert got.keys() == s_by_hand.keys()
    for key, value in s_by_hand.items():
        assert got[key] == pytest.approx(value, rel=1e-6)
    assert np.all(np.diff(q.score) <= 0)  # the query is ordered by s
    cl = {f: set(q.cluster[q.frame_id == f].tolist()) for f in "ab"}
    assert len(cl["a"]) == 1 and len(cl["b"]) == 1 and cl["a"] != cl["b"]
    ka, kb = cl["a"].pop(), cl["b"].pop()
    u_k = q.extras["cluster_uncertainty"]
    assert u_k[ka] == pytest.approx(sum(v for (f, _), v in s_by_hand.items() if f == "a"), rel=1e-6)
    assert u_k[kb] == pytest.approx(sum(v for (f, _), v in s_by_hand.items() if f == "b"), rel=1e-6)
    assert q.extras["score_column"] == "entropy_mean" and q.extras["no_embedding"] == 0
    assert q.reason[0].startswith(f"madbal cluster={q.cluster[0]} s=")
    # B = 3: ceil(u_A/(u_A+u_B) * 3) etc., trimmed; within a cluster the highest s
    q3 = MADBAL(num_clusters=2).select(tables, pool, Budget(units=3), seed=0)
    b = cluster_budgets(u_k, [4, 4], 3)
    assert q3.extras["cluster_budgets"] == b.tolist()
    for f, k in (("a", ka), ("b", kb)):
        best = sorted((v, r) for (ff, r), v in s_by_hand.items() if ff == f)[::-1][:b[k]]
        assert sorted(q3.region_id[q3.frame_id == f].tolist()) == sorted(r for _, r in best)


@pytest.mark.parametrize("seed", [0, 5])
def test_matches_brute_force_with_labelled_units(seed):
    tables, group, frames = random_scene(seed)
    rng = np.random.default_rng(seed)
    lab = rng.choice(len(group), 30, replace=False)
    fi = np.asarray([frames.index(f) for f in tables.regions.column("frame_id").to_pylist()])
    rid_all = tables.regions.column("region_id").to_numpy()
    pool = PoolView(frame_ids=pa.array(frames), keys=unit_keys(fi[lab], rid_all[lab]),
                    status=np.full(len(lab), LABELED, np.int8),
                    dominant_class=np.zeros(len(lab), np.int16))
    B = 37
    q = MADBAL(num_clusters=3).select(tables, pool, Budget(units=B), seed=seed)
    fid, rid, ok, s, u_g = expected(tables.regions, group, pool, B)
    u_k = np.asarray(q.extras["cluster_uncertainty"])
    to_cluster = {g: int(np.argmin(np.abs(u_k - u_g[g]))) for g in range(3)}  # group -> cluster id
    assert np.allclose(u_k[[to_cluster[g] for g in range(3)]], u_g, rtol=1e-5)
    budgets = q.extras["cluster_budgets"]
    assert sum(budgets) == len(q) == B
    picked = set(zip(q.frame_id, q.region_id.tolist()))
    assert not picked & {(fid[i], int(rid[i])) for i in lab}  # labelled units never selected
    for g in range(3):
        k = to_cluster[g]
        members = [i for i in np.flatnonzero(ok & (group == g))]
        members.sort(key=lambda i: (-s[i], fid[i], rid[i]))
        want = [(fid[i], int(rid[i])) for i in members[:budgets[k]]]
        got = [(f, int(r)) for f, r, c in zip(q.frame_id, q.region_id, q.cluster) if c == k]
        assert got == want  # top-b_k of the cluster, in s order


def test_deterministic_and_streaming_invariant(tmp_path):
    tables, _, frames = random_scene(2, n_frames=16)
    pool = PoolView.fresh(frames)
    run = lambda t, **kw: MADBAL(num_clusters=3, **kw).select(t, pool, Budget(units=25), seed=7)
    first = run(tables).to_table()
    assert first.equals(run(tables).to_table())
    assert first.equals(run(tables, batch_size=13, embedding_batch_size=11).to_table())
    for name in ("regions", "embeddings"):
        (tmp_path / name).mkdir()
        table = getattr(tables, name)
        for part, start in enumerate(range(0, table.num_rows, 100)):
            pq.write_table(table.slice(start, 100), tmp_path / name / f"part-{part:03d}.parquet",
                           row_group_size=9)
    disk = ScoreTables(regions=str(tmp_path / "regions"), embeddings=str(tmp_path / "embeddings"))
    assert first.equals(run(disk, batch_size=17, embedding_batch_size=23).to_table())
    # a sample smaller than the table (k-means on a subset, then a streamed assignment pass)
    sub = run(disk, kmeans_sample=60, embedding_batch_size=31)
    assert sub.to_table().equals(run(tables, kmeans_sample=60, embedding_batch_size=31).to_table())
    full = run(tables)
    # same partition (cluster ids may be permuted, which can move a trimmed budget unit)
    assert sorted(sub.extras["cluster_uncertainty"]) == pytest.approx(
        sorted(full.extras["cluster_uncertainty"]), rel=1e-6)
    assert len(sub) == 25 and sub.extras["num_clusters"] == 3


def test_missing_embeddings_score_fallback_and_options():
    tables, u = tiny()
    pool = PoolView.fresh(["a", "b"])
    emb = tables.embeddings
    drop = np.asarray(emb.column("frame_id").to_pylist()) == "a"
    drop &= np.asarray(emb.column("region_id").to_pylist()) == 0  # (a, 0): the best unit
    partial = ScoreTables(regions=tables.regions, embeddings=emb.filter(pa.array(~drop)))
    q = MADBAL(num_clusters=2, one_pixel=True).select(partial, pool, Budget(units=8), seed=0)
    assert len(q) == 7 and q.extras["no_embedding"] == 1
    assert ("a", 0) not in set(zip(q.frame_id, q.region_id.tolist()))
    assert q.extras["annotation"] == "one_pixel"
    scores = tables.regions.column("entropy_mean").to_numpy().copy()
    scores[5] = np.nan  # (b, 1): no score -> skipped
    nan_regions = tables.regions.set_column(4, "entropy_mean", pa.array(scores))
    qn = MADBAL(num_clusters=2).select(ScoreTables(regions=nan_regions, embeddings=emb), pool,
                                       Budget(units=8), seed=0)
    assert len(qn) == 7 and ("b", 1) not in set(zip(qn.frame_id, qn.region_id.tolist()))
    none = MADBAL().select(ScoreTables(regions=tables.regions), pool, Budget(units=3), seed=0)
    assert len(none) == 0 and none.extras["no_embedding"] == 8
    # maturity_score is preferred when present
    mat = np.arange(8)[::-1].astype(float)
    regions = tables.regions.append_column("maturity_score", pa.array(mat, pa.float32()))
    qm = MADBAL(num_clusters=1).select(ScoreTables(regions=regions, embeddings=emb), pool,
                                       Budget(units=1), seed=0)
    assert qm.extras["score_column"] == "maturity_score" and (qm.frame_id[0], qm.region_id[0]) == ("a", 0)
    with pytest.raises(ValueError, match="no score column"):
        MADBAL(score_column="nope").select(tables, pool, Budget(units=1), seed=0)
    with pytest.raises(ValueError, match="units"):
        MADBAL().select(tables, pool, Budget(cost=1.0), seed=0)
    for bad in ({"num_clusters": 0}, {"cluster_uncertainty": "max"}, {"unit": "image"},
                {"kmeans_sample": 0}):
        with pytest.raises(ValueError):
            MADBAL(**bad)
    assert len(MADBAL().select(tables, pool, Budget(units=0), seed=0)) == 0
    assert isinstance(get_strategy("madbal", num_clusters=3), MADBAL)


def test_disk_partitioned_join_equals_in_memory(monkeypatch):
    """Many spill buckets (bounded memory at 100M rows) give the one-bucket query."""
    import rayal.selection.madbal as madbal_module

    tables, _, frames = random_scene(4, n_frames=20)
    pool = PoolView.fresh(frames)
    run = lambda: MADBAL(num_clusters=3, kmeans_sample=50).select(tables, pool, Budget(units=30),
                                                                   seed=1)
    one = run()
    assert one.extras["spill_buckets"] == 1
    monkeypatch.setattr(madbal_module, "ROWS_PER_BUCKET", 37)
    many = run()
    assert many.extras["spill_buckets"] > 5
    assert many.to_table().equals(one.to_table())
    assert many.extras["cluster_budgets"] == one.extras["cluster_budgets"]


def test_bucket_spill_round_trip(tmp_path):
    from rayal.selection.spill import BucketSpill

    spill = BucketSpill(str(tmp_path), "t", 3, {"key": np.int64, "u": np.float32})
    spill.append(np.array([2, 0, 2, 1]), key=np.array([10, 11, 12, 13]), u=np.array([1, 2, 3, 4]))
    spill.append(np.array([0]), key=np.array([14]), u=np.array([5]))
    spill.close()
    assert spill.read(0)["key"].tolist() == [11, 14]
    assert spill.read(1)["u"].tolist() == [4.0]
    assert spill.read(2)["key"].tolist() == [10, 12]  # append order kept within a bucket
