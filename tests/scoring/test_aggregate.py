"""Pixel maps -> region / frame scores, region embeddings and top-k region selection."""
from __future__ import annotations

import math

import pytest
import torch

from rayal.scoring import (frame_embeddings, frame_reduce, region_classwise_max,
                           region_dominant_class, region_embeddings, region_pixel_counts,
                           region_reduce)
from rayal.scoring.aggregate import class_histogram, region_class_histogram
from rayal.scoring.tables import top_k_union

NAN = float("nan")

# frame 0 has regions 0, 1, 2; frame 1 only 0 and 1 (region 2 absent)
REGIONS = torch.tensor([
    [[0, 0, 1, 1],
     [0, 0, 1, 1],
     [2, 2, 2, 1]],
    [[0, 1, 1, 1],
     [0, 1, 1, 1],
     [0, 0, 1, 1]],
])
VALUES = torch.tensor([
    [[1.0, 2.0, 5.0, 6.0],
     [3.0, 4.0, 7.0, 8.0],
     [0.5, 0.5, 2.0, 9.0]],
    [[1.0, 0.0, 0.0, 0.0],
     [2.0, 0.0, 4.0, 0.0],
     [3.0, 6.0, 0.0, 8.0]],
])


def assert_same(got: torch.Tensor, expected: list) -> None:
    exp = torch.tensor(expected, dtype=got.dtype)
    assert got.shape == exp.shape
    assert torch.equal(torch.isnan(got), torch.isnan(exp)), (got, exp)
    assert torch.allclose(torch.nan_to_num(got), torch.nan_to_num(exp), atol=1e-6), (got, exp)


def test_region_pixel_counts():
    counts = region_pixel_counts(REGIONS, 3)
    assert counts.tolist() == [[4, 5, 3], [4, 8, 0]]
    # more regions than any frame has: zeros
    assert region_pixel_counts(REGIONS, 4).tolist() == [[4, 5, 3, 0], [4, 8, 0, 0]]


def test_region_reduce_mean():
    out = region_reduce(VALUES, REGIONS, 3, "mean")
    # frame 0: r0 (1+2+3+4)/4 = 2.5; r1 (5+6+7+8+9)/5 = 7; r2 (0.5+0.5+2)/3 = 1
    # frame 1: r0 (1+2+3+6)/4 = 3; r1 (0+0+0+0+4+0+0+8)/8 = 1.5; r2 absent -> NaN
    assert_same(out, [[2.5, 7.0, 1.0], [3.0, 1.5, NAN]])
    assert out.dtype == VALUES.dtype


def test_region_reduce_max():
    out = region_reduce(VALUES, REGIONS, 3, "max")
    assert_same(out, [[4.0, 9.0, 2.0], [6.0, 8.0, NAN]])


def test_region_reduce_negative_values_max():
    # all-negative region: max must not be clipped at 0 (or -inf)
    out = region_reduce(-VALUES - 1, REGIONS, 3, "max")
    assert_same(out, [[-2.0, -6.0, -1.5], [-2.0, -1.0, NAN]])


def test_region_reduce_bad_how():
    with pytest.raises(ValueError):
        region_reduce(VALUES, REGIONS, 3, "median")


def test_frame_reduce():
    assert frame_reduce(VALUES, "mean").tolist() == pytest.approx(
        [48.0 / 12, 24.0 / 12])
    assert frame_reduce(VALUES, "max").tolist() == [9.0, 8.0]
    with pytest.raises(ValueError):
        frame_reduce(VALUES, "sum")


def test_region_classwise_max():
    # two classes: class 0 = VALUES, class 1 = 10 - VALUES
    class_map = torch.stack([VALUES, 10 - VALUES], dim=1)  # (B, C, H, W)
    out = region_classwise_max(class_map, REGIONS, 3)
    assert out.shape == (2, 3, 2)
    # class 1 max = 10 - min: frame 0 mins r0 1, r1 5, r2 0.5; frame 1 mins r0 1, r1 0
    assert_same(out[..., 0], [[4.0, 9.0, 2.0], [6.0, 8.0, NAN]])
    assert_same(out[..., 1], [[9.0, 5.0, 9.5], [9.0, 10.0, NAN]])


