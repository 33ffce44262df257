"""The full-supervision reference mIoU every learning curve is normalised by.

``loop.full_miou`` when given; otherwise the model is trained once on every frame of the pool
split (``rayal train --full``) and its eval mIoU cached in ``<reference_dir>/metrics.json``,
so every run, resume, comparison and Tune trial of one setting shares it.
"""
from __future__ import annotations

import json
from pathlib import Path

from rayal.config.sections import RayalConfig


def reference_dir(config: RayalConfig) -> Path:
    return Path(config.loop.reference_dir or Path(config.output_dir) / "full")


def full_supervision_miou(config: RayalConfig, *, progress: bool = False) -> float:
    if config.loop.full_miou is not None:
        return float(config.loop.full_miou)
    target = reference_dir(config)
    cached = target / "metrics.json"
    if cached.is_file():
        return float(json.loads(cached.read_text())["miou"])
    from rayal.pipeline.train_job import run_training

    ref = config.model_copy(deep=True)
    ref.output_dir = str(target.parent)
    summary = run_training(ref, full=True, progress=progress, out_name=target.name)
    return float(summary.eval_miou)
