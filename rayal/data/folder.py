"""Folder datasets: images and label masks paired by file stem (CamVid layout).

Layout (templates are formatted with ``split``)::

    root/{split}/X.png        RGB frame       (images="{split}")
    root/{split}annot/X.png   class-id mask   (masks="{split}annot"; None = unlabelled pool)

Works on local paths and on URIs (``s3://``, ``gs://``) via :mod:`rayal.data.io`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from rayal.data.decode import _check_size, decode_image, decode_mask, resize_image
from rayal.data.errors import FrameError, LabelError
from rayal.data.io import exists, has_scheme, join_uri, list_files, read_bytes
from rayal.data.manifest import MANIFEST_SCHEMA
from rayal.data.maskfiles import MASK_EXTENSIONS, MaskFiles, index_mask_files

__all__ = ["FrameRecord", "FolderDataset", "IMAGE_EXTENSIONS", "MASK_EXTENSIONS", "read_split_file"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")   # compared case-insensitively
# masks: the rule of rayal.data.maskfiles (lossless only: JPEG corrupts class ids)


@dataclass(frozen=True)
class FrameRecord:
    """One frame: its id (file stem), image URI and mask URI (None if unlabelled)."""

    frame_id: str
    image_uri: str
    mask_uri: str | None = None


def _split_ext(name: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(name)
    return stem, ext.lower()


def _index_dir(directory: str, extensions: Sequence[str], what: str) -> dict[str, str]:
    """Map stem -> URI for files in ``directory`` with an allowed extension; stems must be unique."""
    out: dict[str, str] = {}
    for name, uri in list_files(directory):
        stem, ext = _split_ext(name)
        if ext not in extensions or name.startswith("."):
            continue
        if stem in out:
            raise ValueError(f"duplicate {what} stem '{stem}' in {directory}: {os.path.basename(out[stem])} and {name}")
        out[stem] = uri
    return out


def read_split_file(uri: str) -> list[str]:
    """Stems listed in a split file: one per line, blank lines and ``#`` comments ignored.

    A stem may also be written as a file name (``X.png``) or relative path
    (``train/X.png``); only its stem is used. Duplicates raise ValueError.
    """
    try:
        text = read_bytes(uri).decode("utf-8")
    except FrameError as e:
        raise FileNotFoundError(f"split file {uri}: {e.reason}") from None
    stems: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        stem = _split_ext(os.path.basename(line.replace("\\", "/")))[0]
        if stem in seen:
            raise ValueError(f"split file {uri}: stem '{stem}' listed twice (lines {seen[stem]} and {lineno})")
        seen[stem] = lineno
        stems.append(stem)
    return stems


class FolderDataset:
    """Images (and optionally masks) in folders, paired by file stem.

    Args:
        root: dataset root (path or URI).
        images: images folder under ``root``, a template formatted with ``split``.
        masks: masks folder template, or None for an unlabelled pool.
        split: split name substituted into the templates.
        split_file: optional text file of stems (one per line, ``#`` comments)
            that restricts and orders the frames. A relative path that does
            not exist as given is resolved against ``root``.
        num_classes: valid mask ids are ``0 .. num_classes-1``.
        ignore_index: void id allowed in masks (ignored in loss and metrics).
        class_names: optional names, one per class.
        image_size: optional ``(H, W)``; images are resized bilinearly and
            masks with nearest neighbour when items are read.

    Without ``split_file`` frames are sorted by stem. Files are only listed
    here; decoding happens in ``__getitem__``.
    """

    def __init__(
        self,
        root: str,
        images: str = "{split}",
        masks: str | None = "{split}annot",
        split: str = "train",
        split_file: str | None = None,
        *,
        num_classes: int,
        ignore_index: int,
        class_names: Sequence[str] | None = None,
        image_size=None,
    ):
        root = os.fspath(root)
        self.root = root if has_scheme(root) else os.path.abspath(os.path.expanduser(root))
        self.split = split
        if int(num_classes) <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        if class_names is not None:
            class_names = tuple(str(c) for c in class_names)
            if len(class_names) != self.num_classes:
                raise ValueError(f"class_names has {len(class_names)} names but num_classes is {self.num_classes}")
        self.class_names = class_names
        self.image_size = _check_size(image_size, "image_size")

        self.images_dir = join_uri(self.root, images.format(split=split))
        self.masks_dir = None if masks is None else join_uri(self.root, masks.format(split=split))
        try:
            image_index = _index_dir(self.images_dir, IMAGE_EXTENSIONS, "image")
        except FileNotFoundError:
            raise FileNotFoundError(f"images directory not found: {self.images_dir}") from None
        if not image_index:
            raise ValueError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) in {self.images_dir}")

        if split_file is not None:
            self.split_file = self._resolve_split_file(os.fspath(split_file))
            stems = read_split_file(self.split_file)
            missing = [s for s in stems if s not in image_index]
            if missing:
                shown = ", ".join(repr(s) for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise ValueError(
                    f"split file {self.split_file}: {len(missing)} listed stem(s) have no image in "
                    f"{self.images_dir}: {shown}"
                )
        else:
            self.split_file = None
            stems = sorted(image_index)

        mask_index: dict[str, str] = {}
        if self.masks_dir is not None:
            try:
                mask_files = index_mask_files(list_files(self.masks_dir), self.masks_dir)
            except FileNotFoundError:
                raise FileNotFoundError(f"masks directory not found: {self.masks_dir}") from None
            mask_index = mask_files.usable
            unpaired = [s for s in stems if s not in mask_index]
            if unpaired:
                raise ValueError(self._unpaired_message(unpaired, image_index, mask_files))
        self._records = [FrameRecord(s, image_index[s], mask_index.get(s)) for s in stems]

    def _resolve_split_file(self, split_file: str) -> str:
        if has_scheme(split_file) or os.path.isabs(split_file) or exists(split_file):
            return split_file
        return join_uri(self.root, split_file)

    def _unpaired_message(self, unpaired: list[str], image_index: dict[str, str],
                          mask_files: MaskFiles) -> str:
        first = unpaired[0]
        msg = f"image {image_index[first]} (frame {first}) has no mask in {self.masks_dir}"
        lossy = mask_files.lossy(first)
        if lossy is not None:
            msg += f" (a JPEG mask exists: {lossy}; lossy masks are not supported, use PNG)"
        if len(unpaired) > 1:
            msg += f"; {len(unpaired) - 1} more image(s) without masks"
        return msg

    # --- access -----------------------------------------------------------------
    @property
    def labelled(self) -> bool:
        """True if the dataset has masks."""
        return self.masks_dir is not None

    @property
    def frame_ids(self) -> list[str]:
        return [r.frame_id for r in self._records]

    def records(self) -> list[FrameRecord]:
        """All frames, in dataset order (a copy of the list)."""
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame ``i`` as ``(image uint8 (H, W, 3), mask (H, W) or None)``.

        Masks are validated against the image's original size and the
        dataset's classes before both are resized to ``image_size``.
        Raises FrameError / LabelError naming the frame on bad files.
        """
        n = len(self._records)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for dataset of {n} frames")
        rec = self._records[i]
        image = decode_image(read_bytes(rec.image_uri, frame_id=rec.frame_id), frame_id=rec.frame_id, uri=rec.image_uri)
        mask = None
        if rec.mask_uri is not None:
            try:
                data = read_bytes(rec.mask_uri, frame_id=rec.frame_id)
            except FrameError as e:
                raise LabelError(e.reason, frame_id=rec.frame_id, uri=rec.mask_uri) from None
            mask = decode_mask(
                data,
                num_classes=self.num_classes,
                ignore_index=self.ignore_index,
                expected_size=image.shape[:2],
                size=self.image_size,
                frame_id=rec.frame_id,
                uri=rec.mask_uri,
            )
        if self.image_size is not None:
            image = resize_image(image, self.image_size)
        return image, mask

    def to_manifest(self) -> pa.Table:
        """Pool manifest: columns ``frame_id``, ``uri`` (image), ``mask_uri`` (null if unlabelled)."""
        return pa.table(
            {
                "frame_id": [r.frame_id for r in self._records],
                "uri": [r.image_uri for r in self._records],
                "mask_uri": [r.mask_uri for r in self._records],
            },
            schema=MANIFEST_SCHEMA,
        )

    def __repr__(self) -> str:
        return (
            f"FolderDataset(root={self.root!r}, split={self.split!r}, frames={len(self)}, "
            f"labelled={self.labelled}, num_classes={self.num_classes}, ignore_index={self.ignore_index})"
        )