def test_region_dominant_class():
    labels = torch.tensor([
        [[2, 2, 1, 1],
         [3, 3, 1, 0],
         [0, 1, 0, 0]],  # r0: 2,2,3,3 tie -> 2; r1: 1,1,1,0,0 -> 1; r2: 0,1,0 -> 0
        [[1, 3, 3, 2],
         [0, 2, 2, 3],
         [1, 0, 0, 3]],  # r0: 1,0,1,0 tie -> 0; r1: 3,3,2,2,2,3,0,3 -> 3
    ])
    dom = region_dominant_class(labels, REGIONS, 3, 4)
    assert dom.tolist() == [[2, 1, 0], [0, 3, -1]]
    hist = region_class_histogram(labels, REGIONS, 3, 4)
    assert hist[0, 0].tolist() == [0, 0, 2, 2]
    assert hist[1, 1].tolist() == [1, 0, 3, 4]
    assert hist[1, 2].tolist() == [0, 0, 0, 0]
    assert class_histogram(labels, 4).tolist() == [[4, 4, 2, 2], [3, 2, 3, 4]]


def test_region_embeddings_cells():
    # 2x2 feature cells over a 4x4 image: each cell covers a 2x2 block of pixels
    feats = torch.tensor([[[1.0, 2.0], [3.0, 4.0]],
                          [[10.0, 20.0], [30.0, 40.0]]]).unsqueeze(0)  # (1, D=2, 2, 2)
    regions = torch.tensor([[[0, 0, 1, 1],
                             [0, 0, 1, 1],
                             [1, 1, 2, 2],
                             [1, 1, 2, 3]]])
    emb = region_embeddings(feats, regions, 5)
    assert emb.shape == (1, 5, 2)
    # region 0 covers exactly cell (0, 0)
    assert emb[0, 0].tolist() == pytest.approx([1.0, 10.0])
    # region 1: 4 pixels of cell (0,1) and 4 of cell (1,0) -> mean of the two cells
    assert emb[0, 1].tolist() == pytest.approx([2.5, 25.0])
    # regions 2 and 3 split cell (1, 1): each gets that cell's feature
    assert emb[0, 2].tolist() == pytest.approx([4.0, 40.0])
    assert emb[0, 3].tolist() == pytest.approx([4.0, 40.0])
    # region 4 is absent: zeros
    assert emb[0, 4].tolist() == [0.0, 0.0]


def test_region_embeddings_area_weighted():
    feats = torch.tensor([[[1.0, 5.0]]]).unsqueeze(0)  # (1, 1, 1, 2): left cell 1, right 5
    regions = torch.tensor([[[0, 0, 0, 1]]])  # 1x4 image: 2 px in left cell, 1 px in right
    emb = region_embeddings(feats, regions, 2)
    assert emb[0, 0, 0].item() == pytest.approx((2 * 1.0 + 1 * 5.0) / 3)
    assert emb[0, 1, 0].item() == pytest.approx(5.0)


def test_frame_embeddings():
    feats = torch.arange(16, dtype=torch.float32).view(2, 2, 2, 2)
    assert frame_embeddings(feats).tolist() == [[1.5, 5.5], [9.5, 13.5]]


def test_top_k_union():
    keys = torch.tensor([[[4.0, 1.0], [3.0, 2.0], [2.0, 3.0], [1.0, 4.0]]])  # (B=1, R=4, K=2)
    exists = torch.ones(1, 4, dtype=torch.bool)
    assert top_k_union(keys, exists, 1).tolist() == [[True, False, False, True]]
    assert top_k_union(keys, exists, 2).tolist() == [[True, True, True, True]]
    assert top_k_union(keys, exists, None).tolist() == exists.tolist()
    assert top_k_union(keys, exists, 10).tolist() == exists.tolist()


