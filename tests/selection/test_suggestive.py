"""Suggestive Annotation (rayal.selection.suggestive): uncertainty then max-cover."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import LABELED, Budget, PoolView, ScoreTables, get_strategy, unit_keys
from rayal.selection.suggestive import max_cover

# two clusters of 5 directions: A around 0 deg, B around 180 deg (cosines across are < 0)
ANGLES = [-10, -5, 0, 5, 10, 170, 175, 180, 185, 190]
IDS = [f"u{a + 10:03d}" for a in ANGLES]
# uncertainty alone would take A+10 and A0 (same cluster); B180 is only 4th
PHI = [0.85, 0.1, 0.9, 0.1, 0.95, 0.1, 0.1, 0.8, 0.1, 0.1]


pool_with = PoolView.from_statuses


def tables() -> ScoreTables:
    rad = np.deg2rad(ANGLES)
    v = np.stack([np.cos(rad), np.sin(rad)], 1).astype(np.float16)
    emb = pa.table({"frame_id": IDS, "unit": ["frame"] * 10, "region_id": pa.array([-1] * 10, pa.int32()),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 2)})
    return ScoreTables(frames=pa.table({"frame_id": IDS, "entropy_mean": PHI}), embeddings=emb)


def test_picks_the_representative_pair():
    q = get_strategy("suggestive").select(tables(), pool_with(IDS), Budget(units=2), seed=0)
    # K = 4 candidates: A+10, A0, A-10, B180; A0 covers A best, then B180 covers B
    assert list(q.frame_id) == ["u010", "u190"]
    cover_a = 1 + 2 * np.cos(np.deg2rad(5)) + 2 * np.cos(np.deg2rad(10))
    assert np.allclose(q.score, [cover_a, cover_a], atol=1e-2)
    assert q.reason[0].startswith("source=model entropy_mean=0.900 cover_gain=")
    assert q.extras["candidates"] == 4 and q.extras["sample_size"] == 10
    top2 = get_strategy("entropy").select(tables(), pool_with(IDS), Budget(units=2), seed=0)
    assert list(top2.frame_id) == ["u020", "u010"]


def test_k_factor_one_is_top_uncertainty_and_labelled_skipped():
    q = get_strategy("suggestive", k_factor=1).select(tables(), pool_with(IDS), Budget(units=2), seed=0)
    assert sorted(q.frame_id) == ["u010", "u020"]
    pool = pool_with(IDS, {("u010", -1): LABELED})
    q = get_strategy("suggestive").select(tables(), pool, Budget(units=2), seed=0)
    assert "u010" not in set(q.frame_id) and "u190" in set(q.frame_id)


def test_deterministic_fewer_and_zero():
    s = get_strategy("suggestive", sample_size=4)
    a = s.select(tables(), pool_with(IDS), Budget(units=3), seed=5)
    assert a.to_table().equals(s.select(tables(), pool_with(IDS), Budget(units=3), seed=5).to_table())
    assert len(s.select(tables(), pool_with(IDS), Budget(units=0), seed=5)) == 0
    taken = pool_with(IDS, {(f, -1): LABELED for f in IDS[1:]})
    assert list(s.select(tables(), taken, Budget(units=3), seed=5).frame_id) == [IDS[0]]
    with pytest.raises(ValueError, match="k_factor"):
        get_strategy("suggestive", k_factor=0.5)


def test_max_cover_greedy_gains():
    sim = np.array([[1.0, 0.9, 0.0], [0.0, 0.0, 1.0], [0.9, 1.0, 0.0]], np.float32)
    picked, gains = max_cover(sim, 3)
    assert list(picked) == [0, 1, 2] and np.allclose(gains, [1.9, 1.0, 0.1])


def test_committee_disagreement_is_the_source_when_a_committee_scored():
    base = tables()
    # committee variance ranks the B cluster first: the picks follow it, not the entropy
    variance = [0.1, 0.1, 0.1, 0.1, 0.1, 0.7, 0.8, 0.9, 0.1, 0.1]
    frames = base.frames.append_column("variance_mean", pa.array(variance))
    scored = ScoreTables(frames=frames, embeddings=base.embeddings)
    q = get_strategy("suggestive", committee=4, k_factor=1).select(
        scored, pool_with(IDS), Budget(units=2), seed=0)
    assert sorted(q.frame_id) == ["u185", "u190"]   # angles 175 and 180
    assert all(r.startswith("source=committee(4) variance_mean=") for r in q.reason)
    one = get_strategy("suggestive", committee=1, k_factor=1).select(
        scored, pool_with(IDS), Budget(units=2), seed=0)
    assert sorted(one.frame_id) == ["u010", "u020"] and one.reason[0].startswith("source=model ")
    with pytest.raises(ValueError, match="committee score column 'variance_mean'"):
        get_strategy("suggestive", committee=3).select(tables(), pool_with(IDS), Budget(units=2), seed=0)
