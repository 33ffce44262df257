"""Labels for the pool: per-unit summaries (dominant class + pixel counts per class) from masks.

The pool never stores masks, only a summary per labelled unit: the pixel count
of every class inside the unit's region and the dominant class (most pixels,
ties to the lowest id; -1 when the region holds only ``ignore_index``).

Masks come from a directory (``<frame_id>.png``: a full-frame mask, or
``<frame_id>__<region_id>.png``: one region, either full-frame size or the size
of the region's bounding box; which files count as masks is the rule of
:mod:`rayal.data.maskfiles`: case-insensitive extensions, lossy JPEG refused by name, and every
file of the directory that is not ingested is listed in :attr:`LabelBatch.refused` with why) or, for simulated annotation, from the frames'
registered ``mask_uri`` (synthetic frames render their own). Every mask is
decoded and validated (size against the frame, class ids against
``data.num_classes``) before anything is returned, so one bad file rejects the
batch with a :class:`~rayal.data.LabelError` naming the frame and changes
nothing; ``on_error="collect"`` instead returns the bad items for quarantine.

This module also normalises the tables the pool accepts (frames, label summaries).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayal.config.sections import DataConfig, ScoringConfig
from rayal.data import (FrameError, LabelError, is_synthetic_uri, list_files, load_mask,
                        region_class_counts)
from rayal.data.maskfiles import index_mask_files

FRAME_SCHEMA = pa.schema([pa.field("frame_id", pa.string(), nullable=False),
                          pa.field("uri", pa.string(), nullable=False),
                          pa.field("mask_uri", pa.string())])
LABEL_COLUMNS = ("frame_id", "region_id", "dominant_class", "pixel_counts")


# --- input tables ------------------------------------------------------------------------------
def normalize_frames(items) -> pa.Table:
    """Frames to register (Table / RecordBatch / dict of columns / list of dicts) -> FRAME_SCHEMA."""
    if isinstance(items, pa.RecordBatch):
        items = pa.Table.from_batches([items])
    elif isinstance(items, dict):
        items = pa.table(items)
    elif not isinstance(items, pa.Table):
        items = list(items)
        items = pa.Table.from_pylist(items) if items else FRAME_SCHEMA.empty_table()
    missing = [n for n in ("frame_id", "uri") if n not in items.column_names]
    if missing:
        raise ValueError(f"register: missing column(s) {missing} (has {items.column_names})")
    if "mask_uri" not in items.column_names:
        items = items.append_column("mask_uri", pa.nulls(items.num_rows, pa.string()))
    items = items.select(["frame_id", "uri", "mask_uri"])
    for name in ("frame_id", "uri"):
        if items.column(name).null_count:
            raise ValueError(f"register: column {name!r} has null values")
    table = items.cast(FRAME_SCHEMA)
    if pc.count_distinct(table.column("frame_id")).as_py() != table.num_rows:
        counts = pc.value_counts(table.column("frame_id"))
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise ValueError(f"register: frame {dup} is listed twice")
    return table


def label_counts_array(counts: np.ndarray) -> pa.FixedSizeListArray:
    """(N, C) pixel counts -> Arrow fixed_size_list<int32>[C] (one list per unit)."""
    counts = np.ascontiguousarray(counts, np.int32)
    return pa.FixedSizeListArray.from_arrays(pa.array(counts.reshape(-1)), counts.shape[1])


def summary_table(frame_ids, region_ids, dominant, counts) -> pa.Table:
    """Label summaries as the table :meth:`PoolState.plan_ingest` takes."""
    counts = np.asarray(counts)
    counts = counts if counts.ndim == 2 else counts.reshape(len(dominant), -1)
    return pa.table({"frame_id": pa.array(list(frame_ids), pa.string()),
                     "region_id": np.asarray(region_ids, np.int32),
                     "dominant_class": np.asarray(dominant, np.int16),
                     "pixel_counts": label_counts_array(counts)})


def normalize_labels(labels) -> tuple[pa.Table, np.ndarray]:
    """Label summaries (Table or dict; ``pixel_counts`` lists or an (N, C) array)
    -> (table of frame_id, region_id, dominant_class; (N, C) int32 counts)."""
    if isinstance(labels, dict):
        labels = summary_table(labels["frame_id"], labels["region_id"], labels["dominant_class"],
                               labels["pixel_counts"]) if isinstance(labels.get("pixel_counts"),
                                                                     np.ndarray) else pa.table(labels)
    missing = [n for n in LABEL_COLUMNS if n not in labels.column_names]
    if missing:
        raise ValueError(f"ingest: label table lacks column(s) {missing}")
    column = labels.column("pixel_counts").combine_chunks()
    if column.null_count:
        raise ValueError("ingest: pixel_counts has null rows")
    n = labels.num_rows
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if n and (lengths != lengths[0]).any():
            raise ValueError("ingest: pixel_counts rows differ in length (one count per class)")
        width = int(lengths[0]) if n else 0
    counts = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(n, width)
    if (counts < 0).any() or counts.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError("ingest: pixel_counts must be in [0, 2**31)")
    table = labels.select(["frame_id", "region_id", "dominant_class"])
    return table, counts.astype(np.int32)


# --- summaries of masks ------------------------------------------------------------------------
def summarize(mask: np.ndarray, num_classes: int, ignore_index: int, regions: np.ndarray | None = None,
              region_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """(dominant (N,) int16, counts (N, C) int32) of the given regions of ``regions``
    (or of the whole mask, N = 1, when ``regions`` is None); ``ignore_index`` is never counted."""
    mask = np.asarray(mask).astype(np.int32)
    if 0 <= ignore_index < num_classes:
        mask = np.where(mask == ignore_index, -1, mask)
    if regions is None:
        valid = mask[(mask >= 0) & (mask < num_classes)]
        counts = np.bincount(valid.ravel(), minlength=num_classes)[None, :]
    else:
        counts = region_class_counts(regions, mask, num_classes)
        ids = np.asarray(region_ids, np.int64)
        if ids.size and ids.max() >= len(counts):
            counts = np.concatenate([counts, np.zeros((ids.max() + 1 - len(counts), num_classes),
                                                      counts.dtype)])
        counts = counts[ids]
    dominant = counts.argmax(axis=1).astype(np.int16)
    dominant[counts.sum(axis=1) == 0] = -1
    return dominant, counts.astype(np.int32)


@dataclass
class LabelBatch:
    """Summaries ready for ``ingest``, the units without a mask yet, (collect mode) bad items,
    and the delivered files that were not used, each with the reason (``refused``)."""

    table: pa.Table
    missing: list = field(default_factory=list)   # (frame_id, region_id)
    errors: list = field(default_factory=list)    # (frame_id, [region_id, ...], message)
    refused: list = field(default_factory=list)   # (file name, reason)


def _region_file_mask(uri: str, frame_id: str, region: int, regions: np.ndarray, data: DataConfig,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A per-region mask (full frame or the region's box) -> (mask, regions) on the same grid."""
    mask = load_mask(uri, num_classes=num_classes, ignore_index=data.ignore_index, frame_id=frame_id)
    if mask.shape == regions.shape:
        return mask, regions
    ys, xs = np.nonzero(regions == region)
    if not ys.size:
        raise LabelError(f"region {region} does not exist in this frame", frame_id=frame_id, uri=uri)
    box = regions[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    if mask.shape != box.shape:
        raise LabelError(f"mask size {mask.shape[0]}x{mask.shape[1]} (HxW) matches neither the frame "
                         f"{regions.shape[0]}x{regions.shape[1]} nor region {region}'s box "
                         f"{box.shape[0]}x{box.shape[1]}", frame_id=frame_id, uri=uri)
    return mask, box


def _frame_summaries(frame_id, uri, frame_mask, region_files, region_ids, *, unit, data, scoring,
                     num_classes) -> tuple[list, list]:
    """One frame's summaries -> ([(region_id, dominant, counts)], region ids that had a mask)."""
    from rayal.pool.export import _synthetic, frame_region_map, frame_size

    out = []   # (region_id, dominant, counts)
    todo = [r for r in region_ids if frame_mask is not None or r in region_files]
    if not todo:
        return out, todo
    if unit == "image":
        regions, size = None, frame_size(frame_id, uri, data)
    else:
        regions = frame_region_map(frame_id, uri, unit, scoring, data)
        size = regions.shape
    whole = [r for r in todo if r not in region_files]
    if whole:
        if is_synthetic_uri(uri) and frame_mask == uri:   # simulated: render it
            mask = _synthetic(uri, data)[1]
        else:
            mask = load_mask(frame_mask, num_classes=num_classes, ignore_index=data.ignore_index,
                             expected_size=size, frame_id=frame_id)
        dom, counts = summarize(mask, num_classes, data.ignore_index, regions, whole)
        out += list(zip(whole, dom, counts))
    for r in todo:
        if r in region_files:
            mask, grid = _region_file_mask(region_files[r], frame_id, r, regions, data, num_classes)
            dom, counts = summarize(mask, num_classes, data.ignore_index, grid, [r])
            out.append((r, dom[0], counts[0]))
    return out, todo


def label_summaries(units: pa.Table, frames: pa.Table, *, unit: str, data: DataConfig,
                    scoring: ScoringConfig, masks_dir: str | None = None,
                    on_error: str = "raise") -> LabelBatch:
    """Summaries of the listed units (``frame_id, region_id``) from mask files.

    ``frames`` gives ``frame_id, uri, mask_uri`` of their frames. With ``masks_dir`` the
    masks are ``<frame_id>.png`` / ``<frame_id>__<region_id>.png`` there; without, each
    frame's registered ``mask_uri`` (simulated annotator). Units with no mask are listed in
    ``missing``. ``on_error="raise"``: the first bad mask or frame raises (nothing is
    returned, so nothing is ingested); ``"collect"``: bad frames go to ``errors``.
    """
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    if data.num_classes is None:
        raise ValueError("data.num_classes is required to summarise labels")

    frames = normalize_frames(frames)
    info = {f: (u, m) for f, u, m in zip(*(frames.column(n).to_pylist()
                                           for n in ("frame_id", "uri", "mask_uri")))}
    delivered = index_mask_files(list_files(masks_dir), masks_dir) if masks_dir is not None else None
    files = delivered.usable if delivered is not None else {}
    used: set[str] = set()
    by_frame: dict[str, list[int]] = {}
    for f, r in zip(units.column("frame_id").to_pylist(), units.column("region_id").to_pylist()):
        by_frame.setdefault(f, []).append(int(r))
    rows, batch = [], LabelBatch(table=summary_table([], [], [], np.zeros((0, data.num_classes))))
    for frame_id in sorted(by_frame):
        region_ids = by_frame[frame_id]
        if frame_id not in info:
            raise ValueError(f"frame {frame_id} is not registered in the pool")
        uri, mask_uri = info[frame_id]
        if masks_dir is not None:
            frame_mask = files.get(frame_id)
            region_files = {r: files[f"{frame_id}__{r}"] for r in region_ids
                            if unit != "image" and f"{frame_id}__{r}" in files}
            used.update(([frame_id] if frame_mask is not None else [])
                        + [f"{frame_id}__{r}" for r in region_files])
        else:
            frame_mask = mask_uri if mask_uri is not None else (
                uri if is_synthetic_uri(uri) else None)
            region_files = {}
        try:
            found, todo = _frame_summaries(frame_id, uri, frame_mask, region_files, region_ids,
                                           unit=unit, data=data, scoring=scoring,
                                           num_classes=data.num_classes)
        except FrameError as err:   # LabelError is a FrameError: names the frame and file
            if on_error == "raise":
                raise
            batch.errors.append((frame_id, region_ids, str(err)))
            continue
        batch.missing += [(frame_id, r) for r in region_ids if r not in todo]
        rows += [(frame_id, r, d, c) for r, d, c in found]
    if rows:
        f, r, d, c = zip(*rows)
        batch.table = summary_table(f, r, d, np.stack(c))
    if delivered is not None:
        batch.refused = _not_ingested(delivered, used, by_frame, unit)
    return batch


def _not_ingested(delivered, used: set[str], queued: dict[str, list[int]], unit: str) -> list:
    """``(file name, reason)`` of every delivered file that was not read as a mask."""
    out = [(name, reason) for _stem, name, reason in delivered.refused]
    for stem, uri in delivered.usable.items():
        if stem in used:
            continue
        name = uri.replace("\\", "/").rsplit("/", 1)[-1]
        frame, sep, region = stem.rpartition("__")
        if sep and frame in queued and unit == "image":
            reason = f"a region mask, but pool.unit is image (name it {frame}.png)"
        elif sep and frame in queued and region.isdigit():
            reason = f"region {region} of frame {frame} is not queued in this round"
        else:
            reason = "no queued unit of this round has this frame id"
        out.append((name, reason))
    return sorted(out)
