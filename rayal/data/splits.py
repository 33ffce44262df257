"""Labelled splits of the configured dataset: ``frame_id -> (image, mask)`` for training and eval.

One interface over the three sources (:class:`LabelledSplit`):
- ``folder``: a :class:`FolderDataset` of ``split`` (CamVid layout);
- ``synthetic``: the pool split is ``synthetic.num_frames`` scenes of ``synthetic.seed``
  (``syn_0000042``); every other split is ``synthetic.eval_frames`` scenes of seed + 1
  (``syneval_0000042``), so evaluation never sees a pool frame;
- ``manifest``: the pool split is ``data.manifest``, another split the manifest named by
  ``data.split_files[split]``; rows need a ``mask_uri``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rayal.config.sections import DataConfig
from rayal.core.splits import parse_split
from rayal.data.decode import load_image, load_mask
from rayal.data.folder import FolderDataset
from rayal.data.manifest import read_manifest
from rayal.data.synthetic import load_synthetic, render_scene


def folder_dataset(data: DataConfig, split: str) -> FolderDataset:
    """The folder dataset of one split, as the config describes it."""
    return FolderDataset(
        data.root, images=data.images, masks=data.masks, split=split,
        split_file=data.split_files.get(split), num_classes=data.num_classes,
        ignore_index=data.ignore_index, class_names=data.class_names,
        image_size=data.image_size)


@dataclass
class LabelledSplit:
    """Frames with masks. ``split[i]`` and ``split.load(frame_id)`` give
    ``(image uint8 (H, W, 3), mask uint8 (H, W))``; mask ids are ``0..num_classes-1`` or
    ``ignore_index``. Bad files raise FrameError / LabelError naming the frame."""

    name: str
    frame_ids: list[str]
    num_classes: int
    ignore_index: int
    _load: Callable[[int], tuple[np.ndarray, np.ndarray]]

    def __post_init__(self) -> None:
        self._position = {f: i for i, f in enumerate(self.frame_ids)}

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._load(int(i))

    def index(self, frame_id: str) -> int:
        try:
            return self._position[frame_id]
        except KeyError:
            raise KeyError(f"frame {frame_id!r} is not in split {self.name!r}") from None

    def load(self, frame_id: str) -> tuple[np.ndarray, np.ndarray]:
        return self._load(self.index(frame_id))

    def subset(self, frame_ids: Sequence[str]) -> "LabelledSplit":
        """The same split restricted to (and ordered as) ``frame_ids``."""
        positions = [self.index(f) for f in frame_ids]
        return LabelledSplit(self.name, list(frame_ids), self.num_classes, self.ignore_index,
                             lambda i: self._load(positions[i]))

    def head(self, n: int | None) -> "LabelledSplit":
        return self if n is None or n >= len(self) else self.subset(self.frame_ids[:n])


def labelled_split(data: DataConfig, split: str) -> LabelledSplit:
    """The labelled frames of ``split`` (``data.limit`` applies to the pool split only).

    ``split`` may be sliced, ``"val[24:]"`` (:mod:`rayal.core.splits`): a contiguous part of
    the split's frames, named by the whole text.

    Raises:
        ValueError: a malformed split, or a slice that holds no frame (naming both).
    """
    if data.num_classes is None:
        raise ValueError("data.num_classes is required to read masks")
    name, part = parse_split(split)
    if data.source == "synthetic":
        split_data = _synthetic_split(data, name)
    elif data.source == "folder":
        split_data = _folder_split(data, name)
    else:
        split_data = _manifest_split(data, name)
    if part is not None:
        frames = split_data.frame_ids[part]
        if not frames:
            raise ValueError(f"split {split!r} holds no frame: split {name!r} has "
                             f"{len(split_data)}")
        split_data = split_data.subset(frames)
        split_data.name = split
    return split_data.head(data.limit) if split == data.pool_split else split_data


def _synthetic_split(data: DataConfig, split: str) -> LabelledSplit:
    syn = data.synthetic
    if split == data.pool_split:
        n, seed, prefix = syn.num_frames, syn.seed, "syn_"
    else:
        n, seed, prefix = syn.eval_frames, syn.seed + 1, "syneval_"
    ids = [f"{prefix}{i:07d}" for i in range(n)]
    return LabelledSplit(split, ids, data.num_classes, data.ignore_index,
                         lambda i: render_scene(i, height=syn.height, width=syn.width, seed=seed))


def _folder_split(data: DataConfig, split: str) -> LabelledSplit:
    dataset = folder_dataset(data, split)
    if not dataset.labelled:
        raise ValueError(f"data.masks is not set: split {split!r} has no masks to train or evaluate on")
    return LabelledSplit(split, dataset.frame_ids, data.num_classes, data.ignore_index,
                         lambda i: dataset[i])


def _manifest_split(data: DataConfig, split: str) -> LabelledSplit:
    uri = data.manifest if split == data.pool_split else data.split_files.get(split)
    if uri is None:
        raise ValueError(f"split {split!r}: give its manifest as data.split_files.{split}")
    table = read_manifest(uri, columns=["frame_id", "uri", "mask_uri"]).to_pydict()
    ids, uris, masks = table["frame_id"], table["uri"], table["mask_uri"]
    missing = [f for f, m in zip(ids, masks) if not m]
    if missing:
        raise ValueError(f"manifest {uri}: {len(missing)} frame(s) have no mask_uri, e.g. {missing[0]!r}")

    def load(i: int) -> tuple[np.ndarray, np.ndarray]:
        if uris[i].startswith("synthetic://"):
            return load_synthetic(uris[i], data.synthetic.height, data.synthetic.width)
        image = load_image(uris[i], frame_id=ids[i], size=data.image_size)
        mask = load_mask(masks[i], num_classes=data.num_classes, ignore_index=data.ignore_index,
                         size=data.image_size, frame_id=ids[i])
        return image, mask

    return LabelledSplit(split, list(ids), data.num_classes, data.ignore_index, load)
