"""Helpers the format modules share: label masks for export, queued units per frame, and the
check that turns a frame's decoded label mask into unit summaries (as ``pool ingest`` does)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from rayal.data import FrameError, LabelError, is_synthetic_uri, list_files, load_mask, read_bytes
from rayal.data.maskfiles import index_mask_files


def read_json_document(source: str, what: str):
    """The parsed JSON at ``source``; ValueError naming the file and ``what`` it should be."""
    try:
        return json.loads(read_bytes(source))
    except ValueError as err:
        raise ValueError(f"{source}: not a {what} file: {err}") from None


def frame_info(frames: pa.Table) -> dict:
    """frame_id -> (uri, mask_uri)."""
    mask = frames.column("mask_uri").to_pylist() if "mask_uri" in frames.column_names \
        else [None] * frames.num_rows
    return dict(zip(frames.column("frame_id").to_pylist(),
                    zip(frames.column("uri").to_pylist(), mask)))


def units_by_frame(units: pa.Table) -> dict[str, list[int]]:
    """frame_id -> [region_id, ...] in table order."""
    out: dict[str, list[int]] = {}
    for f, r in zip(units.column("frame_id").to_pylist(), units.column("region_id").to_pylist()):
        out.setdefault(f, []).append(int(r))
    return out


class LabelSource:
    """Full-frame label masks for an export: ``"oracle"`` (each frame's registered
    ``mask_uri``; synthetic frames render theirs) or a directory of ``<frame_id>.png``."""

    def __init__(self, labels: str, frames: pa.Table, data):
        self.labels, self.data, self.info = labels, data, frame_info(frames)
        self.files = {} if labels == "oracle" else \
            index_mask_files(list_files(labels), labels).usable

    def mask(self, frame_id: str, size) -> np.ndarray | None:
        """int (H, W) class ids of the frame (validated), or None when it has no mask."""
        from rayal.pool.export import _synthetic

        uri, mask_uri = self.info[frame_id]
        if self.labels == "oracle":
            if mask_uri is None and is_synthetic_uri(uri):
                return _synthetic(uri, self.data)[1].astype(np.int32)
            source = mask_uri
        else:
            source = self.files.get(frame_id)
        if source is None:
            return None
        return load_mask(source, num_classes=self.data.num_classes,
                         ignore_index=self.data.ignore_index, expected_size=tuple(size),
                         frame_id=frame_id).astype(np.int32)


def summarize_frame(frame_id: str, uri: str, mask: np.ndarray, region_ids: list[int], *, unit,
                    data, scoring) -> list[tuple]:
    """[(region_id, dominant, counts)] of a frame's queued units from its decoded full-frame
    label mask (``ignore_index`` where unlabelled); a unit with no labelled pixel is left out.
    LabelError (naming the frame) when the mask's size is not the frame's."""
    from rayal.pool.export import frame_region_map, frame_size
    from rayal.pool.labels import summarize

    if unit == "image":
        regions, size = None, frame_size(frame_id, uri, data)
    else:
        regions = frame_region_map(frame_id, uri, unit, scoring, data)
        size = regions.shape
    if tuple(mask.shape) != tuple(size):
        raise LabelError(f"mask size {mask.shape[0]}x{mask.shape[1]} (HxW) does not match image "
                         f"size {size[0]}x{size[1]}", frame_id=frame_id)
    bad = np.setdiff1d(np.unique(mask), np.r_[np.arange(data.num_classes), data.ignore_index])
    if bad.size:
        raise LabelError(f"unknown class ids {bad[:10].tolist()} (valid 0.."
                         f"{data.num_classes - 1}, ignore {data.ignore_index})", frame_id=frame_id)
    dominant, counts = summarize(mask, data.num_classes, data.ignore_index, regions, region_ids)
    return [(r, d, c) for r, d, c in zip(region_ids, dominant, counts) if c.sum() > 0]


def batch_of(rows: list[tuple], errors: list, num_classes: int):
    """A LabelBatch from ``[(frame_id, region_id, dominant, counts)]`` and collected errors."""
    from rayal.pool.labels import LabelBatch, summary_table

    if rows:
        f, r, d, c = zip(*rows)
        table = summary_table(f, r, d, np.stack(c))
    else:
        table = summary_table([], [], [], np.zeros((0, num_classes)))
    return LabelBatch(table=table, errors=errors)


def frame_sizes(query_frames: list[str], info: dict, data) -> dict:
    """frame_id -> (H, W) at the original size (FrameError names an unreadable frame)."""
    from rayal.pool.export import frame_size

    out = {}
    for f in query_frames:
        if f not in info:
            raise FrameError("not registered in the pool", frame_id=f)
        out[f] = frame_size(f, info[f][0], data)
    return out


__all__ = ["frame_info", "units_by_frame", "LabelSource", "summarize_frame", "batch_of",
           "frame_sizes"]
