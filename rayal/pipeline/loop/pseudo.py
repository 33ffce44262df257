"""CEAL pseudo-labels: confident pixels of unlabelled frames, labelled with the prediction.

A pixel is pseudo-labelled when the entropy (natural log) of the previous round's model is
``<= threshold`` (:func:`rayal.selection.ceal.pseudo_label_mask`); every other pixel is
ignored. At most ``max_frames`` unlabelled frames (a seeded sample) are pseudo-labelled
per round, so the extra training cost stays proportional to the labelled set.
"""
from __future__ import annotations

import numpy as np
import torch

from rayal.config.sections import RayalConfig
from rayal.data.splits import labelled_split
from rayal.models.device import resolve_device
from rayal.scoring import measures as M
from rayal.selection.ceal import pseudo_label_mask
from rayal.train.checkpoint import read_checkpoint


@torch.no_grad()
def ceal_pseudo_labels(config: RayalConfig, checkpoint: str, labelled: set[str], threshold: float,
                       max_frames: int) -> dict[str, np.ndarray]:
    """frame id -> uint8 (H, W) pseudo-label mask (``ignore_index`` where not confident)."""
    split = labelled_split(config.data, config.data.pool_split)
    candidates = [f for f in split.frame_ids if f not in labelled]
    rng = np.random.default_rng([config.seed, len(labelled)])
    chosen = sorted(rng.choice(candidates, size=min(max_frames, len(candidates)), replace=False))
    device = resolve_device(config.device)
    model = read_checkpoint(checkpoint)[0].to(device).eval()   # a local path or a URI
    out = {}
    for frame_id in chosen:
        image, _ = split.load(frame_id)
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
        p = torch.softmax(model(x).float(), dim=1)
        confident = pseudo_label_mask(M.entropy(p)[0].cpu().numpy(), threshold)
        if confident.any():
            mask = np.full(confident.shape, config.data.ignore_index, np.uint8)
            mask[confident] = p[0].argmax(0).cpu().numpy()[confident]
            out[frame_id] = mask
    return out
