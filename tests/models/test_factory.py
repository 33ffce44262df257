"""smp model factory, checkpoints and local encoder weights (rayal.models.factory)."""
from __future__ import annotations

import pytest
import torch

from rayal.config import ModelConfig
from rayal.models import build_model, load_checkpoint, model_from_config, save_checkpoint

SMALL = dict(arch="Unet", encoder="resnet18", decoder_channels=[16, 8, 8, 8, 8])


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def small_model(seed: int = 0, num_classes: int = 4, **kw):
    return build_model(ModelConfig(**(SMALL | kw)), num_classes=num_classes, seed=seed).eval()


def test_build_is_seeded_and_leaves_global_rng_alone():
    a, b, c = small_model(seed=3), small_model(seed=3), small_model(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small_model(seed=9)
    assert torch.equal(torch.rand(3), expected)  # fork_rng: the caller's stream is untouched


def test_forward_shapes_and_split():
    model = small_model()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        logits = model(x)
        features, size = model.encode(x)
        decoded = model.decode(features)
        again = model.classify(decoded, size)
    assert logits.shape == (2, 4, 64, 96)
    assert size == (64, 96)
    assert features[-1].shape[1] == model.embedding_dim == 512
    assert decoded.shape == (2, 8, 64, 96)
    assert torch.equal(logits, again)


def test_camvid_size_not_divisible_by_32():
    model = small_model()
    x = torch.rand(1, 3, 360, 480)
    with torch.no_grad():
        logits = model(x)
        features, size = model.encode(x)
    assert logits.shape == (1, 4, 360, 480)
    assert size == (360, 480)
    assert features[0].shape[-2:] == (384, 480)  # padded to the output stride
    # the crop keeps the top-left: the original pixels, not padding
    with torch.no_grad():
        top = model(x[..., :352, :])  # 352 = 11 * 32: no padding
    assert top.shape[-2:] == (352, 480)


def test_checkpoint_round_trip(tmp_path):
    model = small_model(seed=5)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, meta={"round": 3})
    assert path.is_file() and not path.with_suffix(".pt.tmp").exists()
    loaded, meta = load_checkpoint(path)
    loaded.eval()
    assert meta == {"round": 3}
    assert loaded.num_classes == 4
    assert loaded.model_config.decoder_channels == [16, 8, 8, 8, 8]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # a differently seeded fresh model does not give the same outputs
    with torch.no_grad():
        assert not torch.allclose(small_model(seed=6)(x), model(x))
    # model_from_config through the checkpoint
    via_cfg = model_from_config(ModelConfig(checkpoint=str(path)), num_classes=4, seed=99).eval()
    with torch.no_grad():
        assert torch.equal(via_cfg(x), model(x))
    with pytest.raises(ValueError, match="classes"):
        model_from_config(ModelConfig(checkpoint=str(path)), num_classes=5)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a rayal checkpoint"):
        load_checkpoint(other)


def test_model_from_config_needs_classes():
    with pytest.raises(ValueError, match="num_classes"):
        model_from_config(ModelConfig(**SMALL), num_classes=None)


def test_unknown_arch():
    with pytest.raises(ValueError) as err:
        build_model(ModelConfig(arch="NoSuchNet", encoder="resnet18"), num_classes=3)
    msg = str(err.value)
    assert "NoSuchNet" in msg and "known" in msg
    assert "Unet" in msg and "FPN" in msg


def test_arch_case_insensitive():
    model = build_model(ModelConfig(arch="unet", encoder="resnet18",
                                    decoder_channels=[16, 8, 8, 8, 8]), num_classes=3)
    assert type(model.net).__name__ == "Unet"


def test_unknown_encoder():
    with pytest.raises(ValueError, match="no_such_encoder"):
        build_model(ModelConfig(arch="Unet", encoder="no_such_encoder"), num_classes=3)


def test_missing_encoder_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder_weights"):
        build_model(ModelConfig(**SMALL, encoder_weights=str(tmp_path / "none.pth")),
                    num_classes=3)



def test_local_encoder_weights_loaded(tmp_path):
    donor = small_model(seed=1)
    path = tmp_path / "enc.pth"
    torch.save(donor.encoder.state_dict(), path)
    model = small_model(seed=2, encoder_weights=str(path))
    fresh = small_model(seed=2)
    donor_state = donor.encoder.state_dict()
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, donor_state[key]), key
    # the rest of the model is the seed-2 initialisation, untouched
    fresh_state = fresh.net.decoder.state_dict()
    for key, value in model.net.decoder.state_dict().items():
        assert torch.equal(value, fresh_state[key]), key



def test_encoder_weights_matching_nothing(tmp_path):
    path = tmp_path / "junk.pth"
    torch.save({"not.a.key": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="matches none"):
        build_model(ModelConfig(**SMALL, encoder_weights=str(path)), num_classes=3)


def test_checkpoint_self_contained_without_encoder_weights_file(tmp_path):
    donor = small_model(seed=1)
    weights = tmp_path / "enc.pth"
    torch.save(donor.encoder.state_dict(), weights)
    model = build_model(ModelConfig(**SMALL, encoder_weights=str(weights)), num_classes=4).eval()
    ckpt = save_checkpoint(tmp_path / "model.pt", model)
    weights.unlink()  # e.g. a Ray worker on another node
    loaded, _ = load_checkpoint(ckpt)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
