"""Batch-diversity stage (rayal.selection.diversity) over hand-made score tables."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.errors import RayalWarning
from rayal.selection import LABELED, QUARANTINED, Budget, PoolView, ScoreTables, get_strategy
from rayal.selection.diversity import Diverse, cluster_budgets, kcenter_order


def embeddings(ids, vectors, unit="frame", region_ids=None) -> pa.Table:
    vectors = np.asarray(vectors, np.float32)
    return pa.table({
        "frame_id": ids, "unit": [unit] * len(ids),
        "region_id": pa.array(region_ids if region_ids is not None else [-1] * len(ids), pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
    })


def two_clusters():
    """Cluster A (5 frames, the 5 highest scores, all near (1, 0)); cluster B (5 frames near
    (0, 1), lower scores). Top-B by entropy alone takes two frames of A."""
    rng = np.random.default_rng(3)
    ids = [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    vec = np.concatenate([[1.0, 0.0] + 0.01 * rng.normal(size=(5, 2)),
                          [0.0, 1.0] + 0.01 * rng.normal(size=(5, 2))])
    score = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.60, 0.59, 0.58, 0.57, 0.56])
    frames = pa.table({"frame_id": ids, "entropy_mean": score})
    return ids, ScoreTables(frames=frames, embeddings=embeddings(ids, vec))


@pytest.mark.parametrize("mode", ["kcenter", "kmeans", "cluster_budget"])
def test_two_tight_clusters_b2_takes_one_of_each(mode):
    ids, tables = two_clusters()
    plain = get_strategy("entropy").select(tables, PoolView.fresh(ids), Budget(units=2), seed=0)
    assert list(plain.frame_id) == ["a0", "a1"]          # the failure the stage exists for
    params = {"diversity": mode, "n_candidates": 10}
    if mode == "cluster_budget":
        params["n_clusters"] = 2
    q = get_strategy("entropy", **params).select(tables, PoolView.fresh(ids), Budget(units=2), seed=0)
    assert sorted(f[0] for f in q.frame_id) == ["a", "b"]
    assert q.frame_id[0] == "a0"                          # the best candidate still comes first
    assert q.extras["diversity"] == mode


def test_kcenter_starts_away_from_labelled_units():
    ids, tables = two_clusters()
    pool = PoolView.from_statuses(ids, {("a0", -1): LABELED})
    q = get_strategy("entropy", diversity="kcenter", n_candidates=9).select(tables, pool, Budget(units=1), seed=0)
    assert q.frame_id[0].startswith("b")


def test_near_duplicates_are_never_taken_together():
    ids, tables = two_clusters()
    q = get_strategy("entropy", dedup_threshold=0.9).select(tables, PoolView.fresh(ids), Budget(units=4), seed=0)
    x = {i: v for i, v in zip(ids, np.asarray(tables.embeddings.column("embedding").to_pylist()))}
    got = [x[f] / np.linalg.norm(x[f]) for f in q.frame_id]
    sims = np.array(got) @ np.array(got).T
    assert np.all(sims[~np.eye(len(got), dtype=bool)] <= 0.9)
    assert len(q) == 2                     # only two mutually dissimilar frames exist
    assert q.extras["skipped_duplicates"] >= 8


def test_dedup_against_labelled_units():
    ids, tables = two_clusters()
    pool = PoolView.from_statuses(ids, {("a0", -1): LABELED})
    q = get_strategy("entropy", dedup_threshold=0.9).select(tables, pool, Budget(units=3), seed=0)
    assert list(q.frame_id) == ["b0"]


def test_sequence_key_caps_units_per_window():
    ids = [f"seqA_{i:03d}" for i in range(6)] + [f"seqB_{i:03d}" for i in range(6)]
    score = np.linspace(1.0, 0.5, 12)          # seqA frames score highest
    tables = ScoreTables(frames=pa.table({"frame_id": ids, "entropy_mean": score}))
    q = get_strategy("entropy", sequence_key=r"^(?P<seq>[^_]+)_(?P<index>\d+)", per_sequence=1,
                     sequence_window=3).select(tables, PoolView.fresh(ids), Budget(units=4), seed=0)
    # windows of 3 frames: seqA 0-2, seqA 3-5, seqB 0-2, seqB 3-5 -> one each
    assert list(q.frame_id) == ["seqA_000", "seqA_003", "seqB_000", "seqB_003"]
    assert q.extras["skipped_sequence"] == 6   # seqA 1, 2, 4, 5 and seqB 1, 2
    whole = get_strategy("entropy", sequence_key=r"^([^_]+)_", per_sequence=2).select(
        tables, PoolView.fresh(ids), Budget(units=4), seed=0)
    assert list(whole.frame_id) == ["seqA_000", "seqA_001", "seqB_000", "seqB_001"]


SEQ_KEY = r"^(?P<seq>[^_]+)_(?P<index>\d+)"


def video_pool():
    """Sequence A: 12 frames, all scoring above sequence B's 4 frames (windows of 4 frames:
    A holds 3 windows, B 1; the pool 16 frames)."""
    ids = [f"seqA_{i:03d}" for i in range(12)] + [f"seqB_{i:03d}" for i in range(4)]
    score = np.concatenate([np.linspace(1.0, 0.6, 12), np.linspace(0.5, 0.4, 4)])
    return ids, ScoreTables(frames=pa.table({"frame_id": ids, "entropy_mean": score}))


def proportional(**extra):
    return get_strategy("entropy", sequence_key=SEQ_KEY, sequence_window=4, per_sequence="proportional",
                        **extra)


def test_proportional_cap_counts_the_labelled_set():
    ids, tables = video_pool()
    # seqA_004, seqA_005 labelled (window A1); B = 4 -> each 4-frame window may hold
    # ceil(4 / 16 * (2 + 4)) = 2 units: A0 takes 2, A1 is full, A2 takes 2
    pool = PoolView.from_statuses(ids, {("seqA_004", -1): LABELED, ("seqA_005", -1): LABELED})
    q = proportional().select(tables, pool, Budget(units=4), seed=0)
    assert list(q.frame_id) == ["seqA_000", "seqA_001", "seqA_008", "seqA_009"]
    assert q.extras["skipped_sequence"] == 4      # seqA_002, 003, 006, 007
    # a per-round cap of 2 ignores the labelled frames and fills window A1 up to 4
    per_round = get_strategy("entropy", sequence_key=SEQ_KEY, sequence_window=4, per_sequence=2)
    assert list(per_round.select(tables, pool, Budget(units=4), seed=0).frame_id) == [
        "seqA_000", "seqA_001", "seqA_006", "seqA_007"]
    # window A0 all labelled, B = 8: caps ceil(4 / 16 * 12) = 3; A1 and A2 take 3 each and
    # B0 (never uncertain enough for plain top-B) the other 2
    pool = PoolView.from_statuses(ids, {(f"seqA_{i:03d}", -1): LABELED for i in range(4)})
    q = proportional().select(tables, pool, Budget(units=8), seed=0)
    assert len(q) == 8 and [f for f in q.frame_id if f.startswith("seqB")] == ["seqB_000", "seqB_001"]


def test_proportional_cap_is_never_exceeded_and_fills_the_budget():
    rng = np.random.default_rng(7)
    sizes = {"s0": 40, "s1": 25, "s2": 10, "s3": 5}
    ids = [f"{s}_{i:04d}" for s, k in sizes.items() for i in range(k)]
    tables = ScoreTables(frames=pa.table({"frame_id": ids, "entropy_mean": rng.random(len(ids))}))
    window = {f: (f[:2], int(f[3:]) // 4) for f in ids}
    frames = {}
    for w in window.values():
        frames[w] = frames.get(w, 0) + 1
    labelled = set(rng.choice(ids, 12, replace=False))
    for round_ in range(4):
        pool = PoolView.from_statuses(ids, {(f, -1): LABELED for f in labelled})
        q = proportional().select(tables, pool, Budget(units=6), seed=round_)
        assert len(q) == 6 and not labelled & set(q.frame_id)
        before = len(labelled)
        held = {}
        for f in labelled | set(q.frame_id):
            held[window[f]] = held.get(window[f], 0) + 1
        picked_in = {window[f] for f in q.frame_id}
        for w in picked_in:   # a window that took a pick holds at most its proportional share
            assert held[w] <= -(-frames[w] * (before + 6) // len(ids))
        labelled |= set(q.frame_id)
    again = proportional().select(tables, pool, Budget(units=6), seed=3)
    assert list(again.frame_id) == list(q.frame_id)


def test_proportional_cap_fills_the_budget_when_windows_cannot():
    """A quarantined or unscored sequence still counts in no window's share of the round:
    the cap gives way (in order) rather than leave the round short."""
    ids = [f"seqA_{i:03d}" for i in range(20)] + [f"seqB_{i:03d}" for i in range(20)]
    score = np.concatenate([np.full(20, 0.9), np.linspace(0.8, 0.1, 20)])
    tables = ScoreTables(frames=pa.table({"frame_id": ids, "entropy_mean": score}))
    pool = PoolView.from_statuses(ids, {(f"seqA_{i:03d}", -1): QUARANTINED for i in range(20)})
    q = proportional().select(tables, pool, Budget(units=8), seed=0)
    # quarantined frames leave the shares: seqB's windows hold the pool, ceil(4 / 20 * 8) = 2 each
    assert list(q.frame_id) == [f"seqB_{i:03d}" for i in (0, 1, 4, 5, 8, 9, 12, 13)]
    assert q.extras["sequence_cap_relaxed"] == 0
    unscored = ScoreTables(frames=tables.frames.slice(20))
    q = proportional().select(unscored, PoolView.fresh(ids), Budget(units=8), seed=0)
    # caps ceil(4 / 40 * 8) = 1 a window: one frame from each of seqB's 5 windows, then the
    # capped candidates in order, as the 5 windows of unscored seqA cannot take their share
    assert list(q.frame_id) == ["seqB_000", "seqB_004", "seqB_008", "seqB_012", "seqB_016",
                                "seqB_001", "seqB_002", "seqB_003"]
    assert q.extras["sequence_cap_relaxed"] == 3
    per_round = get_strategy("entropy", sequence_key=SEQ_KEY, sequence_window=4, per_sequence=1)
    assert len(per_round.select(unscored, PoolView.fresh(ids), Budget(units=8), seed=0)) == 5  # a hard limit


def test_sequence_key_that_misses_frame_ids_warns_or_refuses():
    ids, tables = video_pool()
    odd = ids + ["clip-7.png"]
    tables = ScoreTables(frames=pa.table({"frame_id": odd, "entropy_mean": np.r_[np.linspace(1, 0.4, 16), 0.0]}))
    with pytest.warns(RayalWarning, match=r"does not match 1 of the 17 pool frame ids \(e.g. 'clip-7.png'\)"):
        proportional().select(tables, PoolView.fresh(odd), Budget(units=4), seed=0)
    # an integer cap sees only the candidates it looked at: it warns, once, and never refuses
    first = ScoreTables(frames=pa.table({"frame_id": odd, "entropy_mean": np.r_[np.linspace(0.5, 0.4, 16), 1.0]}))
    integer = get_strategy("entropy", sequence_key=SEQ_KEY, sequence_window=4, per_sequence=1)
    with pytest.warns(RayalWarning, match="1 of the 1 candidate frame ids looked at") as caught:
        assert list(integer.select(first, PoolView.fresh(odd), Budget(units=1), seed=0).frame_id) == ["clip-7.png"]
    assert len([w for w in caught if issubclass(w.category, RayalWarning)]) == 1
    with pytest.raises(ValueError, match="sequence_key.*matches none of the 16 pool frame ids"):
        get_strategy("entropy", sequence_key=r"^(?P<seq>\w+)-(?P<index>\d+)", per_sequence="proportional",
                     sequence_window=4).select(tables, PoolView.fresh(ids), Budget(units=4), seed=0)


def test_deterministic_under_a_seed_and_seed_matters_for_kmeans():
    rng = np.random.default_rng(0)
    ids = [f"f{i:03d}" for i in range(60)]
    tables = ScoreTables(frames=pa.table({"frame_id": ids, "entropy_mean": rng.random(60)}),
                         embeddings=embeddings(ids, rng.normal(size=(60, 6))))
    strategy = get_strategy("entropy", diversity="kmeans", n_candidates=40)
    a = strategy.select(tables, PoolView.fresh(ids), Budget(units=8), seed=5)
    b = get_strategy("entropy", diversity="kmeans", n_candidates=40).select(
        tables, PoolView.fresh(ids), Budget(units=8), seed=5)
    assert list(a.frame_id) == list(b.frame_id) and len(set(a.frame_id)) == 8


def test_composes_with_oreal_and_keeps_region_units():
    ids = ["f0", "f1"]
    rows = [("f0", r) for r in range(4)] + [("f1", r) for r in range(4)]
    regions = pa.table({
        "frame_id": [f for f, _ in rows], "region_id": pa.array([r for _, r in rows], pa.int32()),
        "unit": ["superpixel"] * 8, "pixel_count": [10] * 8, "dominant_pred": pa.array([0, 1] * 4, pa.int16()),
        "ovr_max": pa.FixedSizeListArray.from_arrays(
            pa.array(np.array([[0.9 - 0.01 * i, 0.8 - 0.01 * i] for i in range(8)], np.float32).ravel()), 2),
    })
    vec = np.array([[1, 0]] * 4 + [[0, 1]] * 4, np.float32)
    tables = ScoreTables(regions=regions, embeddings=embeddings([f for f, _ in rows], vec, "superpixel",
                                                                [r for _, r in rows]))
    q = get_strategy("oreal", unit="superpixel", num_classes=2, diversity="kcenter").select(
        tables, PoolView.fresh(ids), Budget(units=2), seed=0)
    assert list(q.unit) == ["superpixel", "superpixel"] and set(q.frame_id) == {"f0", "f1"}


def test_missing_embeddings_name_the_config_field():
    ids, tables = two_clusters()
    tables.embeddings = tables.embeddings.slice(0, 3)
    with pytest.raises(ValueError, match="scoring.embeddings"):
        get_strategy("entropy", diversity="kcenter").select(tables, PoolView.fresh(ids), Budget(units=2), seed=0)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="diversity"):
        get_strategy("entropy", diversity="spread")
    with pytest.raises(ValueError, match="dedup_threshold"):
        get_strategy("entropy", dedup_threshold=1.5)
    with pytest.raises(ValueError, match="sequence_key"):
        get_strategy("entropy", sequence_key="(")
    with pytest.raises(ValueError, match="per_sequence.*proportional"):
        get_strategy("entropy", sequence_key="x", per_sequence="share")
    for bad in (5, ""):
        with pytest.raises(ValueError, match="sequence_key must be"):
            get_strategy("entropy", sequence_key=bad)
    with pytest.raises(ValueError, match="per_sequence does nothing without sequence_key"):
        get_strategy("entropy", per_sequence="proportional", sequence_window=300)
    with pytest.raises(ValueError, match="n_clusters does nothing without diversity: cluster_budget"):
        get_strategy("entropy", diversity="kmeans", n_clusters=4)


def test_helpers_by_hand():
    assert list(cluster_budgets(np.array([3.0, 1.0]), np.array([10, 10]), 4)) == [3, 1]
    assert list(cluster_budgets(np.array([3.0, 1.0]), np.array([1, 10]), 4)) == [1, 3]
    x = np.array([[1, 0], [0.99, 0.141], [0, 1]], np.float32)
    order, _ = kcenter_order(x, np.zeros((0, 2), np.float32), np.arange(3))
    assert list(order) == [0, 2, 1]
    assert isinstance(get_strategy("entropy", diversity="kmeans"), Diverse)


def test_cluster_budget_by_size_stratifies_like_the_pool():
    """8 frames in a big cluster with low scores, 2 in a small one with high scores: by score
    mass B = 5 goes mostly to the small cluster; by size it follows the pool (4 + 1)."""
    ids = [f"big{i}" for i in range(8)] + ["small0", "small1"]
    rng = np.random.default_rng(0)
    vec = np.concatenate([[1.0, 0.0] + 0.01 * rng.normal(size=(8, 2)), [0.0, 1.0] + 0.01 * rng.normal(size=(2, 2))])
    score = np.array([0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 5.0, 4.0])
    tables = ScoreTables(frames=pa.table({"frame_id": ids, "entropy_mean": score}),
                         embeddings=embeddings(ids, vec))
    by_size = get_strategy("entropy", diversity="cluster_budget", n_clusters=2, cluster_mass="size",
                           n_candidates="all").select(tables, PoolView.fresh(ids), Budget(units=5), seed=0)
    assert sum(f.startswith("small") for f in by_size.frame_id) == 1
    assert "big7" in set(by_size.frame_id) and "big0" not in set(by_size.frame_id)  # uncertain within
    by_score = get_strategy("entropy", diversity="cluster_budget", n_clusters=2,
                            n_candidates="all").select(tables, PoolView.fresh(ids), Budget(units=5), seed=0)
    assert sum(f.startswith("small") for f in by_score.frame_id) == 2
