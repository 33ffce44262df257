"""Evaluation: confusion matrix over a labelled split -> mIoU, per-class IoU, pixel accuracy."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.distributed as dist

from rayal.train.metrics import confusion_matrix, miou, per_class_iou, pixel_accuracy


@torch.no_grad()
def confusion_over(model: torch.nn.Module, batches: Iterable, num_classes: int, ignore_index: int,
                   device: torch.device) -> np.ndarray:
    """(C, C) confusion of ``model``'s argmax over (images, masks) batches; summed over ranks
    when torch.distributed is initialised (each rank passes its own shard)."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for images, masks in batches:
        pred = model(images.to(device)).argmax(1).cpu()
        conf += torch.from_numpy(confusion_matrix(pred, masks, num_classes, ignore_index))
    model.train(was_training)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(conf)
    return conf.numpy()


def metrics_from_confusion(conf: np.ndarray, class_names=None) -> dict:
    """JSON-ready metrics: ``miou``, ``per_class_iou`` (name -> IoU or None when absent),
    ``pixel_accuracy`` and the confusion matrix (rows true, columns predicted)."""
    iou = per_class_iou(conf)
    names = list(class_names) if class_names else [str(c) for c in range(len(iou))]
    return {
        "miou": miou(conf),
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "pixel_accuracy": pixel_accuracy(conf),
        "confusion_matrix": np.asarray(conf).tolist(),
    }
