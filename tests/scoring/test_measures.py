"""Reference pixel measures (rayal.scoring.measures) against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from rayal.scoring import (area_disagreement, bald, entropy, least_confidence, margin,
                           ovr_entropy, variance, vote_entropy)

D = torch.float64


def pix(*probs: float) -> torch.Tensor:
    """One pixel's class probabilities as a (1, C, 1, 1) tensor."""
    return torch.tensor(probs, dtype=D).view(1, -1, 1, 1)


def mc(*samples: tuple[float, ...]) -> torch.Tensor:
    """T samples of one pixel -> (T, 1, C, 1, 1)."""
    return torch.stack([pix(*s) for s in samples])


def h(*probs: float) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


# ---------------------------------------------------------------- point measures

@pytest.mark.parametrize("num_classes", [2, 3, 7, 19])
def test_uniform(num_classes):
    p = torch.full((2, num_classes, 3, 4), 1.0 / num_classes, dtype=D)
    assert torch.allclose(entropy(p), torch.full((2, 3, 4), math.log(num_classes), dtype=D))
    assert torch.allclose(margin(p), torch.ones(2, 3, 4, dtype=D))
    assert torch.allclose(least_confidence(p), torch.full((2, 3, 4), 1 - 1 / num_classes, dtype=D))


def test_one_hot():
    labels = torch.tensor([[[0, 1], [2, 3]]])
    p = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).to(D)
    assert torch.equal(entropy(p), torch.zeros(1, 2, 2, dtype=D))  # 0 * log(1e-12) == 0
    assert torch.equal(margin(p), torch.zeros(1, 2, 2, dtype=D))
    assert torch.equal(least_confidence(p), torch.zeros(1, 2, 2, dtype=D))


def test_two_class_pixel():
    p = pix(0.7, 0.3)
    # -(0.7 ln 0.7 + 0.3 ln 0.3) = 0.24967 + 0.36119
    assert entropy(p).item() == pytest.approx(0.6108643020548935, abs=1e-12)
    assert margin(p).item() == pytest.approx(1 - (0.7 - 0.3), abs=1e-12)  # 0.6
    assert least_confidence(p).item() == pytest.approx(0.3, abs=1e-12)
    # order of classes does not matter
    assert margin(pix(0.3, 0.7)).item() == pytest.approx(0.6, abs=1e-12)
    assert least_confidence(pix(0.3, 0.7)).item() == pytest.approx(0.3, abs=1e-12)


def test_margin_uses_two_largest():
    p = pix(0.1, 0.5, 0.15, 0.25)
    assert margin(p).item() == pytest.approx(1 - (0.5 - 0.25), abs=1e-12)
    assert least_confidence(p).item() == pytest.approx(0.5, abs=1e-12)
    assert entropy(p).item() == pytest.approx(h(0.1, 0.5, 0.15, 0.25), abs=1e-12)


def test_entropy_is_natural_log_and_clamped():
    # zero probabilities contribute 0, not NaN
    p = pix(0.5, 0.5, 0.0)
    assert entropy(p).item() == pytest.approx(math.log(2), abs=1e-12)
    assert not torch.isnan(entropy(p)).any()


# ---------------------------------------------------------------- MC measures

def test_identical_samples_give_zero():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(2, 5, 4, 6, dtype=D) * 3, dim=1)
    samples = p.unsqueeze(0).expand(6, -1, -1, -1, -1).contiguous()
    assert torch.allclose(bald(samples), torch.zeros(2, 4, 6, dtype=D), atol=1e-12)
    assert torch.allclose(vote_entropy(samples), torch.zeros(2, 4, 6, dtype=D), atol=1e-12)
    assert torch.allclose(variance(samples), torch.zeros(2, 4, 6, dtype=D), atol=1e-15)
    for dice in ("macro", "joint"):
        assert torch.allclose(area_disagreement(samples, dice=dice), torch.zeros(2, dtype=D))


def test_disagreeing_samples():
    samples = mc((0.9, 0.1), (0.2, 0.8))  # argmax 0 then 1
    assert vote_entropy(samples).item() == pytest.approx(math.log(2), abs=1e-12)
    # class 0: values 0.9, 0.2 -> mean 0.55, population var 0.35^2 = 0.1225; class 1 the same
    assert variance(samples).item() == pytest.approx(0.1225, abs=1e-12)
    # BALD = H(mean) - mean H = H(0.55, 0.45) - (H(0.9, 0.1) + H(0.2, 0.8)) / 2
    expected = h(0.55, 0.45) - (h(0.9, 0.1) + h(0.2, 0.8)) / 2  # 0.688139 - (0.325083 + 0.500402) / 2
    assert bald(samples).item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.275396, abs=1e-6)


def test_vote_entropy_three_samples():
    # votes: 2 for class 0, 1 for class 2 -> H(2/3, 0, 1/3)
    samples = mc((0.6, 0.3, 0.1), (0.5, 0.1, 0.4), (0.2, 0.3, 0.5))
    assert vote_entropy(samples).item() == pytest.approx(h(2 / 3, 1 / 3), abs=1e-12)
    # variance with three classes: mean over classes of population variance over samples
    cols = [(0.6, 0.5, 0.2), (0.3, 0.1, 0.3), (0.1, 0.4, 0.5)]
    var = sum(sum((v - sum(c) / 3) ** 2 for v in c) / 3 for c in cols) / 3
    assert variance(samples).item() == pytest.approx(var, abs=1e-12)


