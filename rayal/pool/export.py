"""Export a round's query for annotators: parquet + JSON lines, one row per unit.

Each row carries the frame's URI, the unit and region id, the strategy's
score and reason, and the region as a COCO-style RLE (exact) and/or a polygon
(its outline along pixel edges; largest connected part, no holes). Region maps are not stored
anywhere: they are recomputed from the frame exactly as the scoring job did
(image resized to ``data.image_size``, grid ``scoring.grid`` or SLIC/SEEDS with
``scoring.superpixel``), then scaled back to the frame's original size with
nearest neighbour, since annotators work on the original image (upright: EXIF orientation
applied, as labelling tools show it). The same
region maps are used to summarise labels (:mod:`rayal.pool.labels`).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rayal.config.sections import DataConfig, ScoringConfig
from rayal.data import (FrameError, decode_image, is_synthetic_uri, join_uri, load_synthetic,
                        makedirs, read_bytes, resize_mask, resolve_filesystem, unit_region_map)
from rayal.data.decode import image_size_of, read_image_size

MASK_FORMATS = ("rle", "polygon", "both")


def _synthetic(uri: str, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    return load_synthetic(uri, data.synthetic.height, data.synthetic.width)


def load_frame(frame_id: str, uri: str, data: DataConfig) -> tuple[np.ndarray, tuple[int, int]]:
    """(image as the scoring job saw it, original (H, W)); FrameError names a bad frame."""
    if is_synthetic_uri(uri):
        image = _synthetic(uri, data)[0]
        return image, image.shape[:2]
    raw = read_bytes(uri, frame_id=frame_id)
    image = decode_image(raw, frame_id=frame_id, uri=uri, size=data.image_size)
    return image, image_size_of(raw, frame_id=frame_id, uri=uri)


def frame_size(frame_id: str, uri: str, data: DataConfig) -> tuple[int, int]:
    """Original upright (H, W) of a frame (EXIF orientation applied, as annotators see it)
    from its header only (no pixel decode); FrameError names an unreadable frame."""
    if is_synthetic_uri(uri):
        return data.synthetic.height, data.synthetic.width
    return read_image_size(uri, frame_id=frame_id)


def frame_region_map(frame_id: str, uri: str, unit: str, scoring: ScoringConfig,
                     data: DataConfig) -> np.ndarray:
    """Region map of a frame at its original size (int32 (H, W))."""
    if unit == "image":
        return np.zeros(frame_size(frame_id, uri, data), np.int32)
    image, size = load_frame(frame_id, uri, data)
    return resize_mask(unit_region_map(image, unit, scoring), size)


def rle_encode(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE ``counts`` of a bool (H, W) mask: column-major runs, zeros first."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]]))
    return ([0] if flat[0] else []) + counts.tolist()


def rle_decode(counts: list[int], shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, np.asarray(counts, np.int64))
    return flat.reshape(shape[1], shape[0]).T


def polygon(mask: np.ndarray) -> list[list[int]]:
    """Exact outline along pixel edges of the largest part of a bool mask: ``[[x, y], ...]``.

    Vertices are pixel corners (pixel (y, x) spans x..x+1, y..y+1), clockwise on screen,
    collinear points removed; a grid patch gives its 4 corners. Holes are not described
    (the RLE is exact).
    """
    m = np.pad(np.asarray(mask, bool), 1)
    inner = m[1:-1, 1:-1]
    starts, ends = [], []
    # boundary edges with the region on their right: top, right, bottom, left sides
    for outside, (sx, sy, ex, ey) in ((m[:-2, 1:-1], (0, 0, 1, 0)), (m[1:-1, 2:], (1, 0, 1, 1)),
                                      (m[2:, 1:-1], (1, 1, 0, 1)), (m[1:-1, :-2], (0, 1, 0, 0))):
        ys, xs = np.nonzero(inner & ~outside)
        starts += list(zip((xs + sx).tolist(), (ys + sy).tolist()))
        ends += list(zip((xs + ex).tolist(), (ys + ey).tolist()))
    following: dict = {}
    for s, e in zip(starts, ends):
        following.setdefault(s, []).append(e)
    best, best_area = [], 0.0
    while following:   # every corner has as many edges in as out, so each walk closes a ring
        start = cur = next(iter(following))
        ring = [start]
        while True:
            nxt = following[cur].pop()
            if not following[cur]:
                del following[cur]
            if nxt == start:
                break
            ring.append(nxt)
            cur = nxt
        xy = np.asarray(ring, np.int64)
        area = abs(float(np.dot(xy[:, 0], np.roll(xy[:, 1], -1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], -1))))
        if area > best_area:
            best, best_area = ring, area
    if not best:
        return []
    xy = np.asarray(best, np.int64)
    turn = np.any((xy - np.roll(xy, 1, axis=0)) != (np.roll(xy, -1, axis=0) - xy), axis=1)
    return xy[turn].tolist()


def _region_rows(rows: list[dict], regions: np.ndarray, mask_format: str) -> None:
    """Fill bbox / rle / polygon of each row (same frame) from the frame's region map."""
    for row in rows:
        mask = np.ones(regions.shape, bool) if row["region_id"] < 0 else regions == row["region_id"]
        ys, xs = np.nonzero(mask)
        row["height"], row["width"] = regions.shape
        row["bbox"] = [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1] \
            if ys.size else None
        if mask_format in ("rle", "both"):
            row["rle"] = rle_encode(mask)
        if mask_format in ("polygon", "both"):
            row["polygon"] = polygon(mask)


