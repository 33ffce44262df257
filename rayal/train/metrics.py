"""Segmentation metrics from a confusion matrix (numpy / torch, ignore index excluded).

``conf[t, p]`` counts pixels of true class t predicted as p. IoU of class c is
``conf[c, c] / (row_c + col_c - conf[c, c])``; a class that is absent from both
the ground truth and the prediction has no IoU (NaN), and ``miou`` skips it when
``ignore_absent`` (the usual convention) or counts it as 0 otherwise.
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """(C, C) int64 confusion of predicted vs true class ids (any matching shapes).

    Pixels whose target is ``ignore_index`` are excluded; any other target or
    prediction outside [0, C) raises ValueError naming the offending ids.
    """
    pred = torch.as_tensor(pred).flatten().long()
    target = torch.as_tensor(target).flatten().long()
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} pixels, target has {target.numel()}")
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, ids in (("target", target), ("pred", pred)):
        bad = (ids < 0) | (ids >= num_classes)
        if bool(bad.any()):
            unknown = torch.unique(ids[bad])[:10].tolist()
            raise ValueError(f"{name} has class ids outside [0, {num_classes}): {unknown}")
    flat = target * num_classes + pred
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).cpu().numpy().astype(np.int64)


def per_class_iou(conf: np.ndarray) -> np.ndarray:
    """(C,) IoU per class; NaN where the class is in neither ground truth nor prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou(conf: np.ndarray, ignore_absent: bool = True) -> float:
    """Mean IoU over classes; absent classes skipped (``ignore_absent``) or counted as 0."""
    iou = per_class_iou(conf)
    if ignore_absent:
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else float("nan")
    return float(np.nan_to_num(iou, nan=0.0).mean())


def pixel_accuracy(conf: np.ndarray) -> float:
    conf = np.asarray(conf, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def aualc(budgets, mious, full_miou: float) -> float:
    """Area under the active-learning curve: trapezoid of mIoU over the labelled budget,
    divided by (budget span x full-supervision mIoU). 1.0 = full supervision from the start."""
    x = np.asarray(budgets, dtype=np.float64)
    y = np.asarray(mious, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("aualc needs matching budgets and mIoUs of at least two rounds")
    if np.any(np.diff(x) < 0):
        raise ValueError("budgets must not decrease from round to round")
    span = x[-1] - x[0]
    if span <= 0 or not full_miou > 0:
        raise ValueError("aualc needs a positive budget span and full-supervision mIoU")
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(x) / 2.0))
    return area / (span * full_miou)


def budget_to_reach(budgets, mious, full_miou: float, fraction: float) -> float | None:
    """Smallest budget whose mIoU reaches ``fraction`` x full-supervision mIoU (None: never)."""
    for b, m in zip(budgets, mious):
        if m >= fraction * full_miou:
            return float(b)
    return None
