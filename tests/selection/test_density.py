"""Density-weighted uncertainty (rayal.selection.density), hand-computed on 3 points."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import LABELED, Budget, PoolView, ScoreTables, get_strategy, unit_keys

IDS = ["a", "b", "c"]
# unit vectors at 0, 60 and 90 degrees
VECS = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2], [0.0, 1.0]])
PHI = [0.9, 0.6, 0.7]


pool_with = PoolView.from_statuses


def tables(ids=IDS, vecs=VECS, phi=PHI, frame_ids=IDS) -> ScoreTables:
    v = np.asarray(vecs, np.float32) * 2.0
    emb = pa.table({"frame_id": ids, "unit": ["frame"] * len(ids),
                    "region_id": pa.array([-1] * len(ids), pa.int32()),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 2)})
    return ScoreTables(frames=pa.table({"frame_id": frame_ids, "entropy_mean": phi}), embeddings=emb)


def run(t, pool, n=3, **params):
    return get_strategy("density", **params).select(t, pool, Budget(units=n), seed=0)


def test_hand_computed_values():
    # mean cosine to {a, b, c}: a (1 + .5 + 0)/3 = .5; b (.5 + 1 + .866)/3 = .7887; c (0 + .866 + 1)/3 = .622
    density = np.array([0.5, (1.5 + np.sqrt(3) / 2) / 3, (1 + np.sqrt(3) / 2) / 3])
    q = run(tables(), pool_with(IDS))
    value = np.array(PHI) * density
    order = np.argsort(-value)
    assert list(q.frame_id) == [IDS[i] for i in order] == ["b", "a", "c"]
    assert np.allclose(q.score, value[order], atol=1e-3)
    assert q.reason[0] == "entropy_mean=0.600 density=0.789"
    assert list(run(tables(), pool_with(IDS), beta=0.0).frame_id) == ["a", "c", "b"]
    q2 = run(tables(), pool_with(IDS), beta=2.0)
    assert np.allclose(q2.score, np.sort(np.array(PHI) * density ** 2)[::-1], atol=1e-3)


def test_labelled_units_leave_the_sample_and_are_never_selected():
    # sample = {a, b}: a (1 + .5)/2 = .75, b (.5 + 1)/2 = .75
    q = run(tables(), pool_with(IDS, {("c", -1): LABELED}))
    assert list(q.frame_id) == ["a", "b"]
    assert np.allclose(q.score, [0.9 * 0.75, 0.6 * 0.75], atol=1e-3)


def test_missing_embedding_and_nan_skipped_and_counted():
    t = tables(ids=["a", "b"], vecs=VECS[:2], phi=[float("nan"), 0.6, 0.7])
    q = run(t, pool_with(IDS))
    assert list(q.frame_id) == ["b"]
    assert q.extras == {"nan_skipped": 1, "no_embedding": 1, "sample_size": 2}


def test_sample_size_seeded_and_params():
    big = np.random.default_rng(0).normal(size=(50, 2))
    ids = [f"x{i}" for i in range(50)]
    t = tables(ids, big, np.linspace(0, 1, 50), frame_ids=ids)
    strategy = get_strategy("density", sample_size=5)
    a = strategy.select(t, pool_with(ids), Budget(units=4), seed=1)
    assert a.to_table().equals(strategy.select(t, pool_with(ids), Budget(units=4), seed=1).to_table())
    assert a.extras["sample_size"] == 5
    with pytest.raises(ValueError, match="beta"):
        get_strategy("density", beta=-1)
    with pytest.raises(ValueError, match="'nope'.*'frames'"):
        get_strategy("density", score="nope").select(t, pool_with(ids), Budget(units=1), 0)
    assert len(strategy.select(t, pool_with(ids), Budget(units=0), 0)) == 0
