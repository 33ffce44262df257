"""Training augmentation, applied identically to an image and its mask (numpy, seeded).

Random crop (padded with ``ignore_index`` when the frame is smaller than the crop), horizontal
flip and a brightness factor in ``1 +- brightness``. The generator is seeded per
(seed, epoch, item) by the caller, so a resumed run sees exactly the same batches.
"""
from __future__ import annotations

import numpy as np

from rayal.config.training import AugmentConfig


def random_crop(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], ignore_index: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) image and (H, W) mask -> crops of ``size`` (pads first when smaller)."""
    ch, cw = size
    h, w = mask.shape
    if h < ch or w < cw:
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=ignore_index)
        h, w = mask.shape
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y:y + ch, x:x + cw], mask[y:y + ch, x:x + cw]


def augment(image: np.ndarray, mask: np.ndarray, config: AugmentConfig, ignore_index: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) image, (H, W) mask -> float32 (H', W', 3) image in [0, 1], mask."""
    if config.crop is not None:
        image, mask = random_crop(image, mask, config.crop, ignore_index, rng)
    if config.flip and rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    out = image.astype(np.float32) / 255.0
    if config.brightness > 0:
        out = np.clip(out * rng.uniform(1 - config.brightness, 1 + config.brightness), 0.0, 1.0)
    return np.ascontiguousarray(out), np.ascontiguousarray(mask)
