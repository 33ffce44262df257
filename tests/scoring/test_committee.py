"""CommitteeScorer: K members on the MC axis through the fused statistics."""
from __future__ import annotations

import copy

import pytest
import torch

from rayal.config import ModelConfig
from rayal.models import build_model
from rayal.scoring import CommitteeScorer, MCDropoutScorer
from rayal.scoring import measures as M

IDS = ["seq1/f001", "seq2/f117"]
NUM_CLASSES = 4
MC = ("bald", "vote_entropy", "variance")


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _model(seed: int):
    net = build_model(ModelConfig(arch="Unet", encoder="resnet18", encoder_depth=3,
                                  decoder_channels=[16, 8, 8]), num_classes=NUM_CLASSES, seed=seed)
    with torch.no_grad():   # larger logits: members both agree and disagree
        net.head[0].weight.mul_(8.0)
    return net.eval()


@pytest.fixture(scope="module")
def members():
    return [_model(s) for s in (1, 2, 3)]


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("use_fused", [True, False])
def test_identical_members_disagree_nowhere(members, images, use_fused):
    same = [members[0], copy.deepcopy(members[0]), copy.deepcopy(members[0])]
    s = CommitteeScorer(same, use_fused=use_fused)(images, IDS)
    for name in MC:
        assert torch.allclose(s.maps[name], torch.zeros_like(s.maps[name]), atol=1e-5), name
    assert torch.allclose(s.frame["area_disagreement"], torch.zeros(2), atol=1e-6)
    # a real committee does disagree: the zero above is not vacuous
    real = CommitteeScorer(members, use_fused=use_fused)(images, IDS)
    assert all(real.maps[name].max() > 1e-4 for name in MC)
    assert (real.frame["area_disagreement"] > 0).all()


@pytest.mark.parametrize("use_fused", [True, False])
def test_committee_equals_members_alone_combined_by_hand(members, images, use_fused):
    s = CommitteeScorer(members, use_fused=use_fused, want_ovr=True)(images, IDS)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(images), dim=1) for m in members])   # (K, B, C, H, W)
    mean = probs.mean(0)
    expected = {"entropy": M.entropy(mean), "margin": M.margin(mean), "bald": M.bald(probs),
                "vote_entropy": M.vote_entropy(probs), "variance": M.variance(probs)}
    for name, value in expected.items():
        assert torch.allclose(s.maps[name], value, atol=2e-4), name
    assert torch.allclose(s.ovr, M.ovr_entropy(mean), atol=2e-4)
    assert torch.equal(s.pred, mean.argmax(1))
    assert torch.allclose(s.frame["area_disagreement"], M.area_disagreement(probs), atol=1e-5)


def test_committee_of_one_with_dropout_is_mc_dropout(members, images):
    """K x T: a committee of one member with T samples and the member's seed is exactly
    MC-dropout on that model (same masks, same statistics)."""
    kw = dict(mc_samples=5, dropout_p=0.2, point_estimate="mc_mean", seed=7)
    one = CommitteeScorer(members[:1], member_seeds=[7], **kw)(images, IDS)
    ref = MCDropoutScorer(members[0], **kw)(images, IDS)
    for name in ref.maps:
        assert torch.allclose(one.maps[name], ref.maps[name], atol=1e-4), name
    assert torch.allclose(one.frame["area_disagreement"], ref.frame["area_disagreement"], atol=1e-6)
    both = CommitteeScorer(members[:2], member_seeds=[7, 8], **kw)
    assert both.num_samples == 10
    assert not torch.allclose(both(images, IDS).maps["bald"], one.maps["bald"])


def test_bad_committees_are_refused(members):
    with pytest.raises(ValueError, match="at least one member"):
        CommitteeScorer([])
    with pytest.raises(ValueError, match="2 member seeds for 3"):
        CommitteeScorer(members, member_seeds=[1, 2])
