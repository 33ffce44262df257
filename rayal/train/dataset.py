"""Labelled items for training: full masks or sparse masks, plus CEAL pseudo-labels.

An annotator labels *units* (DESIGN.md "Units of annotation"). :class:`LabelSpec` says what
was labelled in one frame and how, and :func:`sparse_mask` turns the ground truth into the
training mask, ``ignore_index`` everywhere else:

- ``full``: the whole frame (``regions`` None) or the true pixels of the listed regions
  (image and patch units);
- ``dominant``: every pixel of a listed region gets that region's one label (superpixels,
  one click each); a region whose label is -1 (void only) stays ignored;
- ``points``: single labelled pixels ``(y, x, class)`` (MADBAL one-pixel annotation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import torch

from rayal.config.sections import ScoringConfig
from rayal.config.training import AugmentConfig
from rayal.data import load_mask, unit_region_map
from rayal.data.splits import LabelledSplit
from rayal.train.augment import augment

ANNOTATIONS = ("full", "dominant", "points")


@dataclass(frozen=True)
class LabelSpec:
    """What was labelled in one frame.

    regions: labelled region ids of ``unit`` (None: the whole frame); dominant: one class per
    region (``annotation == "dominant"``); points: ``(y, x, class)`` rows (``"points"``).
    """

    frame_id: str
    annotation: str = "full"
    regions: tuple[int, ...] | None = None
    dominant: tuple[int, ...] | None = None
    points: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self):
        if self.annotation not in ANNOTATIONS:
            raise ValueError(f"frame {self.frame_id}: annotation must be one of {ANNOTATIONS}, "
                             f"got {self.annotation!r}")
        if self.annotation == "dominant" and (self.regions is None or self.dominant is None
                                              or len(self.regions) != len(self.dominant)):
            raise ValueError(f"frame {self.frame_id}: dominant labels need one class per region")


def sparse_mask(gt: np.ndarray, spec: LabelSpec, region_map: np.ndarray | None,
                ignore_index: int) -> np.ndarray:
    """Training mask (H, W) of ``spec``: ground truth ``gt`` where labelled, ignore elsewhere."""
    if spec.annotation == "full" and spec.regions is None:
        return gt
    out = np.full(gt.shape, ignore_index, dtype=gt.dtype)
    if spec.annotation == "points":
        for y, x, c in spec.points:
            out[y, x] = c
        return out
    if region_map is None:
        raise ValueError(f"frame {spec.frame_id}: region labels need the frame's region map")
    if region_map.shape != gt.shape:
        raise ValueError(f"frame {spec.frame_id}: region map {region_map.shape} does not match "
                         f"the mask {gt.shape}")
    regions = np.asarray(spec.regions, dtype=np.int64)
    lut = np.full(int(region_map.max()) + 2, ignore_index, dtype=np.int64)
    if spec.annotation == "dominant":
        labels = np.asarray(spec.dominant, dtype=np.int64)
        labels[labels < 0] = ignore_index
        lut[regions] = labels
        return lut[region_map].astype(gt.dtype)
    keep = np.zeros(len(lut), bool)
    keep[regions] = True
    inside = keep[region_map]
    out[inside] = gt[inside]
    return out


def specs_from_units(units: pa.Table, unit: str, one_pixel: Sequence[LabelSpec] = ()) -> list[LabelSpec]:
    """Pool units (``frame_id, region_id, dominant_class``; labelled ones) -> one spec per frame.

    Image units label whole frames, patches their true pixels, superpixels their dominant label.
    ``one_pixel`` specs (points) replace the superpixel labels of their frames.
    """
    from rayal.core.units import get_unit

    spec = get_unit(unit)   # the unit's label rule: full pixels or its dominant class
    frames = units.column("frame_id").to_pylist()
    regions = units.column("region_id").to_numpy()
    dominant = units.column("dominant_class").to_numpy()
    by_frame: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        by_frame.setdefault(f, []).append(i)
    points = {s.frame_id: s for s in one_pixel}
    specs = []
    for frame_id in sorted(by_frame):
        rows = by_frame[frame_id]
        if frame_id in points:
            specs.append(points[frame_id])
        elif spec.level == "image":
            specs.append(LabelSpec(frame_id))
        elif spec.label == "full":
            specs.append(LabelSpec(frame_id, "full", tuple(int(regions[i]) for i in rows)))
        else:
            specs.append(LabelSpec(frame_id, "dominant", tuple(int(regions[i]) for i in rows),
                                   tuple(int(dominant[i]) for i in rows)))
    return specs


@dataclass
class TrainingSet(torch.utils.data.Dataset):
    """Labelled frames as training pairs, decoded once and cached (labelled sets are small).

    ``set[i]`` -> (image float32 (3, H, W) in [0, 1], mask int64 (H, W)). Augmentation is seeded
    by (seed, epoch, i); call :meth:`set_epoch` each epoch. ``pseudo`` maps extra frame ids to
    pseudo-label masks (CEAL), trained on like labelled frames.
    """

    split: LabelledSplit
    specs: list[LabelSpec]
    unit: str = "image"
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    augment_config: AugmentConfig | None = None
    seed: int = 0
    masks_dir: str | None = None
    pseudo: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.epoch = 0
        self._items: list[tuple[str, LabelSpec | None]] = [(s.frame_id, s) for s in self.specs]
        self._items += [(f, None) for f in sorted(self.pseudo)]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def frame_ids(self) -> list[str]:
        return [f for f, _ in self._items]

    def _ground_truth(self, frame_id: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.masks_dir is None:
            return mask
        from rayal.data import join_uri
        return load_mask(join_uri(self.masks_dir, f"{frame_id}.png"), num_classes=self.split.num_classes,
                         ignore_index=self.split.ignore_index, expected_size=image.shape[:2],
                         frame_id=frame_id)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i`` before augmentation: (uint8 (H, W, 3) image, (H, W) training mask)."""
        if i not in self._cache:
            frame_id, spec = self._items[i]
            image, mask = self.split.load(frame_id)
            if spec is None:
                target = self.pseudo[frame_id]
            else:
                gt = self._ground_truth(frame_id, image, mask)
                needs_map = spec.regions is not None and spec.annotation != "points"
                regions = unit_region_map(image, self.unit, self.scoring) if needs_map else None
                target = sparse_mask(gt, spec, regions, self.split.ignore_index)
            self._cache[i] = (image, target)
        return self._cache[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.pair(i)
        if self.augment_config is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            image, mask = augment(image, mask, self.augment_config, self.split.ignore_index, rng)
        else:
            image = image.astype(np.float32) / 255.0
        return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64)))

    def label_items(self):
        """``(frame_id, training mask (H, W), labelled as a whole frame)`` of every item."""
        for i, (frame_id, spec) in enumerate(self._items):
            whole = spec is not None and spec.annotation == "full" and spec.regions is None
            yield frame_id, self.pair(i)[1], whole

    def labelled_pixels(self) -> int:
        """Pixels that carry a label (not ``ignore_index``) over the whole set."""
        return int(sum((self.pair(i)[1] != self.split.ignore_index).sum() for i in range(len(self))))


