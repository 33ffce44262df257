"""The supervised training loop (plain torch; runs alone, in Ray Train local mode or in DDP workers).

Per epoch: a seeded shuffle of the labelled set (sharded over ranks when torch.distributed is
initialised), Adam steps on cross-entropy with the ignore index excluded, an EMA (Polyak) copy
of the weights, validation mIoU of the EMA weights, a checkpoint, and early stopping once
``patience`` epochs bring no gain. ``train.select_epoch`` says which epoch ``best.pt`` keeps:
the best on validation, or the last of a fixed schedule. ``last.pt`` holds everything needed
to resume after a crash; ``best.pt`` is a rayal checkpoint of the kept epoch's EMA weights
(what ``rayal score`` loads); ``loop_state.json`` repeats the loop state alone, so the caller
reads it back without the weights. The checkpoint directory is a local path or an ``s3://`` / ``gs://`` URI.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from rayal.config.sections import RayalConfig
from rayal.data import exists, join_uri, makedirs
from rayal.data.decode import DataWarning
from rayal.data.splits import LabelledSplit
from rayal.models import model_from_config
from rayal.train.checkpoint import (load_bytes, load_state, read_checkpoint, save_state, store_bytes,
                                    write_checkpoint)
from rayal.train.checks import check_labels, label_stats
from rayal.train.dataset import TrainingSet, eval_batches, pad_batch
from rayal.train.evaluate import confusion_over, metrics_from_confusion

LAST, BEST, STATE = "last.pt", "best.pt", "loop_state.json"


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, ignore_index: int,
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (class-weighted) cross-entropy over labelled pixels; logits (B, C, H, W), masks (B, H, W).

    Ignored pixels get no gradient; a batch with no labelled pixel gives a zero loss that still
    touches every logit (DDP needs the same graph on every rank)."""
    total = F.cross_entropy(logits, masks, weight=class_weights, ignore_index=ignore_index,
                            reduction="sum")
    labelled = masks != ignore_index
    if class_weights is None:
        denom = labelled.sum()
    else:
        denom = class_weights[masks[labelled]].sum()
    if float(denom) == 0.0:
        return logits.sum() * 0.0
    return total / denom


