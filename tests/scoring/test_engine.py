"""MCDropoutScorer on a tiny real smp model: the shared trunk equals T full passes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rayal.config import ModelConfig
from rayal.models import build_model
from rayal.scoring import MCDropoutScorer
from rayal.scoring import measures as M
from rayal.scoring.fused import MAP_ORDER
from rayal.scoring.rng import apply_dropout, frame_seeds

T = 4
P = 0.2
SEED = 3
IDS = ["seq1/f001", "seq2/f117"]
NUM_CLASSES = 4


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def model():
    net = build_model(ModelConfig(arch="Unet", encoder="resnet18",
                                  decoder_channels=[16, 8, 8, 8, 8]), num_classes=NUM_CLASSES,
                      seed=0)
    with torch.no_grad():  # larger logits so MC samples both agree and disagree
        net.head[0].weight.mul_(8.0)
    return net.eval()


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 40, 72, generator=gen)  # not a multiple of 32: padding + crop


def full_passes(model, images, ids, position, point_estimate="deterministic"):
    """What peers do: T complete forward passes with dropout at ``position``."""
    seeds = frame_seeds(SEED, ids)
    mc = []
    with torch.no_grad():
        for t in range(T):
            if position == "logits":
                logits = apply_dropout(model(images), seeds, t, P)
            else:
                features, size = model.encode(images)
                decoded = apply_dropout(model.decode(features), seeds, t, P)
                logits = model.classify(decoded, size)
            mc.append(torch.softmax(logits.double(), dim=1))
        mc = torch.stack(mc)
        point = mc.mean(0) if point_estimate == "mc_mean" else torch.softmax(
            model(images).double(), dim=1)
    out = {"entropy": M.entropy(point), "margin": M.margin(point),
           "least_confidence": M.least_confidence(point), "bald": M.bald(mc),
           "vote_entropy": M.vote_entropy(mc), "variance": M.variance(mc),
           "pred": point.argmax(1), "ovr": M.ovr_entropy(point),
           "macro": M.area_disagreement(mc, "macro"), "joint": M.area_disagreement(mc, "joint")}
    return out


def score(model, images, ids=IDS, **kw):
    kw = {"mc_samples": T, "dropout_p": P, "seed": SEED, "want_ovr": True} | kw
    return MCDropoutScorer(model, **kw)(images, ids)


def assert_matches(scores, ref, dice="macro"):
    assert set(scores.maps) == set(MAP_ORDER)
    for name in MAP_ORDER:
        got = scores.maps[name]
        assert got.dtype == torch.float32 and got.shape == ref[name].shape, name
        np.testing.assert_allclose(got.numpy(), ref[name].numpy(), atol=3e-5, rtol=1e-4,
                                   err_msg=name)
    assert torch.equal(scores.pred, ref["pred"])
    np.testing.assert_allclose(scores.ovr.numpy(), ref["ovr"].numpy(), atol=3e-5, rtol=1e-4)
    np.testing.assert_allclose(scores.frame["area_disagreement"].numpy(), ref[dice].numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("position", ["logits", "head_input"])
@pytest.mark.parametrize("use_fused", [True, False])
def test_shared_trunk_equals_full_passes(model, images, position, use_fused):
    ref = full_passes(model, images, IDS, position)
    # the example is not degenerate: the samples disagree somewhere, but not everywhere
    assert 0 < ref["vote_entropy"].gt(0).double().mean() < 1
    for dice in ("macro", "joint"):
        scores = score(model, images, position=position, use_fused=use_fused, dice=dice)
        assert_matches(scores, ref, dice)


@pytest.mark.parametrize("position", ["logits", "head_input"])
def test_point_estimate_mc_mean(model, images, position):
    ref = full_passes(model, images, IDS, position, point_estimate="mc_mean")
    for use_fused in (True, False):
        scores = score(model, images, position=position, use_fused=use_fused,
                       point_estimate="mc_mean")
        assert_matches(scores, ref)


@pytest.mark.parametrize("position", ["logits", "head_input"])
def test_fused_and_torch_paths_agree(model, images, position):
    a = score(model, images, position=position, use_fused=True)
    b = score(model, images, position=position, use_fused=False)
    for name in MAP_ORDER:
        torch.testing.assert_close(a.maps[name], b.maps[name], atol=3e-5, rtol=1e-4)
    assert torch.equal(a.pred, b.pred)
    torch.testing.assert_close(a.frame["area_disagreement"], b.frame["area_disagreement"])
    torch.testing.assert_close(a.ovr, b.ovr, atol=3e-5, rtol=1e-4)


@pytest.mark.parametrize("position", ["logits", "head_input"])
def test_scores_independent_of_batch_position(model, images, position):
    ab = score(model, images, IDS, position=position)
    ba = score(model, images.flip(0), IDS[::-1], position=position)
    for name in MAP_ORDER:
        torch.testing.assert_close(ab.maps[name], ba.maps[name].flip(0), atol=1e-5, rtol=1e-4)
    assert torch.equal(ab.pred, ba.pred.flip(0))
    torch.testing.assert_close(ab.frame["area_disagreement"],
                               ba.frame["area_disagreement"].flip(0))
    # and a frame scored alone gets the same scores as in the batch
    alone = score(model, images[1:], IDS[1:], position=position)
    for name in MAP_ORDER:
        torch.testing.assert_close(alone.maps[name][0], ab.maps[name][1], atol=1e-5, rtol=1e-4)


def test_frame_id_and_seed_change_masks(model, images):
    base = score(model, images)
    other = score(model, images, ["x", "y"])
    assert not torch.allclose(base.maps["bald"], other.maps["bald"])
    # deterministic measures do not depend on the masks
    torch.testing.assert_close(base.maps["entropy"], other.maps["entropy"])
    again = score(model, images)
    assert torch.equal(base.maps["bald"], again.maps["bald"])


@pytest.mark.parametrize("position", ["logits", "head_input"])
def test_scale_returns_full_resolution(model, images, position):
    scores = score(model, images, position=position, scale=0.5, want_features=True)
    for name in MAP_ORDER:
        assert scores.maps[name].shape == (2, 40, 72), name
    assert scores.pred.shape == (2, 40, 72) and scores.pred.dtype == torch.int64
    assert scores.ovr.shape == (2, NUM_CLASSES, 40, 72)
    assert scores.frame["area_disagreement"].shape == (2,)
    # same as scoring the half-size images and upsampling the maps
    small = F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False)
    ref = score(model, small, position=position)
    for name in MAP_ORDER:
        up = F.interpolate(ref.maps[name][:, None], size=(40, 72), mode="bilinear",
                           align_corners=False)[:, 0]
        torch.testing.assert_close(scores.maps[name], up)
    torch.testing.assert_close(scores.frame["area_disagreement"], ref.frame["area_disagreement"])


def test_mc_samples_zero_gives_point_measures_only(model, images):
    scores = score(model, images, mc_samples=0)
    assert set(scores.maps) == {"entropy", "margin", "least_confidence"}
    assert scores.frame == {}
    with torch.no_grad():
        p = torch.softmax(model(images).double(), dim=1)
    np.testing.assert_allclose(scores.maps["entropy"].numpy(), M.entropy(p).numpy(), atol=1e-5)
    np.testing.assert_allclose(scores.maps["margin"].numpy(), M.margin(p).numpy(), atol=1e-5)
    assert torch.equal(scores.pred, p.argmax(1))
    assert scores.ovr.shape == (2, NUM_CLASSES, 40, 72)


def test_features_and_no_ovr(model, images):
    scores = score(model, images, want_ovr=False, want_features=True)
    assert scores.ovr is None
    assert scores.features.shape[:2] == (2, model.embedding_dim)
    assert score(model, images).features is None


def test_bad_position():
    with pytest.raises(ValueError, match="position"):
        MCDropoutScorer(object(), position="encoder")
