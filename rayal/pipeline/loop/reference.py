"""The full-supervision reference mIoU every learning curve is normalised by.

``loop.full_miou`` when given; otherwise the model is trained once on every frame of the pool
split (``rayal train --full``, :func:`reference_epochs` epochs) and its eval mIoU cached in ``<reference_dir>/metrics.json``,
so every run, resume, comparison and Tune trial of one setting shares it. The reference
directory is a local path or an ``s3://`` / ``gs://`` URI.
"""
from __future__ import annotations

import sys

from rayal.config.sections import RayalConfig
from rayal.data import exists, join_uri
from rayal.data.io import parent_uri


def reference_dir(config: RayalConfig) -> str:
    return str(config.loop.reference_dir or join_uri(config.output_dir, "full"))


def reference_epochs(config: RayalConfig) -> int:
    """Epochs of the reference: ``loop.reference_epochs``; unset, ``loop.reference_factor`` x
    what one run's model trains in all: a warm-started run with a fixed ``loop.rounds`` trains
    ``(rounds + 1) x train.epochs`` epochs, any other run ``train.epochs`` per model. The
    reference sees every label for at least as many optimiser steps as a run, so it is a
    ceiling by construction (it trains them all: no early stopping; it keeps the epoch
    ``train.select_epoch`` says, as each round does); a factor above 1 trains it towards
    convergence."""
    loop, train = config.loop, config.train
    if loop.reference_epochs is not None:
        return loop.reference_epochs
    if train.warm_start and loop.rounds is not None:
        return loop.reference_factor * (loop.rounds + 1) * train.epochs
    return loop.reference_factor * train.epochs


REFERENCE_FILE = "reference.json"   # what the cached reference is: reference_record + "miou"


def reference_record(config: RayalConfig) -> dict:
    """What a cached reference must share with a setting to stand for it: its epochs, the
    frames it is evaluated on, the frames its best epoch is chosen on and whether it keeps the
    best epoch or the last (``train.select_epoch``)."""
    return {"epochs": reference_epochs(config), "eval_split": config.data.eval_split,
            "val_split": config.train.val_split or config.data.eval_split,
            "val_limit": config.train.val_limit, "select_epoch": config.train.select_epoch}


def cached_reference_miou(config: RayalConfig) -> float | None:
    """The reference mIoU of ``config`` without training anything: ``loop.full_miou``, the
    cached reference's, or None when it has not been trained yet.

    Raises ConfigError when the cached reference was trained for another number of epochs
    than ``config`` derives, or evaluated / validated on other splits (remove it, or point
    ``loop.reference_dir`` elsewhere). A record from before splits were kept is read by its
    epochs alone."""
    if config.loop.full_miou is not None:
        return float(config.loop.full_miou)
    from rayal.config import ConfigError
    from rayal.pipeline.storage import read_json

    target = reference_dir(config)
    if not exists(join_uri(target, "metrics.json")):
        return None
    record = join_uri(target, REFERENCE_FILE)
    if exists(record):
        # records written before select_epoch existed kept the best epoch
        kept, wanted = {"select_epoch": "best", **read_json(record)}, reference_record(config)
        for key in wanted:
            if key in kept and kept[key] != wanted[key]:
                raise ConfigError(f"the full-supervision reference in {target} was trained with "
                                  f"{key} {kept[key]!r}, this setting asks {wanted[key]!r}: remove "
                                  f"{target} or set loop.reference_dir to another directory")
    return float(read_json(join_uri(target, "metrics.json"))["miou"])


def full_supervision_miou(config: RayalConfig, *, progress: bool = False) -> float:
    """``loop.full_miou``, the cached reference's mIoU (:func:`cached_reference_miou`), or the
    mIoU of a reference trained now (:func:`reference_epochs` epochs on every pool frame)."""
    cached = cached_reference_miou(config)
    if cached is not None:
        return cached
    from rayal.pipeline.storage import write_json
    from rayal.pipeline.loop.train_job import run_training

    target = reference_dir(config)
    ref = config.model_copy(deep=True)
    ref.output_dir = parent_uri(target)
    ref.train.epochs = reference_epochs(config)
    # every epoch a run trains, the reference trains too (it keeps the epoch train.select_epoch
    # says): early stopping on a small validation sample stopped it short of the runs it normalises
    ref.train.patience = None
    name = target.rstrip("/").rsplit("/", 1)[-1]
    if progress:
        print(f"full-supervision reference: {ref.train.epochs} epochs on every pool frame, once "
              f"(kept in {target})", file=sys.stderr, flush=True)
    summary = run_training(ref, full=True, progress=progress, out_name=name)
    write_json(join_uri(target, REFERENCE_FILE), dict(reference_record(config),
                                                      miou=float(summary.eval_miou)))
    return float(summary.eval_miou)
