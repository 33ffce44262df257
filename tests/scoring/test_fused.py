"""The numba kernel (rayal.scoring.fused) against the reference measures on the same masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rayal.scoring import measures as M
from rayal.scoring.fused import MAP_ORDER, dropout_copies, fused_mc_stats
from rayal.scoring.rng import apply_dropout, frame_seeds, sample_bases

MAP_FUNCS = {
    "entropy": M.entropy, "margin": M.margin, "least_confidence": M.least_confidence,
}
MC_FUNCS = {"bald": M.bald, "vote_entropy": M.vote_entropy, "variance": M.variance}


def reference(mc_probs: torch.Tensor, point_p: torch.Tensor) -> dict:
    out = {name: fn(point_p) for name, fn in MAP_FUNCS.items()}
    out.update({name: fn(mc_probs) for name, fn in MC_FUNCS.items()})
    out["pred"] = point_p.argmax(1)
    out["ovr"] = M.ovr_entropy(point_p)
    out["ad_macro"] = M.area_disagreement(mc_probs, "macro")
    out["ad_joint"] = M.area_disagreement(mc_probs, "joint")
    return out


def check(got_macro: dict, got_joint: dict, ref: dict) -> None:
    for name in MAP_ORDER:
        got = got_macro[name]
        assert got.dtype == np.float32 and got.shape == tuple(ref[name].shape), name
        np.testing.assert_allclose(got, ref[name].numpy(), atol=2e-5, rtol=1e-4, err_msg=name)
    np.testing.assert_array_equal(got_macro["pred"], ref["pred"].numpy())
    np.testing.assert_allclose(got_macro["ovr"], ref["ovr"].numpy(), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(got_macro["area_disagreement"], ref["ad_macro"].numpy(), atol=1e-9)
    np.testing.assert_allclose(got_joint["area_disagreement"], ref["ad_joint"].numpy(), atol=1e-9)


def logit_dropout_case(logits: torch.Tensor, seed: int, num_samples: int, p: float,
                       point_from_mean: bool):
    ids = [f"frame-{i}" for i in range(logits.shape[0])]
    seeds = frame_seeds(seed, ids)
    bases = sample_bases(seeds, num_samples).numpy().view(np.uint64)
    z = logits.numpy()
    got = {dice: fused_mc_stats(z[None], z, bases, num_samples=num_samples, dropout_p=p,
                                point_from_mean=point_from_mean, want_ovr=True, dice=dice)
           for dice in ("macro", "joint")}
    z64 = logits.double()
    mc = torch.stack([torch.softmax(apply_dropout(z64, seeds, t, p), dim=1)
                      for t in range(num_samples)])
    point = mc.mean(0) if point_from_mean else torch.softmax(z64, dim=1)
    return got, reference(mc, point)


@pytest.mark.parametrize("num_classes", [2, 5, 8])
@pytest.mark.parametrize("magnitude", [1.0, 4.0, 30.0])
def test_logit_dropout_matches_reference(num_classes, magnitude):
    gen = torch.Generator().manual_seed(num_classes * 100 + int(magnitude))
    logits = torch.randn(3, num_classes, 6, 7, generator=gen) * magnitude
    got, ref = logit_dropout_case(logits, seed=11, num_samples=6, p=0.2, point_from_mean=False)
    check(got["macro"], got["joint"], ref)


def test_logit_dropout_high_p_and_many_samples():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 9, generator=gen) * 2 - 1  # mostly negative: drops matter
    got, ref = logit_dropout_case(logits, seed=3, num_samples=12, p=0.5, point_from_mean=False)
    check(got["macro"], got["joint"], ref)
    # the samples really disagree somewhere, so the MC maps are not trivially 0
    assert got["macro"]["vote_entropy"].max() > 0.3
    assert got["macro"]["area_disagreement"].min() > 0


def test_logit_dropout_point_from_mean():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 5, 6, generator=gen) * 3
    got, ref = logit_dropout_case(logits, seed=5, num_samples=8, p=0.3, point_from_mean=True)
    check(got["macro"], got["joint"], ref)
    # and it is really different from the deterministic point estimate
    det = M.entropy(torch.softmax(logits.double(), 1)).numpy()
    assert np.abs(got["macro"]["entropy"] - det).max() > 1e-3


def head_input_case(sampled: torch.Tensor, det: torch.Tensor, point_from_mean: bool):
    num_samples, batch = sampled.shape[:2]
    bases = np.zeros((batch, num_samples), np.uint64)
    got = {dice: fused_mc_stats(sampled.numpy(), det.numpy(), bases, num_samples=num_samples,
                                dropout_p=None, point_from_mean=point_from_mean, want_ovr=True,
                                dice=dice)
           for dice in ("macro", "joint")}
    mc = torch.softmax(sampled.double(), dim=2)
    point = mc.mean(0) if point_from_mean else torch.softmax(det.double(), dim=1)
    return got, reference(mc, point)


@pytest.mark.parametrize("magnitude", [1.0, 30.0])
@pytest.mark.parametrize("point_from_mean", [False, True])
def test_head_input_matches_reference(magnitude, point_from_mean):
    gen = torch.Generator().manual_seed(int(magnitude) + 7 * point_from_mean)
    det = torch.randn(2, 5, 4, 6, generator=gen) * magnitude
    sampled = det + torch.randn(7, 2, 5, 4, 6, generator=gen) * magnitude
    got, ref = head_input_case(sampled, det, point_from_mean)
    check(got["macro"], got["joint"], ref)


def test_without_ovr():
    z = np.random.default_rng(0).normal(size=(1, 1, 3, 4, 4)).astype(np.float32)
    bases = sample_bases(frame_seeds(0, ["a"]), 4).numpy().view(np.uint64)
    out = fused_mc_stats(z, z[0], bases, num_samples=4, dropout_p=0.2, point_from_mean=False,
                         want_ovr=False)
    assert out["ovr"] is None
    assert set(MAP_ORDER) <= set(out) and out["area_disagreement"].shape == (1,)


@pytest.mark.parametrize("channels", [1, 3, 4, 8, 13])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_copies_match_apply_dropout(channels, p):
    """The numba head_input copies use exactly the masks of rng.apply_dropout."""
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(3, channels, 5, 7, generator=gen) * 10
    seeds = frame_seeds(4, ["a", "b", "c"])
    bases = sample_bases(seeds, 5).numpy().view(np.uint64)
    copies = dropout_copies(x.numpy(), bases, p)
    assert copies.shape == (5, 3, channels, 5, 7) and copies.dtype == np.float32
    for t in range(5):
        ref = apply_dropout(x, seeds, t, p).numpy()
        np.testing.assert_array_equal(copies[t] == 0, ref == 0)
        np.testing.assert_allclose(copies[t], ref, rtol=1e-6, atol=0)
