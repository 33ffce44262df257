"""Embedding helpers (rayal.selection.embeddings) on hand-made embeddings tables."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rayal.selection import LABELED, PoolView, ScoreTables
from rayal.selection.base import unit_keys
from rayal.selection.embeddings import (embedded_points, embedding_matrix, read_embeddings,
                                        sample_keys, taken_units)


def frame_embeddings(ids, vectors) -> pa.Table:
    vectors = np.asarray(vectors, np.float32)
    return pa.table({"frame_id": ids, "unit": ["frame"] * len(ids),
                     "region_id": pa.array([-1] * len(ids), pa.int32()),
                     "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()),
                                                                    vectors.shape[1])})


def test_embedding_matrix_refuses_ragged_and_null_rows():
    assert embedding_matrix(pa.array([[1.0, 2.0], [3.0, 4.0]])).tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="different lengths"):
        embedding_matrix(pa.array([[1.0, 2.0, 3.0], [4.0]]))   # 4 values over 2 rows: 2 each
    with pytest.raises(ValueError, match="1 null rows"):
        embedding_matrix(pa.array([[1.0, 2.0], None]))


def test_read_embeddings_in_key_order_unit_norm_and_missing_flagged():
    ids = ["a", "b", "c"]
    tables = ScoreTables(embeddings=frame_embeddings(["c", "a"], [[0, 3, 4], [2, 0, 0]]))
    pool = PoolView.fresh(ids)
    keys = unit_keys(np.array([2, 1, 0]), np.full(3, -1))   # c, b (no row), a
    x, found = read_embeddings(tables, "image", pool, keys)
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(x, [[0, 0.6, 0.8], [0, 0, 0], [1, 0, 0]], atol=1e-6)


def test_embedded_points_keep_taken_units_and_name_a_bad_frame():
    ids = ["a", "b", "c", "d"]
    vecs = [[1, 0], [0, 1], [1, 1], [1, -1]]
    pool = PoolView.from_statuses(ids, {("b", -1): LABELED})
    keys, x, taken = embedded_points(ScoreTables(embeddings=frame_embeddings(ids, vecs)), "image",
                                     pool, max_points=1, seed=0)
    assert len(keys) == 2 and taken.sum() == 1   # the labelled b plus a sample of 1 free unit
    assert taken_units(pool, keys).tolist() == taken.tolist()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    vecs[2] = [np.nan, 1]
    with pytest.raises(ValueError, match="frame c region -1"):
        embedded_points(ScoreTables(embeddings=frame_embeddings(ids, vecs)), "image", pool,
                        max_points=10, seed=0)


def test_sample_keys_is_seeded_sorted_and_whole_when_small():
    keys = np.arange(100, dtype=np.int64)[::-1]
    a, b = sample_keys(keys, 10, seed=3), sample_keys(keys, 10, seed=3)
    assert a.tolist() == b.tolist() and a.tolist() == sorted(a.tolist()) and len(set(a)) == 10
    assert sample_keys(keys[:5], 10, seed=0).tolist() == [95, 96, 97, 98, 99]

