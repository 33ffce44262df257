"""Sliced splits: one labelled split split in two disjoint parts, early stopping and evaluation."""
from __future__ import annotations

import pytest

from rayal.config import ConfigError, load_config
from rayal.data.splits import labelled_split
from rayal.train.trainer import _validation_split

SYN = {"name": "t", "data": {"source": "synthetic", "num_classes": 4,
                             "synthetic": {"num_frames": 6, "eval_frames": 10, "height": 32, "width": 48}}}


def _config(tmp_path, **train):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**SYN, "train": train}))
    return path


def test_slices_are_disjoint_parts_in_split_order(tmp_path):
    config = load_config(_config(tmp_path, val_split="val[:4]"), ["data.eval_split=val[4:]"])
    whole = labelled_split(config.data, "val")
    evaluation = labelled_split(config.data, config.data.eval_split)
    validation = _validation_split(config)
    assert validation.frame_ids == whole.frame_ids[:4] and evaluation.frame_ids == whole.frame_ids[4:]
    assert (validation.name, evaluation.name) == ("val[:4]", "val[4:]")
    image, mask = evaluation[0]                       # frames load as the whole split's
    want_image, want_mask = whole.load(evaluation.frame_ids[0])
    assert (image == want_image).all() and (mask == want_mask).all()


def test_val_limit_applies_within_the_slice(tmp_path):
    config = load_config(_config(tmp_path, val_split="val[2:]", val_limit=3))
    assert _validation_split(config).frame_ids == labelled_split(config.data, "val").frame_ids[2:5]


def test_a_slice_without_frames_and_a_sliced_pool_are_refused(tmp_path):
    config = load_config(_config(tmp_path), ["data.eval_split=val[20:]"])
    with pytest.raises(ValueError, match=r"split 'val\[20:\]' holds no frame: split 'val' has 10"):
        labelled_split(config.data, config.data.eval_split)
    with pytest.raises(ConfigError, match="pool split cannot be sliced"):
        load_config(_config(tmp_path), ["data.pool_split=train[:3]"])
    with pytest.raises(ConfigError, match=r"train.val_split: split 'val\[4\]'"):
        load_config(_config(tmp_path, val_split="val[4]"))


def test_whitespace_and_slices_of_the_pool_split_are_refused(tmp_path):
    from pydantic import ValidationError

    from rayal.config import RayalConfig

    with pytest.raises(ValidationError, match=r"split 'train '"):   # a name is used verbatim
        RayalConfig.model_validate({**SYN, "data": {**SYN["data"], "pool_split": "train "}})
    with pytest.raises(ConfigError, match="data.eval_split 'train\\[-3:\\]' slices the pool split"):
        load_config(_config(tmp_path), ["data.eval_split=train[-3:]"])
    with pytest.raises(ConfigError, match="train.val_split 'train\\[:2\\]' slices the pool split"):
        load_config(_config(tmp_path, val_split="train[:2]"))


def test_an_empty_slice_is_refused_before_any_training(ray_local, tmp_path):
    from rayal.train.trainer import fit
    from rayal.train.dataset import LabelSpec

    config = load_config(_config(tmp_path, val_split="val[:4]"),
                         ["data.eval_split=val[40:]", f"output_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"^data.eval_split: split 'val\[40:\]' holds no frame"):
        fit(config, [LabelSpec("syn_0000000")], tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
