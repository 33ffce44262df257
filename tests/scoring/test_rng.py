"""Counter-based dropout masks (rayal.scoring.rng) and the numba mixer that must match them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rayal.scoring import fused
from rayal.scoring.rng import (apply_dropout, drop_threshold, frame_seed, frame_seeds, keep_mask,
                               mix64_torch, sample_bases)

SHAPE = (5, 7, 9)


def test_keep_mask_deterministic():
    seeds = frame_seeds(3, ["a", "b"])
    m1 = keep_mask(seeds, 2, SHAPE, 0.2)
    m2 = keep_mask(seeds.copy(), 2, SHAPE, 0.2)
    assert m1.shape == (2, *SHAPE) and m1.dtype == torch.bool
    assert torch.equal(m1, m2)


def test_keep_mask_depends_on_seed_and_t():
    seeds = frame_seeds(0, ["a", "b"])
    base = keep_mask(seeds, 0, SHAPE, 0.5)
    assert not torch.equal(base, keep_mask(seeds, 1, SHAPE, 0.5))
    assert not torch.equal(base, keep_mask(frame_seeds(1, ["a", "b"]), 0, SHAPE, 0.5))
    # the two frames of one batch get different masks
    assert not torch.equal(base[0], base[1])
    # about half of the elements differ between independent masks
    frac = (base != keep_mask(seeds, 1, SHAPE, 0.5)).float().mean().item()
    assert 0.35 < frac < 0.65


def test_keep_mask_independent_of_batch():
    seeds = frame_seeds(7, ["x", "y", "z"])
    full = keep_mask(seeds, 4, SHAPE, 0.2)
    for i in range(3):
        assert torch.equal(full[i], keep_mask(seeds[i:i + 1], 4, SHAPE, 0.2)[0])
    rev = keep_mask(seeds[::-1].copy(), 4, SHAPE, 0.2)
    assert torch.equal(rev, full.flip(0))


def test_frame_seed_stable():
    assert frame_seed(0, "f1") == frame_seed(0, "f1")
    assert frame_seed(0, "f1") != frame_seed(1, "f1")
    assert frame_seed(0, "f1") != frame_seed(0, "f2")
    assert 0 <= frame_seed(0, "f1") < 2 ** 32
    s = frame_seeds(0, ["f1", "f2"])
    assert s.dtype == np.uint64 and s.tolist() == [frame_seed(0, "f1"), frame_seed(0, "f2")]


def test_keep_rate():
    p = 0.2
    assert drop_threshold(p) == 13107
    mask = keep_mask(np.array([12345], np.uint64), 3, (4, 500, 500), p)  # 1e6 elements
    rate = mask.float().mean().item()
    assert abs(rate - (1 - 13107 / 65536)) < 0.002
    # each of the four 16-bit lanes of a hash has the same rate, and lanes are uncorrelated
    flat = mask.permute(0, 2, 3, 1).reshape(-1).numpy()  # channel-last element order
    lanes = flat.reshape(-1, 4).astype(np.float64)
    assert np.all(np.abs(lanes.mean(0) - 0.8) < 0.004)
    corr = np.corrcoef(lanes.T)
    assert np.all(np.abs(corr[np.triu_indices(4, 1)]) < 0.01)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_keep_rate_other_p(p):
    rate = keep_mask(np.array([1], np.uint64), 0, (3, 200, 200), p).float().mean().item()
    assert abs(rate - (1 - p)) < 0.01


def test_apply_dropout_values():
    seeds = frame_seeds(0, ["a", "b"])
    x = torch.randn(2, *SHAPE)
    y = apply_dropout(x, seeds, 1, 0.25)
    keep = keep_mask(seeds, 1, SHAPE, 0.25)
    assert torch.allclose(y[keep], x[keep] / 0.75)
    assert torch.all(y[~keep] == 0)
    assert y.dtype == x.dtype


def test_mix64_numba_matches_torch():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2 ** 64, size=200, dtype=np.uint64, endpoint=False)
    values = np.concatenate([values, np.array([0, 1, 2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1],
                                              dtype=np.uint64)])
    expected = mix64_torch(torch.from_numpy(values.view(np.int64))).numpy().view(np.uint64)
    got = np.array([fused._mix64(np.uint64(v)) for v in values], dtype=np.uint64)
    np.testing.assert_array_equal(got, expected)


def test_mix64_matches_splitmix_reference():
    """Pure-Python uint64 splitmix64 finaliser as a third opinion."""
    def ref(x):
        m = (1 << 64) - 1
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
        return x ^ (x >> 31)

    values = np.array([0, 1, 12345, 2 ** 63 + 5, 2 ** 64 - 1], dtype=np.uint64)
    got = mix64_torch(torch.from_numpy(values.view(np.int64))).numpy().view(np.uint64)
    assert [int(v) for v in got] == [ref(int(v)) for v in values]


def test_sample_bases_shape():
    b = sample_bases(frame_seeds(0, ["a", "b", "c"]), 5)
    assert b.shape == (3, 5) and b.dtype == torch.int64
    assert len(set(b.flatten().tolist())) == 15
    # bases of the first t samples do not depend on T
    assert torch.equal(sample_bases(frame_seeds(0, ["a", "b", "c"]), 2), b[:, :2])
