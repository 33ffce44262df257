"""MADBAL phase II (papers/madbal.txt, Sec. 3.1): train the extra modules of a MadbalNet.

Phase I (the ordinary supervised loop) trained the segmentation model. Phase II freezes it
(no gradients, BatchNorm in eval mode: every phase-I parameter and buffer stays bit-identical)
and trains the varied-maturity heads, the weight-prediction block and the loss-prediction
module on ``L_II = l0 L_centre + l1 L_boundary + sum_k l_{k+1} L_seg^k`` (Eq. 3):

- ``L_seg^k``: cross-entropy of head k over labelled pixels;
- loss labels (Eq. 1): 1 where the pixel's phase-I cross-entropy exceeds ``tau_c``, the
  mean phase-I cross-entropy of its ground-truth class over the labelled pixels of the whole
  labelled set (DESIGN: "exceeds", strictly; the paper's ">=" differs on exact ties only);
- boundary pixels: image-gradient edges (:func:`rayal.scoring.maturity.image_edges`); centre
  pixels: every other pixel (Eq. 4's delta(x) = 1 - boundary);
- ``L_boundary`` / ``L_centre`` (Eq. 2): binary cross-entropy of the boundary / centre
  channel, averaged over the labelled boundary / centre pixels.
Optimiser: SGD, momentum 0.9, learning rate decayed linearly to 0 over all steps (the
paper's poly schedule, power 1). Plain torch: runs in the trainer's process or worker.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from rayal.config.training import MadbalConfig
from rayal.scoring.maturity import image_edges

MOMENTUM = 0.9


def check_masks(masks: torch.Tensor, num_classes: int, ignore_index: int, what: str = "masks") -> None:
    """Every mask value is a class id in [0, C) or ``ignore_index``; else a ValueError."""
    bad = (masks != ignore_index) & ((masks < 0) | (masks >= num_classes))
    if bool(bad.any()):
        values = sorted(set(masks[bad].unique().tolist()))[:5]
        raise ValueError(f"{what}: class ids {values} are outside [0, {num_classes}) "
                         f"and not the ignore index {ignore_index}")


def class_loss_sums(ce: torch.Tensor, masks: torch.Tensor, num_classes: int,
                    ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sum of the pixel cross-entropy (float64) and labelled-pixel count (int64).

    ce: (B, H, W) nats; masks: (B, H, W) class ids, ``ignore_index`` excluded -> ((C,), (C,)).
    """
    labelled = masks != ignore_index
    classes = masks[labelled].long()
    sums = torch.bincount(classes, weights=ce[labelled].double(), minlength=num_classes)
    counts = torch.bincount(classes, minlength=num_classes)
    return sums[:num_classes], counts[:num_classes]


def class_thresholds(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """tau_c = sum / count: (C,) float64 mean cross-entropy per class (NaN: no labelled pixel)."""
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, math.nan))


