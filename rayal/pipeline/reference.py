"""The full-supervision reference mIoU every learning curve is normalised by.

``loop.full_miou`` when given; otherwise the model is trained once on every frame of the pool
split (``rayal train --full``, :func:`reference_epochs` epochs) and its eval mIoU cached in ``<reference_dir>/metrics.json``,
so every run, resume, comparison and Tune trial of one setting shares it. The reference
directory is a local path or an ``s3://`` / ``gs://`` URI.
"""
from __future__ import annotations

from rayal.config.sections import RayalConfig
from rayal.data import exists, join_uri
from rayal.data.io import parent_uri


def reference_dir(config: RayalConfig) -> str:
    return str(config.loop.reference_dir or join_uri(config.output_dir, "full"))


def reference_epochs(config: RayalConfig) -> int:
    """Epochs of the reference: ``loop.reference_epochs``; unset, a warm-started run with a
    fixed ``loop.rounds`` gets as many epochs as the run trains in all (``(rounds + 1) x
    train.epochs``), so the reference sees every label for as many optimiser steps as the
    run and is a ceiling by construction (it trains them all: no early stopping; its
    best-validation weights are kept, as each round's are); otherwise ``train.epochs``."""
    loop, train = config.loop, config.train
    if loop.reference_epochs is not None:
        return loop.reference_epochs
    if train.warm_start and loop.rounds is not None:
        return (loop.rounds + 1) * train.epochs
    return train.epochs


def full_supervision_miou(config: RayalConfig, *, progress: bool = False) -> float:
    if config.loop.full_miou is not None:
        return float(config.loop.full_miou)
    from rayal.pipeline.storage import read_json

    target = reference_dir(config)
    cached = join_uri(target, "metrics.json")
    if exists(cached):
        return float(read_json(cached)["miou"])
    from rayal.pipeline.train_job import run_training

    ref = config.model_copy(deep=True)
    ref.output_dir = parent_uri(target)
    ref.train.epochs = reference_epochs(config)
    # every epoch a run trains, the reference trains too (it still keeps its best-val weights):
    # early stopping on a small validation sample stopped it short of the runs it normalises
    ref.train.patience = None
    name = target.rstrip("/").rsplit("/", 1)[-1]
    summary = run_training(ref, full=True, progress=progress, out_name=name)
    return float(summary.eval_miou)
