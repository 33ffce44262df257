"""Checkpoints as bytes (models layer) stored at local paths and URIs (``file://``; S3 in
tests/pipeline/test_s3_runs.py)."""
import pytest
import torch

from rayal.config.sections import ModelConfig
from rayal.models import build_model, checkpoint_bytes, model_from_checkpoint_bytes, model_from_config
from rayal.train.checkpoint import load_state, read_checkpoint, save_state, store_bytes, write_checkpoint

CFG = ModelConfig(arch="Unet", encoder="resnet18", encoder_depth=3, decoder_channels=[8, 8, 8])


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bytes_round_trip_rebuilds_the_model_and_meta():
    model = build_model(CFG, 5, seed=1)
    loaded, meta = model_from_checkpoint_bytes(checkpoint_bytes(model, {"epoch": 3}))
    assert _same(model, loaded) and meta == {"epoch": 3} and loaded.num_classes == 5
    assert not _same(build_model(CFG, 5, seed=2), loaded)


def test_bad_bytes_are_named():
    with pytest.raises(ValueError, match="model.checkpoint s3://b/x.pt is not a rayal checkpoint"):
        model_from_checkpoint_bytes(b"not a checkpoint", "s3://b/x.pt")


def test_local_path_and_file_uri(tmp_path):
    model = build_model(CFG, 4, seed=0)
    for target in (str(tmp_path / "a" / "best.pt"), f"file://{tmp_path}/b/best.pt"):
        assert write_checkpoint(target, model, {"round": 1}) == target
        loaded, meta = read_checkpoint(target)
        assert _same(model, loaded) and meta == {"round": 1}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "best.pt", "best.pt"]   # no .tmp left
    # model_from_config reads through the loader it is given
    fresh = model_from_config(CFG.model_copy(update={"checkpoint": f"file://{tmp_path}/b/best.pt"}), 4,
                              load=read_checkpoint)
    assert _same(model, fresh)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"model.checkpoint: no such file {tmp_path}/none.pt"):
        read_checkpoint(str(tmp_path / "none.pt"))


def test_training_state_round_trip_and_atomic_overwrite(tmp_path):
    target = str(tmp_path / "last.pt")
    save_state(target, {"epoch": 1, "w": torch.arange(3)})
    store_bytes(str(tmp_path / "other.bin"), b"x")
    save_state(target, {"epoch": 2, "w": torch.arange(4)})
    state = load_state(target)
    assert state["epoch"] == 2 and torch.equal(state["w"], torch.arange(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "other.bin"]
