"""A tiny, fast training config on synthetic scenes."""
from __future__ import annotations

import pytest

from rayal.config import config_from_dict


def tiny_config(tmp_path, **train) -> "RayalConfig":  # noqa: F821
    return config_from_dict({
        "name": "tiny", "seed": 0, "device": "cpu", "output_dir": str(tmp_path / "out"),
        "data": {"num_classes": 8,
                 "synthetic": {"num_frames": 12, "height": 48, "width": 64, "eval_frames": 6}},
        "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3,
                  "decoder_channels": [32, 16, 16]},
        "train": {"epochs": 2, "batch_size": 4, "lr": 3e-3, "patience": None,
                  "augment": {"crop": None, "flip": True, "brightness": 0.1}, **train},
    })


@pytest.fixture
def tiny(tmp_path):
    return lambda **train: tiny_config(tmp_path, **train)