def pad_batch(items: Sequence[tuple[torch.Tensor, torch.Tensor]], ignore_index: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate ``(image (3, H, W), mask (H, W))`` pairs of any sizes into one training batch.

    The rule for frames of different sizes in one batch: every pair is padded at the bottom and
    right to the batch's largest height and width, images with 0 (black) and masks with
    ``ignore_index``, so padded pixels take no part in the loss. Returns (images (B, 3, H, W),
    masks (B, H, W)); pairs of one size are stacked unchanged.
    """
    height = max(int(img.shape[-2]) for img, _ in items)
    width = max(int(img.shape[-1]) for img, _ in items)
    images, masks = [], []
    for img, mask in items:
        ph, pw = height - int(img.shape[-2]), width - int(img.shape[-1])
        if ph or pw:
            img = torch.nn.functional.pad(img, (0, pw, 0, ph), value=0.0)
            mask = torch.nn.functional.pad(mask, (0, pw, 0, ph), value=ignore_index)
        images.append(img)
        masks.append(mask)
    return torch.stack(images), torch.stack(masks)


def eval_batches(split: LabelledSplit, batch_size: int, shard: tuple[int, int] = (0, 1)
                 ) -> Callable[[], "iter"]:
    """Batches of (images (B, 3, H, W) float [0, 1], masks (B, H, W) int64) of one rank's shard.

    Frames are never padded or resized for evaluation: consecutive frames of one size share a
    batch and a frame of another size starts a new one, so metrics count real pixels only and
    a pool of mixed frame sizes evaluates exactly as frame-by-frame."""
    rank, world = shard
    indices = list(range(rank, len(split), world))

    def stacked(pairs):
        images = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float() / 255.0
        return images, torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))

    def batches():
        pairs: list = []
        for i in indices:
            pair = split[i]
            if pairs and (len(pairs) == batch_size or pair[1].shape != pairs[0][1].shape):
                yield stacked(pairs)
                pairs = []
            pairs.append(pair)
        if pairs:
            yield stacked(pairs)
    return batches
