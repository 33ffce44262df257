"""TypiClust (rayal.selection.typiclust) on hand-made point sets."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from rayal.selection import LABELED, Budget, PoolView, ScoreTables, get_strategy
from rayal.selection.typiclust import typicality


def embeddings(ids, vectors) -> pa.Table:
    vectors = np.asarray(vectors, np.float32)
    return pa.table({"frame_id": ids, "unit": ["frame"] * len(ids),
                     "region_id": pa.array([-1] * len(ids), pa.int32()),
                     "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])})


def blobs():
    """Three blobs on the unit sphere in 3-D (after normalisation); each has an exact centre
    point and a ring of 8 points around it; blob sizes 9, 9, 9."""
    centres = np.eye(3)
    ids, vecs = [], []
    for b, c in enumerate(centres):
        ids.append(f"c{b}")
        vecs.append(c)
        other = np.roll(np.eye(3), 1, axis=0)[b]
        third = np.roll(np.eye(3), 2, axis=0)[b]
        for j in range(8):
            a = 2 * np.pi * j / 8
            ids.append(f"r{b}_{j}")
            vecs.append(c + 0.15 * (np.cos(a) * other + np.sin(a) * third))
    return ids, np.array(vecs)


def test_typicality_is_highest_at_the_centre():
    _, vecs = blobs()
    t = typicality(vecs[:9].astype(np.float32), k=8)
    assert int(np.argmax(t)) == 0


def test_picks_the_cluster_centres():
    ids, vecs = blobs()
    tables = ScoreTables(embeddings=embeddings(ids, vecs))
    q = get_strategy("typiclust", k_neighbours=8).select(tables, PoolView.fresh(ids), Budget(units=3), seed=0)
    assert sorted(q.frame_id) == ["c0", "c1", "c2"]
    assert len(set(q.cluster)) == 3


def test_covered_cluster_is_skipped():
    ids, vecs = blobs()
    tables = ScoreTables(embeddings=embeddings(ids, vecs))
    pool = PoolView.from_statuses(ids, {("r0_3", -1): LABELED})
    q = get_strategy("typiclust", k_neighbours=8).select(tables, pool, Budget(units=2), seed=0)
    assert sorted(q.frame_id) == ["c1", "c2"]
    again = get_strategy("typiclust", k_neighbours=8).select(tables, pool, Budget(units=2), seed=0)
    assert list(again.frame_id) == list(q.frame_id)
