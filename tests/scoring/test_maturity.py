"""MADBAL pixel score by hand, and the multi-head scorer on a tiny MadbalNet (rayal.scoring.maturity)."""
from __future__ import annotations

import math

import pytest
import torch

from rayal.config import ModelConfig
from rayal.config.training import MadbalConfig
from rayal.models import build_model
from rayal.scoring import MCDropoutScorer, MultiHeadScorer
from rayal.scoring import measures as M
from rayal.scoring.maturity import (MATURITY, image_edges, js_divergence, maturity_score,
                                    select_loss_logit)

IDS = ["a/1", "b/2"]


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def pixel(*probs):
    """A (1, C, 1, 1) probability map of one pixel."""
    return torch.tensor(probs, dtype=torch.float64).view(1, -1, 1, 1)


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


def js(a, b):
    m = [(x + y) / 2 for x, y in zip(a, b)]
    return 0.5 * kl(a, m) + 0.5 * kl(b, m)


def test_js_divergence_by_hand():
    assert js_divergence(pixel(1.0, 0.0), pixel(0.0, 1.0)).item() == pytest.approx(math.log(2))
    assert js_divergence(pixel(0.3, 0.7), pixel(0.3, 0.7)).item() == pytest.approx(0.0, abs=1e-12)
    # p = (0.5, 0.5), q = (1, 0): m = (0.75, 0.25)
    expected = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) \
        + 0.5 * math.log(1 / 0.75)
    assert js_divergence(pixel(0.5, 0.5), pixel(1.0, 0.0)).item() == pytest.approx(expected)
    assert js_divergence(pixel(1.0, 0.0), pixel(0.5, 0.5)).item() == pytest.approx(expected)


def test_maturity_score_of_one_pixel_by_hand():
    p = [0.8, 0.2]
    heads = [[0.5, 0.5], [0.8, 0.2], [0.1, 0.9]]
    weights = [0.2, 0.3, 0.5]
    logit = 0.4
    entropy = -sum(x * math.log(x) for x in p)
    expected = (entropy + sum(w * js(p, h) for w, h in zip(weights, heads))) \
        * math.exp(1 / (1 + math.exp(-logit)))
    u = maturity_score(pixel(*p), torch.stack([pixel(*h) for h in heads]),
                       torch.tensor(weights, dtype=torch.float64).view(1, 3, 1, 1),
                       torch.tensor([[[logit]]], dtype=torch.float64))
    assert u.shape == (1, 1, 1)
    assert u.item() == pytest.approx(expected, rel=1e-12)
    # heads that agree with the main head leave entropy * exp(sigmoid(L))
    same = maturity_score(pixel(*p), torch.stack([pixel(*p)] * 3),
                          torch.full((1, 3, 1, 1), 1 / 3, dtype=torch.float64),
                          torch.zeros(1, 1, 1, dtype=torch.float64))
    assert same.item() == pytest.approx(entropy * math.exp(0.5))


def test_maturity_score_shape_errors():
    p = torch.full((2, 3, 4, 5), 1 / 3)
    heads = torch.full((3, 2, 3, 4, 5), 1 / 3)
    w = torch.full((2, 3, 4, 5), 1 / 3)
    logit = torch.zeros(2, 4, 5)
    assert maturity_score(p, heads, w, logit).shape == (2, 4, 5)
    with pytest.raises(ValueError, match="head_probs"):
        maturity_score(p, heads[:, :1], w, logit)
    with pytest.raises(ValueError, match="head_weights"):
        maturity_score(p, heads, w[:, :2], logit)
    with pytest.raises(ValueError, match="loss_logit"):
        maturity_score(p, heads, w, logit[:1])


def test_select_loss_logit():
    logits = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 2.0)], dim=1)
    boundary = torch.tensor([[[True, False], [False, True]]])
    assert select_loss_logit(logits, "boundary").unique().tolist() == [1.0]
    assert select_loss_logit(logits, "centre").unique().tolist() == [2.0]
    assert select_loss_logit(logits, "auto", boundary).tolist() == [[[1.0, 2.0], [2.0, 1.0]]]
    with pytest.raises(ValueError, match="boundary map"):
        select_loss_logit(logits, "auto")


@pytest.fixture(scope="module")
def model():
    net = build_model(ModelConfig(arch="Unet", encoder="resnet18", decoder_channels=[16, 8, 8, 8, 8]),
                      num_classes=4, seed=0, madbal=MadbalConfig(enabled=True, head_channels=8))
    return net.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 40, 72, generator=torch.Generator().manual_seed(1))


def test_multi_head_scorer_matches_the_parts(model, images):
    scores = MultiHeadScorer(model, loss_channel="auto", edge_threshold=0.1,
                             want_features=True, want_ovr=True)(images, IDS)
    with torch.no_grad():
        out = model.multi_head(images)
    p = torch.softmax(out["logits"], dim=1)
    loss = torch.where(image_edges(images, 0.1), out["loss_logits"][:, 0], out["loss_logits"][:, 1])
    expected = maturity_score(p, torch.softmax(out["head_logits"], dim=2), out["head_weights"], loss)
    torch.testing.assert_close(scores.maps[MATURITY], expected)
    torch.testing.assert_close(scores.maps["entropy"], M.entropy(p))
    assert torch.equal(scores.pred, p.argmax(1))
    assert scores.ovr.shape == (2, 4, 40, 72)
    assert torch.equal(scores.features, out["features"][-1])
    # the loss channel changes the score
    centre = MultiHeadScorer(model, loss_channel="centre")(images, IDS).maps[MATURITY]
    assert not torch.allclose(centre, scores.maps[MATURITY])


def test_multi_head_scorer_keeps_the_mc_measures(model, images):
    """MC measures come from the same engine as MC-dropout mode, on the same trunk."""
    kw = dict(mc_samples=3, dropout_p=0.2, seed=5)
    multi = MultiHeadScorer(model, **kw)(images, IDS)
    mc = MCDropoutScorer(model, **kw)(images, IDS)
    for name in ("entropy", "bald", "variance", "vote_entropy"):
        torch.testing.assert_close(multi.maps[name], mc.maps[name])
    torch.testing.assert_close(multi.frame["area_disagreement"], mc.frame["area_disagreement"])
    head = MultiHeadScorer(model, position="head_input", **kw)(images, IDS)
    ref = MCDropoutScorer(model, position="head_input", **kw)(images, IDS)
    torch.testing.assert_close(head.maps["bald"], ref.maps["bald"])


def test_multi_head_scorer_scale_and_errors(model, images):
    scores = MultiHeadScorer(model, scale=0.5)(images, IDS)
    assert scores.maps[MATURITY].shape == (2, 40, 72) and scores.pred.shape == (2, 40, 72)
    assert (scores.maps[MATURITY] >= 0).all()
    plain = build_model(ModelConfig(arch="Unet", encoder="resnet18"), num_classes=4)
    with pytest.raises(ValueError, match="MADBAL model"):
        MultiHeadScorer(plain)
    with pytest.raises(ValueError, match="loss_channel"):
        MultiHeadScorer(model, loss_channel="edges")
