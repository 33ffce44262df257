"""The tiny simulated active-learning config the end-to-end pipeline tests share (``rayal run``,
``compare``, ``tune``, the S3 runs): 8 classes of 32x48 synthetic scenes, a 3-stage Unet, entropy
on patch scores, 2 epochs of 4-frame batches."""
from __future__ import annotations

import copy

import pytest

TINY = {
    "device": "cpu",
    "data": {"num_classes": 8, "synthetic": {"height": 32, "width": 48}},
    "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["patch"], "grid": [2, 2],
                "batch_size": 8, "top_k_regions": None},
    "selection": {"strategy": "entropy", "params": {"aggregate": "mean"}},
    "train": {"epochs": 2, "batch_size": 4, "patience": None},
    "loop": {"initial": 4, "full_miou": 0.5},
    "ray": {"cpus_per_actor": 0.5},
}
PRESETS = {
    # one round of 6 patches on 10 frames (tests/pipeline/test_experiment.py, test_s3_runs.py)
    "run": {"name": "tiny-run", "seed": 3, "data": {"synthetic": {"num_frames": 10, "eval_frames": 4}},
            "selection": {"budget": 6}, "pool": {"unit": "patch"},
            "loop": {"rounds": 1, "max_labelled": None, "plot_frames": 2}},
    # whole images, 4 a round up to 8 (tests/pipeline/test_compare.py, test_tune.py)
    "sweep": {"seed": 0, "selection": {"budget": 4}, "pool": {"unit": "image"},
              "loop": {"max_labelled": 8, "plot_frames": 0}},
}


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in: nested dicts merge, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(preset, **changes)``: the raw config dict of :data:`TINY` with the preset
    (``"run"`` or ``"sweep"``) and then ``changes`` merged in."""
    return lambda preset, **changes: merged(merged(TINY, PRESETS[preset]), changes)
