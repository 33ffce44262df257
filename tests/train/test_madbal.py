"""MADBAL phase II: loss labels, boundary labels, a frozen phase-I model (rayal.train.madbal)."""
from __future__ import annotations

import math

import pytest
import torch

from rayal.config import ModelConfig
from rayal.config.training import MadbalConfig
from rayal.models import build_model
from rayal.train.madbal import (boundary_labels, class_loss_sums, class_thresholds, loss_labels,
                                train_phase2)

IGNORE = 255
SMALL = dict(arch="Unet", encoder="resnet18", decoder_channels=[16, 8, 8, 8, 8])
CONFIG = MadbalConfig(enabled=True, head_channels=8, phase2_epochs=3, phase2_lr=0.05)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def test_loss_labels_two_classes_by_hand():
    # class 0 pixels: ce 1, 2, 6 -> tau_0 = 3; class 1 pixels: ce 0.5, 1.5 -> tau_1 = 1
    ce = torch.tensor([[[1.0, 2.0, 6.0], [0.5, 1.5, 9.0]]])
    masks = torch.tensor([[[0, 0, 0], [1, 1, IGNORE]]])
    sums, counts = class_loss_sums(ce, masks, 2, IGNORE)
    assert sums.tolist() == [9.0, 2.0] and counts.tolist() == [3, 2]  # the ignored 9.0 is out
    assert class_thresholds(sums, counts).tolist() == [3.0, 1.0]
    labels = loss_labels(ce, masks, 2, IGNORE)
    assert labels.tolist() == [[[0, 0, 1], [0, 1, -1]]]
    # a pixel exactly at its class mean is not above it (strict ">")
    tied = loss_labels(torch.tensor([[[3.0, 1.0]]]), torch.tensor([[[0, 1]]]), 2, IGNORE,
                       tau=torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert tied.tolist() == [[[0, 0]]]


def test_loss_labels_use_the_pools_thresholds():
    """tau comes from the whole labelled set, not from the batch at hand."""
    ce = torch.tensor([[[1.0, 2.0]]])
    masks = torch.tensor([[[0, 0]]])
    assert loss_labels(ce, masks, 2, IGNORE).tolist() == [[[0, 1]]]  # own mean 1.5
    tau = torch.tensor([0.5, math.nan], dtype=torch.float64)  # class 1 absent from the pool
    assert loss_labels(ce, masks, 2, IGNORE, tau=tau).tolist() == [[[1, 1]]]
    with pytest.raises(ValueError, match=r"class ids \[7\]"):
        loss_labels(ce, torch.tensor([[[0, 7]]]), 2, IGNORE)


def test_boundary_labels_on_a_step_image():
    image = torch.zeros(1, 3, 4, 6)
    image[..., 3:] = 1.0  # a vertical step between columns 2 and 3
    edges = boundary_labels(image, threshold=0.1)
    expected = torch.zeros(1, 4, 6, dtype=torch.bool)
    expected[..., 2:4] = True  # central differences: |I[x+1] - I[x-1]| / 2 = 0.5 on both sides
    assert torch.equal(edges, expected)
    assert not boundary_labels(image, threshold=0.5).any()  # 0.5 is not above 0.5
    weak = image * 0.1  # step 0.1 -> gradient 0.05
    assert not boundary_labels(weak, threshold=0.1).any()
    colour = torch.zeros(1, 3, 3, 3)
    colour[0, 0, :, :2], colour[0, 1, :, 2:] = 1.0, 1.0  # red | green, equal luminance jumps
    assert boundary_labels(colour, 0.1)[0, :, 1:].all()


def batches(seed: int = 0, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        images = torch.rand(2, 3, 32, 48, generator=g)
        masks = (images[:, 0] > 0.5).long() + (images[:, 1] > 0.7).long()  # learnable classes
        masks[0, :8] = IGNORE  # sparse labels
        out.append((images, masks))
    return out


def model(seed: int = 0):
    return build_model(ModelConfig(**SMALL), num_classes=3, seed=seed, madbal=CONFIG)


def test_phase2_freezes_phase1_and_trains_the_extras():
    net = model()
    net.train()  # phase II must freeze BatchNorm statistics even when handed a model in train mode
    net.encoder.layer1[0].conv1.weight.requires_grad_(False)  # a flag phase II must restore
    seg_before = {k: v.clone() for k, v in net.segmentation_state().items()}
    aux_before = {k: v.clone() for k, v in net.aux.named_parameters()}
    flags = {k: p.requires_grad for k, p in net.named_parameters()}
    result = train_phase2(net, batches(), CONFIG, num_classes=3, ignore_index=IGNORE, seed=0,
                          device="cpu")
    after = net.segmentation_state()
    assert any("running_mean" in k for k in after)  # BatchNorm buffers are part of the check
    assert all(torch.equal(seg_before[k], after[k]) for k in seg_before)
    changed = [k for k, p in net.aux.named_parameters() if not torch.equal(aux_before[k], p)]
    assert len(changed) == len(aux_before)  # every extra parameter (heads, weight block, loss)
    assert {k: p.requires_grad for k, p in net.named_parameters()} == flags
    assert not net.training
    assert result["epochs"] == 3 and result["steps"] == 9 and len(result["history"]) == 3
    assert len(result["tau"]) == 3 and all(t is not None and t > 0 for t in result["tau"])
    first, last = result["history"][0], result["history"][-1]
    assert last["loss"] < first["loss"]
    assert 0.0 < first["positive_rate"] < 1.0 and 0.0 < first["boundary_rate"] < 1.0


def test_phase2_is_deterministic_for_a_seed():
    a, b = model(), model()
    ra = train_phase2(a, batches(), CONFIG, num_classes=3, ignore_index=IGNORE, seed=1)
    rb = train_phase2(b, batches(), CONFIG, num_classes=3, ignore_index=IGNORE, seed=1)
    assert ra == rb
    sb = b.aux.state_dict()
    assert all(torch.equal(v, sb[k]) for k, v in a.aux.state_dict().items())


def test_phase2_errors_name_the_problem():
    plain = build_model(ModelConfig(**SMALL), num_classes=3)
    with pytest.raises(ValueError, match="MadbalNet"):
        train_phase2(plain, batches(), CONFIG, num_classes=3, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="re-iterable"):
        train_phase2(model(), iter(batches()), CONFIG, num_classes=3, ignore_index=IGNORE)
    unlabelled = [(x, torch.full_like(m, IGNORE)) for x, m in batches(n=1)]
    with pytest.raises(ValueError, match="labelled pixel"):
        train_phase2(model(), unlabelled, CONFIG, num_classes=3, ignore_index=IGNORE)
    bad = [(x, m.clamp(max=2) + 3) for x, m in batches(n=1)]
    with pytest.raises(ValueError, match="batch 0 masks"):
        train_phase2(model(), bad, CONFIG, num_classes=3, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="3 classes, num_classes is 4"):
        train_phase2(model(), batches(), CONFIG, num_classes=4, ignore_index=IGNORE)