def _ad_example() -> torch.Tensor:
    """(T=2, B=1, C=3, 2, 2); class 2 never wins (absent in every map).

    sample 0 argmax [[0, 0], [0, 1]], sample 1 argmax [[0, 1], [1, 1]];
    mean: (0,0) -> 0, (0,1) [0.65, 0.35] -> 0, (1,0) [0.35, 0.65] -> 1, (1,1) -> 1,
    so f_agg = [[0, 0], [1, 1]].
    """
    s0 = [[(0.8, 0.2), (0.9, 0.1)], [(0.6, 0.4), (0.3, 0.7)]]
    s1 = [[(0.7, 0.3), (0.4, 0.6)], [(0.1, 0.9), (0.2, 0.8)]]
    out = torch.zeros(2, 1, 3, 2, 2, dtype=D)
    for t, s in enumerate((s0, s1)):
        for i in range(2):
            for j in range(2):
                out[t, 0, 0, i, j], out[t, 0, 1, i, j] = s[i][j]
    return out


def test_area_disagreement_hand_computed():
    samples = _ad_example()
    # sample 0 vs f_agg: class 0: |s|=3, |agg|=2, inter=2 -> Dice 4/5; class 1: |s|=1, |agg|=2,
    #   inter=1 -> 2/3; class 2 absent in both -> not averaged. macro = (4/5 + 2/3)/2 = 11/15.
    #   joint: 3 of 4 pixels agree -> 2*3/(4+4) = 3/4.
    # sample 1 vs f_agg: class 0: |s|=1, |agg|=2, inter=1 -> 2/3; class 1: |s|=3, |agg|=2,
    #   inter=2 -> 4/5. macro = 11/15; joint: 3 of 4 agree -> 3/4.
    # AD macro = 1 - 11/15 = 4/15; AD joint = 1 - 3/4 = 1/4.
    assert area_disagreement(samples).item() == pytest.approx(4 / 15, abs=1e-12)
    assert area_disagreement(samples, dice="macro").item() == pytest.approx(4 / 15, abs=1e-12)
    assert area_disagreement(samples, dice="joint").item() == pytest.approx(1 / 4, abs=1e-12)


def test_area_disagreement_asymmetric():
    # T=3, 1x4 image, 2 classes. Sample argmaxes: [0,0,0,0], [0,0,0,1], [1,1,0,1].
    # mean (class-0 probs chosen so f_agg = [0,0,0,1]).
    c0 = [[0.9, 0.9, 0.9, 0.6], [0.8, 0.8, 0.8, 0.1], [0.4, 0.4, 0.9, 0.2]]
    samples = torch.zeros(3, 1, 2, 1, 4, dtype=D)
    for t in range(3):
        samples[t, 0, 0, 0] = torch.tensor(c0[t], dtype=D)
        samples[t, 0, 1, 0] = 1 - samples[t, 0, 0, 0]
    # mean class-0: [0.7, 0.7, 0.8667, 0.3] -> f_agg = [0, 0, 0, 1] (|agg0|=3, |agg1|=1)
    # t0 [0,0,0,0]: c0 |s|=4 inter=3 -> 6/7; c1 |s|=0 |agg|=1 -> 0 (present). macro 3/7, joint 6/8
    # t1 [0,0,0,1]: identical -> macro 1, joint 1
    # t2 [1,1,0,1]: c0 |s|=1 inter=1 -> 2/4; c1 |s|=3 inter=1 -> 2/4. macro 1/2, joint 2*2/8
    macro = 1 - (3 / 7 + 1 + 1 / 2) / 3
    joint = 1 - (6 / 8 + 1 + 4 / 8) / 3
    assert area_disagreement(samples, dice="macro").item() == pytest.approx(macro, abs=1e-12)
    assert area_disagreement(samples, dice="joint").item() == pytest.approx(joint, abs=1e-12)


def test_area_disagreement_per_frame_and_bad_option():
    samples = _ad_example()
    ident = samples[:1].expand(2, -1, -1, -1, -1)
    batch = torch.cat([samples, ident], dim=1)  # frame 0 disagrees, frame 1 does not
    out = area_disagreement(batch)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(4 / 15, abs=1e-12)
    assert out[1].item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        area_disagreement(samples, dice="micro")


def test_ovr_entropy():
    assert ovr_entropy(pix(0.5, 0.5)).flatten().tolist() == pytest.approx([math.log(2)] * 2)
    vals = ovr_entropy(pix(0.7, 0.2, 0.1)).flatten().tolist()
    assert vals == pytest.approx([h(0.7, 0.3), h(0.2, 0.8), h(0.1, 0.9)], abs=1e-12)
    assert ovr_entropy(pix(1.0, 0.0)).flatten().tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- shape contract

def test_shapes():
    p = torch.softmax(torch.randn(2, 5, 3, 4), dim=1)
    samples = torch.softmax(torch.randn(6, 2, 5, 3, 4), dim=2)
    for fn in (entropy, margin, least_confidence):
        assert fn(p).shape == (2, 3, 4)
    for fn in (bald, vote_entropy, variance):
        assert fn(samples).shape == (2, 3, 4)
    assert area_disagreement(samples).shape == (2,)
    assert area_disagreement(samples, dice="joint").shape == (2,)
    assert ovr_entropy(p).shape == (2, 5, 3, 4)


@pytest.mark.parametrize("fn", [entropy, margin, least_confidence, ovr_entropy])
@pytest.mark.parametrize("shape", [(5, 3, 4), (6, 2, 5, 3, 4)])
def test_point_measures_reject_wrong_ndim(fn, shape):
    with pytest.raises(ValueError):
        fn(torch.full(shape, 0.2))


@pytest.mark.parametrize("fn", [bald, vote_entropy, variance, area_disagreement])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 6, 2, 5, 3, 4)])
def test_mc_measures_reject_wrong_ndim(fn, shape):
    with pytest.raises(ValueError):
        fn(torch.full(shape, 0.2))