def test_top_k_union_never_absent_and_nan():
    keys = torch.tensor([
        [[4.0, 1.0], [3.0, NAN], [2.0, 3.0], [1.0, 100.0]],   # region 3 absent in frame 0
        [[1.0, 1.0], [2.0, 2.0], [-5.0, -5.0], [-9.0, -9.0]],  # regions 2, 3 absent
    ])
    exists = torch.tensor([[True, True, True, False], [True, True, False, False]])
    keep = top_k_union(keys, exists, 1)
    # frame 0: key 0 -> r0; key 1: r3 absent, r1 NaN -> r2
    assert keep.tolist()[0] == [True, False, True, False]
    # frame 1: both keys -> r1
    assert keep.tolist()[1] == [False, True, False, False]
    # k larger than the frame's existing regions: only existing ones are kept
    keep3 = top_k_union(keys, exists, 3)
    assert keep3.tolist() == [[True, True, True, False], [True, True, False, False]]
    assert not (keep3 & ~exists).any()


def test_region_reduce_batch_offsets_independent():
    # scoring each frame alone gives the same rows as the batch
    both = region_reduce(VALUES, REGIONS, 3, "mean")
    for b in range(2):
        alone = region_reduce(VALUES[b:b + 1], REGIONS[b:b + 1], 3, "mean")
        assert torch.equal(torch.isnan(alone[0]), torch.isnan(both[b]))
        assert torch.allclose(torch.nan_to_num(alone[0]), torch.nan_to_num(both[b]))
    assert math.isnan(both[1, 2].item())


def test_region_and_frame_columns():
    import numpy as np

    from rayal.scoring import PixelScores
    from rayal.scoring.tables import frame_columns, region_columns

    pred = (REGIONS + 1) % 3  # region r of both frames predicts class (r + 1) % 3
    scores = PixelScores(maps={"entropy": VALUES}, pred=pred,
                         frame={"area_disagreement": torch.tensor([0.25, 0.5])})
    cols = region_columns(scores, REGIONS, "patch", ["entropy", "area_disagreement"],
                          ["mean", "max"], num_classes=3, top_k=1, want_embeddings=False)
    # frame 0: mean and max both pick r1; frame 1: mean picks r0 (3.0), max picks r1 (8.0)
    assert cols["frame_index"].tolist() == [0, 1, 1]
    assert cols["region_id"].tolist() == [1, 0, 1]
    assert cols["pixel_count"].tolist() == [5, 4, 8]
    np.testing.assert_allclose(cols["entropy_mean"], [7.0, 3.0, 1.5])
    np.testing.assert_allclose(cols["entropy_max"], [9.0, 6.0, 8.0])
    assert cols["dominant_pred"].tolist() == [2, 1, 2]
    assert list(cols["unit"]) == ["patch"] * 3
    fc = frame_columns(scores, ["entropy", "area_disagreement"], ["mean", "max"], num_classes=3)
    np.testing.assert_allclose(fc["area_disagreement"], [0.25, 0.5])
    np.testing.assert_allclose(fc["entropy_max"], [9.0, 8.0])
    assert fc["pred_hist"].tolist() == [[3, 4, 5], [0, 4, 8]]


def test_top_k_union_ties_go_to_the_lowest_region_whatever_the_float_noise():
    """A flat image area gives several regions the same score; scored in another batch the
    scores differ in the last bits. The kept set must not change with that noise."""
    gen = torch.Generator().manual_seed(0)
    base = torch.tensor([[0.5, 0.9, 0.9, 0.9, 0.2, 0.9]])[..., None]   # four regions tie at 0.9
    exists = torch.ones(1, 6, dtype=torch.bool)
    want = [[False, True, True, False, False, False]]                    # the two lowest ids
    assert top_k_union(base, exists, 2).tolist() == want
    for _ in range(50):
        noise = 1 + 1e-7 * torch.randn(base.shape, generator=gen)
        assert top_k_union(base * noise, exists, 2).tolist() == want
    # real differences above the rank precision still rank
    assert top_k_union(torch.tensor([[[0.9], [0.9001], [0.5]]]), exists[:, :3], 1).tolist() == [
        [False, True, False]]
