"""MadbalNet: stage choice, multi-head outputs, seeding, checkpoints (rayal.models.madbal)."""
from __future__ import annotations

import pytest
import torch

from rayal.config import ModelConfig
from rayal.config.training import MadbalConfig
from rayal.models import (MadbalNet, SegmentationNet, build_model, load_checkpoint,
                          model_from_config, resolve_stages, save_checkpoint)

SMALL = dict(arch="Unet", encoder="resnet18", decoder_channels=[16, 8, 8, 8, 8])
MADBAL = MadbalConfig(enabled=True, head_channels=8)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def madbal_model(seed: int = 0, num_classes: int = 4, madbal: MadbalConfig = MADBAL, **kw):
    return build_model(ModelConfig(**(SMALL | kw)), num_classes=num_classes, seed=seed,
                       madbal=madbal).eval()


def test_resolve_stages_automatic_and_explicit():
    assert resolve_stages((3, 64, 64, 128, 256, 512), None) == (2, 3, 4)  # resnet, depth 5
    assert resolve_stages((3, 0, 32, 64, 160, 256), None) == (2, 3, 4)  # mit: stage 1 empty
    assert resolve_stages((3, 16, 24, 32), None) == (1, 2, 3)  # depth 3: all three
    assert resolve_stages((3, 64, 64, 128, 256, 512), (1, 3, 5)) == (1, 3, 5)
    with pytest.raises(ValueError, match="madbal.stages"):
        resolve_stages((3, 16, 24, 32), (1, 2, 4))  # no stage 4
    with pytest.raises(ValueError, match="madbal.stages"):
        resolve_stages((3, 0, 32, 64, 160, 256), (1, 2, 3))  # stage 1 has no channels
    with pytest.raises(ValueError, match="3 encoder stages"):
        resolve_stages((3, 0, 16, 32), None)
    with pytest.raises(ValueError, match="madbal.stages"):
        MadbalConfig(stages=(2, 2, 3))


@pytest.mark.parametrize("arch,encoder,depth", [("Unet", "resnet18", 5), ("FPN", "mobilenet_v2", 5),
                                                 ("Unet", "mobilenet_v2", 4)])
def test_multi_head_shapes_any_backbone(arch, encoder, depth):
    kw = dict(arch=arch, encoder=encoder, encoder_depth=depth)
    kw["decoder_channels"] = [16, 8, 8, 8, 8][:depth] if arch == "Unet" else None
    model = build_model(ModelConfig(**kw), num_classes=5, seed=1, madbal=MADBAL).eval()
    x = torch.rand(2, 3, 40, 72)  # not a multiple of 32: padded, then cropped back
    with torch.no_grad():
        out = model.multi_head(x)
        plain = model(x)
    assert isinstance(model, SegmentationNet) and model.embedding_dim == model.encoder.out_channels[-1]
    assert out["logits"].shape == (2, 5, 40, 72) and torch.equal(out["logits"], plain)
    assert out["head_logits"].shape == (3, 2, 5, 40, 72)
    assert out["head_weights"].shape == (2, 3, 40, 72)
    assert out["loss_logits"].shape == (2, 2, 40, 72)
    assert out["features"][-1].shape[1] == model.embedding_dim
    w = out["head_weights"]
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(2, 40, 72), atol=1e-5)
    channels = model.encoder.out_channels
    assert [n[0].in_channels for n in model.aux.necks] == [channels[s] for s in model.stages]


def test_explicit_stages_and_width():
    model = madbal_model(madbal=MadbalConfig(enabled=True, stages=(1, 3, 5), head_channels=6))
    assert model.stages == (1, 3, 5)
    assert [n[0].in_channels for n in model.aux.necks] == [64, 128, 512]
    assert all(h.in_channels == 6 and h.out_channels == 4 for h in model.aux.heads)


def test_segmentation_weights_equal_plain_build_and_extras_are_seeded():
    plain = build_model(ModelConfig(**SMALL), num_classes=4, seed=5)
    a, b, c = madbal_model(seed=5), madbal_model(seed=5), madbal_model(seed=6)
    seg = a.segmentation_state()
    assert set(seg) == set(plain.state_dict())
    assert all(torch.equal(seg[k], v) for k, v in plain.state_dict().items())
    sa, sb, sc = a.aux.state_dict(), b.aux.state_dict(), c.aux.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_disabled_madbal_builds_a_plain_model():
    model = build_model(ModelConfig(**SMALL), num_classes=4, madbal=MadbalConfig(enabled=False))
    assert type(model) is SegmentationNet


def test_forward_trains_only_the_segmentation_model():
    """Phase I calls forward: the extra modules get no gradient from it."""
    model = madbal_model().train()
    assert not any(p.requires_grad for p in model.aux.parameters())  # DDP-safe in phase I
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.aux.parameters())
    assert all(p.grad is not None for p in model.net.segmentation_head.parameters())


def test_checkpoint_round_trip_keeps_madbal(tmp_path):
    model = madbal_model(seed=2, madbal=MadbalConfig(enabled=True, stages=(1, 2, 4), head_channels=8))
    path = save_checkpoint(tmp_path / "m.pt", model, meta={"round": 1})
    loaded, meta = load_checkpoint(path)
    assert isinstance(loaded, MadbalNet) and meta == {"round": 1}
    assert loaded.stages == (1, 2, 4) and loaded.madbal_config == model.madbal_config
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        a, b = model.multi_head(x), loaded.eval().multi_head(x)
    for key in ("logits", "head_logits", "head_weights", "loss_logits"):
        assert torch.equal(a[key], b[key]), key
    # automatic stages are stored resolved, so a reload never depends on the rule
    auto = save_checkpoint(tmp_path / "auto.pt", madbal_model())
    assert torch.load(auto, weights_only=False)["madbal"]["stages"] == [2, 3, 4]


def test_plain_checkpoints_still_load_plain(tmp_path):
    plain = build_model(ModelConfig(**SMALL), num_classes=3, seed=0)
    path = save_checkpoint(tmp_path / "p.pt", plain)
    payload = torch.load(path, weights_only=False)
    assert payload["madbal"] is None
    del payload["madbal"]  # a checkpoint written before MADBAL existed
    torch.save(payload, tmp_path / "old.pt")
    for p in (path, tmp_path / "old.pt"):
        loaded, _ = load_checkpoint(p)
        assert type(loaded) is SegmentationNet


def test_model_from_config_wraps_a_plain_checkpoint(tmp_path):
    plain = build_model(ModelConfig(**SMALL), num_classes=3, seed=0)
    path = save_checkpoint(tmp_path / "p.pt", plain)
    config = ModelConfig(checkpoint=str(path))
    wrapped = model_from_config(config, 3, seed=4, madbal=MADBAL)
    again = model_from_config(config, 3, seed=4, madbal=MADBAL)
    assert isinstance(wrapped, MadbalNet)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in wrapped.segmentation_state().items())
    assert all(torch.equal(v, again.aux.state_dict()[k]) for k, v in wrapped.aux.state_dict().items())
    assert type(model_from_config(config, 3)) is SegmentationNet
    fresh = model_from_config(ModelConfig(**SMALL), 3, madbal=MADBAL)
    assert isinstance(fresh, MadbalNet)
    # a MadbalNet checkpoint stays one without the madbal argument
    mpath = save_checkpoint(tmp_path / "m.pt", fresh)
    assert isinstance(model_from_config(ModelConfig(checkpoint=str(mpath)), 3), MadbalNet)