def loss_labels(ce: torch.Tensor, masks: torch.Tensor, num_classes: int, ignore_index: int,
                tau: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 1 loss labels: (B, H, W) int64, 1 where ``ce > tau[class]``, 0 where not, -1 ignored.

    ce: (B, H, W) phase-I pixel cross-entropy (nats); masks: (B, H, W) ground truth.
    ``tau`` (C,): class thresholds over the whole labelled set; None computes them from
    these pixels alone.
    """
    check_masks(masks, num_classes, ignore_index)
    if tau is None:
        tau = class_thresholds(*class_loss_sums(ce, masks, num_classes, ignore_index))
    labelled = masks != ignore_index
    classes = torch.where(labelled, masks, torch.zeros_like(masks)).long()
    above = ce.double() > tau.to(ce.device)[classes]
    labels = above.long()
    return torch.where(labelled, labels, torch.full_like(labels, -1))


def boundary_labels(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boundary pixels: (B, 3, H, W) in [0, 1] -> (B, H, W) bool (see ``image_edges``)."""
    return image_edges(images, threshold)


def _masked_bce(logit: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the pixels ``where`` (0, with a graph, when none)."""
    if not bool(where.any()):
        return logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logit[where], target[where].float())


def phase2_loss(extras: dict, masks: torch.Tensor, labels: torch.Tensor, boundary: torch.Tensor,
                weights: tuple[float, ...], ignore_index: int) -> tuple[torch.Tensor, dict]:
    """Eq. 3 on one batch. extras: :meth:`MadbalNet.extras` output; labels: loss labels
    (-1 ignored); boundary: (B, H, W) bool. -> (total, {"centre", "boundary", "seg"})."""
    labelled = labels >= 0
    loss_logits = extras["loss_logits"].float()
    centre = _masked_bce(loss_logits[:, 1], labels, labelled & ~boundary)
    edge = _masked_bce(loss_logits[:, 0], labels, labelled & boundary)
    seg = [F.cross_entropy(h.float(), masks, ignore_index=ignore_index)
           for h in extras["head_logits"]]
    total = weights[0] * centre + weights[1] * edge + sum(w * s for w, s in zip(weights[2:], seg))
    parts = {"centre": float(centre.detach()), "boundary": float(edge.detach()),
             "seg": [float(s.detach()) for s in seg]}
    return total, parts


def _on(batch, device: torch.device, num_classes: int, ignore_index: int, index: int):
    images, masks = batch
    images = torch.as_tensor(images).to(device).float()
    masks = torch.as_tensor(masks).to(device).long()
    if images.ndim != 4 or images.shape[1] != 3 or masks.shape != images[:, 0].shape:
        raise ValueError(f"phase II batch {index}: need images (B, 3, H, W) and masks (B, H, W), "
                         f"got {tuple(images.shape)} and {tuple(masks.shape)}")
    check_masks(masks, num_classes, ignore_index, what=f"phase II batch {index} masks")
    return images, masks


@torch.no_grad()
def _phase1_outputs(model, images: torch.Tensor, masks: torch.Tensor, ignore_index: int):
    """Frozen trunk: (encoder features, size, pixel cross-entropy (B, H, W))."""
    features, size = model.encode(images)
    logits = model.classify(model.decode(features), size).float()
    ce = F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="none")
    return features, size, ce


def _thresholds(model, batches, device, num_classes, ignore_index) -> tuple[torch.Tensor, int]:
    sums = torch.zeros(num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
    n = 0
    for n, batch in enumerate(batches, start=1):
        images, masks = _on(batch, device, num_classes, ignore_index, n - 1)
        _, _, ce = _phase1_outputs(model, images, masks, ignore_index)
        s, c = class_loss_sums(ce, masks, num_classes, ignore_index)
        sums += s
        counts += c
    if n == 0 or int(counts.sum()) == 0:
        raise ValueError("phase II needs at least one labelled pixel (no batch or every pixel ignored)")
    return class_thresholds(sums, counts), n


def train_phase2(model, batches: Iterable, config: MadbalConfig, *, num_classes: int,
                 ignore_index: int, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Train the extra modules of ``model`` (a MadbalNet) with its segmentation model frozen.

    batches: re-iterable (list, DataLoader) of ``(images (B, 3, H, W) float in [0, 1], masks
    (B, H, W) int64 with ignore_index)``; one pass computes the class thresholds tau, then
    ``config.phase2_epochs`` passes train. The model is left on ``device`` in eval mode with
    its ``requires_grad`` flags as they were (phase I of the next round trains it again).
    Returns {"epochs", "steps", "tau" (per class, None: no labelled pixel), "history" (one
    dict per epoch: mean "loss", "centre", "boundary", "seg" [3], "positive_rate",
    "boundary_rate")}.
    """
    if not callable(getattr(model, "extra_modules", None)):
        raise ValueError(f"phase II needs a MadbalNet (madbal.enabled), got {type(model).__name__}")
    if model.num_classes != num_classes:
        raise ValueError(f"phase II: model has {model.num_classes} classes, num_classes is {num_classes}")
    device = torch.device(device)
    model.to(device)
    extra = model.extra_modules()
    extra_ids = {id(p) for p in extra.parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in extra_ids)
    model.eval()  # frozen BatchNorm statistics of the phase-I model
    extra.train()
    try:
        cuda = [device.index if device.index is not None else torch.cuda.current_device()
                ] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return _fit(model, extra, batches, config, num_classes, ignore_index, device)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.eval()


def _fit(model, extra, batches, config: MadbalConfig, num_classes: int, ignore_index: int,
         device: torch.device) -> dict:
    tau, per_epoch = _thresholds(model, batches, device, num_classes, ignore_index)
    total_steps = per_epoch * config.phase2_epochs
    opt = torch.optim.SGD(extra.parameters(), lr=config.phase2_lr, momentum=MOMENTUM)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / total_steps)
    history, steps = [], 0
    for epoch in range(config.phase2_epochs):
        sums = {"loss": 0.0, "centre": 0.0, "boundary": 0.0, "seg": [0.0] * 3,
                "positive": 0, "labelled": 0, "edge": 0, "pixels": 0, "steps": 0}
        seen = 0
        for i, batch in enumerate(batches):
            images, masks = _on(batch, device, num_classes, ignore_index, i)
            features, size, ce = _phase1_outputs(model, images, masks, ignore_index)
            labels = loss_labels(ce, masks, num_classes, ignore_index, tau=tau)
            boundary = boundary_labels(images, config.edge_threshold)
            loss, parts = phase2_loss(model.extras(features, size), masks, labels, boundary,
                                      config.loss_weights, ignore_index)
            seen += 1
            if not bool((labels >= 0).any()):
                sched.step()  # an unlabelled batch: no loss, the schedule still advances
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            _accumulate(sums, float(loss.detach()), parts, labels, boundary)
        if seen == 0:
            raise ValueError("phase II batches must be re-iterable (a list or a DataLoader), "
                             "not a one-shot iterator")
        history.append(_epoch_summary(epoch, sums))
    return {"epochs": config.phase2_epochs, "steps": steps,
            "tau": [None if math.isnan(t) else float(t) for t in tau.tolist()],
            "history": history}


def _accumulate(sums: dict, loss: float, parts: dict, labels: torch.Tensor,
                boundary: torch.Tensor) -> None:
    sums["loss"] += loss
    sums["centre"] += parts["centre"]
    sums["boundary"] += parts["boundary"]
    sums["seg"] = [a + b for a, b in zip(sums["seg"], parts["seg"])]
    sums["positive"] += int((labels == 1).sum())
    sums["labelled"] += int((labels >= 0).sum())
    sums["edge"] += int(boundary.sum())
    sums["pixels"] += boundary.numel()
    sums["steps"] += 1


def _epoch_summary(epoch: int, sums: dict) -> dict:
    """Means over the epoch's optimiser steps (batches with a labelled pixel)."""
    batches = max(sums["steps"], 1)
    return {"epoch": epoch, "loss": sums["loss"] / batches, "centre": sums["centre"] / batches,
            "boundary": sums["boundary"] / batches, "seg": [s / batches for s in sums["seg"]],
            "positive_rate": sums["positive"] / max(sums["labelled"], 1),
            "boundary_rate": sums["edge"] / max(sums["pixels"], 1)}


__all__ = ["boundary_labels", "class_loss_sums", "class_thresholds", "loss_labels",
           "phase2_loss", "train_phase2"]