class Ema:
    """Exponential moving average of a model's parameters and float buffers.

    decay_t = min(decay, (1 + t) / (10 + t)): early averages are not dominated by the
    initial weights when a round trains for only a few hundred steps."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        self.decay = decay
        self.updates = updates
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


@dataclass
class LoopState:
    """What ``last.pt`` stores besides weights: where training stands."""

    epoch: int = -1                      # last completed epoch
    best_miou: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    finished: bool = False
    best_is_last: bool = False           # no validation mIoU yet: best.pt = latest weights
    history: list = field(default_factory=list)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_order(n: int, seed: int, epoch: int, batch_size: int, steps: int | None,
                rank: int, world: int) -> list[list[int]]:
    """This rank's batches of item indices for one epoch: a seeded permutation, cycled to fill
    ``steps`` steps (or one pass), dealt round-robin so every rank takes the same step count."""
    per_rank = steps * batch_size if steps else math.ceil(n / world)
    per_rank = max(per_rank, 1)
    need = per_rank * world
    order = np.concatenate([np.random.default_rng([seed, epoch, k]).permutation(n)
                            for k in range(math.ceil(need / n))])[:need]
    mine = order[rank::world].tolist()
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def _save_bytes(path: str | Path, payload: dict) -> None:
    """``torch.save(payload)`` to a local path or URI (atomically: never half a checkpoint)."""
    save_state(os.fspath(path), payload)


def read_loop_state(checkpoint_dir: str | Path) -> dict:
    """The :class:`LoopState` (as a dict) of the run in ``checkpoint_dir``: from the small
    ``loop_state.json``, else (older runs) from ``last.pt``."""
    small = join_uri(os.fspath(checkpoint_dir), STATE)
    if exists(small):
        return json.loads(load_bytes(small, "training state"))
    return load_state(join_uri(os.fspath(checkpoint_dir), LAST))["state"]


def check_training_data(train_set: TrainingSet, val_split: LabelledSplit, class_names=None, *,
                        warn: bool = True) -> None:
    """Refuse a labelled set or validation split without a labelled pixel
    (:class:`~rayal.train.checks.DegenerateSplitError` naming it); warn about label-space
    mistakes (no non-background pixel, e.g. 0/255 masks with ``ignore_index`` 255)."""
    split = train_set.split
    check_labels(label_stats(f"the labelled set ({len(train_set)} frame(s) of split '{split.name}')",
                             train_set.label_items(), split.num_classes, split.ignore_index),
                 class_names, warn=warn)
    items = ((f, val_split[i][1], True) for i, f in enumerate(val_split.frame_ids))
    check_labels(label_stats(f"validation split '{val_split.name}' (train.val_split, else "
                             "data.eval_split)", items, val_split.num_classes,
                             val_split.ignore_index), class_names, warn=warn)


def train_loop(config: RayalConfig, train_set: TrainingSet, val_split: LabelledSplit,
               checkpoint_dir: str | Path, device: torch.device, *,
               init_state: dict | None = None, resume: bool = True,
               report: Callable[[dict], None] | None = None,
               on_epoch_end: Callable[[int, dict], None] | None = None,
               progress: bool = False, check: bool = True) -> dict:
    """Train ``config.model`` on ``train_set``; returns the final :class:`LoopState` as a dict.

    ``init_state``: weights to start from (warm start); ``resume``: continue from
    ``checkpoint_dir/last.pt`` when it exists; ``checkpoint_dir`` is a local path or a URI.
    ``report(metrics)`` is called once per epoch on every rank (``ray.train.report`` in a Ray
    Train worker). ``check=False`` skips :func:`check_training_data` (the caller ran it).
    """
    tc = config.train
    rank, world = _rank_world()
    ckpt_dir = os.fspath(checkpoint_dir)
    makedirs(ckpt_dir)
    num_classes = train_set.split.num_classes
    ignore = train_set.split.ignore_index
    torch.manual_seed(config.seed)
    model = model_from_config(config.model, num_classes, seed=config.seed, madbal=config.madbal,
                              load=read_checkpoint).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = Ema(model, tc.ema_decay) if tc.ema_decay else None
    state = LoopState()
    last = join_uri(ckpt_dir, LAST)
    if resume and exists(last):
        saved = load_state(last, map_location=device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None and saved.get("ema") is not None:
            ema.state, ema.updates = saved["ema"], saved["ema_updates"]
        state = LoopState(**saved["state"])
    if state.finished:
        return state.__dict__
    if check:
        check_training_data(train_set, val_split, config.data.class_names, warn=rank == 0)
    weights = (torch.tensor(tc.class_weights, dtype=torch.float32, device=device)
               if tc.class_weights else None)
    if weights is not None and len(weights) != num_classes:
        raise ValueError(f"train.class_weights has {len(weights)} values, data.num_classes is {num_classes}")
    net = DistributedDataParallel(model) if world > 1 else model
    val_batches = eval_batches(val_split, tc.batch_size, (rank, world))
    epochs = range(state.epoch + 1, tc.epochs)
    if progress and rank == 0:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="train", unit="epoch", initial=state.epoch + 1, total=tc.epochs)
    for epoch in epochs:
        train_set.set_epoch(epoch)
        net.train()
        losses, tic = [], time.perf_counter()
        for idx in epoch_order(len(train_set), config.seed, epoch, tc.batch_size,
                               tc.steps_per_epoch, rank, world):
            images, masks = pad_batch([train_set[i] for i in idx], ignore)
            logits = net(images.to(device))
            loss = segmentation_loss(logits, masks.to(device), ignore, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            losses.append(float(loss.detach()))
        train_seconds = time.perf_counter() - tic
        eval_model = model
        if ema is not None:
            eval_model = copy.deepcopy(model)
            eval_model.load_state_dict(ema.state)
        conf = confusion_over(eval_model, val_batches(), num_classes, ignore, device)
        metrics = metrics_from_confusion(conf, config.data.class_names)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "val_miou": metrics["miou"],
               "val_pixel_accuracy": metrics["pixel_accuracy"], "steps": len(losses),
               "train_seconds": train_seconds}
        if tc.select_epoch == "last":   # a fixed schedule: the final epoch's weights, unchosen
            improved, fallback = epoch == tc.epochs - 1, False
        else:
            improved = not np.isnan(row["val_miou"]) and (
                state.best_is_last or row["val_miou"] > state.best_miou + 1e-9)
            # fallback: no epoch has a validation mIoU (NaN) -> best.pt holds the latest weights
            fallback = not improved and np.isnan(row["val_miou"]) and (
                state.best_epoch < 0 or state.best_is_last)
        if improved:
            state.best_miou, state.best_epoch, state.bad_epochs = row["val_miou"], epoch, 0
            state.best_is_last = False
        else:
            state.bad_epochs += 1
        if fallback:
            if rank == 0 and not state.best_is_last:
                warnings.warn(f"validation mIoU is NaN at epoch {epoch} (no labelled pixel in the "
                              "validation frames): best.pt holds the latest epoch's weights "
                              "instead of the best", DataWarning, stacklevel=2)
            state.best_miou, state.best_epoch, state.best_is_last = float("nan"), epoch, True
        state.epoch = epoch
        state.history.append(row)
        stop = tc.patience is not None and state.bad_epochs >= tc.patience
        state.finished = stop or epoch == tc.epochs - 1
        if rank == 0:
            if improved or fallback:
                write_checkpoint(join_uri(ckpt_dir, BEST), eval_model,
                                 meta={"epoch": epoch, "val_miou": row["val_miou"],
                                       "per_class_iou": metrics["per_class_iou"]})
            # the small state first: when last.pt is final, so is loop_state.json
            store_bytes(join_uri(ckpt_dir, STATE), json.dumps(state.__dict__).encode())
            _save_bytes(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "ema": ema.state if ema else None,
                               "ema_updates": ema.updates if ema else 0,
                               "state": copy.deepcopy(state.__dict__)})
        if report is not None:
            report(dict(row, best_miou=state.best_miou, stopped=state.finished))
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if stop:
            break
    return state.__dict__