def export_query(query: pa.Table, frames: pa.Table, out_dir: str, *, round_id: int, unit: str,
                 scoring: ScoringConfig, data: DataConfig, mask_format: str = "rle") -> dict:
    """Write ``round-<r>.parquet`` and ``round-<r>.jsonl`` under ``out_dir``; returns their URIs.

    ``query``: the round's query (QUERY_SCHEMA); ``frames``: ``frame_id, uri`` of (at least)
    its frames. A frame that cannot be loaded keeps its rows with ``error`` set and no mask.
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    uris = dict(zip(frames.column("frame_id").to_pylist(), frames.column("uri").to_pylist()))
    rows = query.to_pylist()
    by_frame: dict[str, list[dict]] = {}
    for row in rows:
        row.update(round=int(round_id), uri=uris.get(row["frame_id"]), error=None, height=None,
                   width=None, bbox=None, rle=None, polygon=None)
        by_frame.setdefault(row["frame_id"], []).append(row)
    for frame_id, group in by_frame.items():
        try:
            if group[0]["uri"] is None:
                raise FrameError("not registered in the pool", frame_id=frame_id)
            regions = frame_region_map(frame_id, group[0]["uri"], unit, scoring, data)
            _region_rows(group, regions, mask_format)
        except FrameError as err:
            for row in group:
                row["error"] = str(err)
    schema = pa.schema([
        ("round", pa.int32()), ("rank", pa.int64()), ("frame_id", pa.string()), ("uri", pa.string()),
        ("unit", pa.string()), ("region_id", pa.int32()), ("score", pa.float64()),
        ("reason", pa.string()), ("class_id", pa.int16()), ("cluster", pa.int32()),
        ("cost", pa.float32()), ("height", pa.int32()), ("width", pa.int32()),
        ("bbox", pa.list_(pa.int32())), ("rle", pa.list_(pa.int64())),
        ("polygon", pa.list_(pa.list_(pa.int32()))), ("error", pa.string())])
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    makedirs(out_dir)
    base = join_uri(out_dir, f"round-{int(round_id):04d}")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    lines = "".join(json.dumps({k: v for k, v in r.items() if v is not None or k == "error"}) + "\n"
                    for r in table.to_pylist())
    out = {"parquet": base + ".parquet", "jsonl": base + ".jsonl", "rows": table.num_rows}
    for uri, payload in ((out["parquet"], sink.getvalue().to_pybytes()),
                         (out["jsonl"], lines.encode())):
        _write_atomic(uri, payload)
    return out


def _write_atomic(uri: str, payload: bytes) -> None:
    """Write to a temporary name and move it into place: readers never see half a file."""
    fs, path = resolve_filesystem(uri)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp) as f:
        f.write(payload)
    fs.move(tmp, path)
