"""The desk's durable label log: one JSON line per committed unit label, group-committed.

``<serve_dir>/labels.log`` is what makes an acknowledged label durable on the service side:
the unit's pixels (class ids inside its bounding box and the box's unit mask, zlib + base64),
its summary and who labelled it. :meth:`LabelLog.append` writes a whole batch of entries and
fsyncs once, so concurrent labels share one fsync (group commit). The frame mask files
``<serve_dir>/masks/<frame_id>.png`` that retraining reads are derived from the log: written
(atomically, without fsync) after each commit and rebuilt from the log when the desk starts
(:func:`rebuild_masks`), so a crash between the two loses nothing acknowledged.

Entries: ``{"task_id", "annotator", "shape": [H, W], "box": [y0, x0, y1, x1], "labels",
"region", "dominant", "counts"}``; ``{"void": task_id}`` withdraws the latest entry of that
task (its ingest was refused). A torn last line (a crash mid-write, never acknowledged) is
cut off when the log is opened.
"""
from __future__ import annotations

import base64
import io
import json
import os
import zlib

import numpy as np

from rayal.pool.journal import append_fsynced, fsync_dir

LOG_FILE = "labels.log"


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 1)).decode()


def _unpack(text: str, shape, dtype) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype).reshape(shape)


def make_entry(tid: str, annotator: str, mask: np.ndarray, region: np.ndarray, dominant: int,
               counts) -> dict:
    """A log entry of one unit's label: ``mask`` (H, W) class ids of the frame, ``region`` (H, W)
    bool pixels of the unit (non-empty)."""
    ys, xs = np.nonzero(region)
    box = [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]
    crop = (slice(box[0], box[2]), slice(box[1], box[3]))
    return {"task_id": tid, "annotator": annotator, "shape": [int(v) for v in mask.shape],
            "box": box, "labels": _pack(np.asarray(mask[crop], np.uint8)),
            "region": _pack(np.packbits(np.asarray(region[crop], bool))),
            "dominant": int(dominant), "counts": [int(c) for c in np.asarray(counts).ravel()]}


def apply_entry(full: np.ndarray, entry: dict) -> None:
    """Paint an entry's unit pixels into a frame mask ``full`` (uint8 (H, W)) in place."""
    y0, x0, y1, x1 = entry["box"]
    shape = (y1 - y0, x1 - x0)
    labels = _unpack(entry["labels"], shape, np.uint8)
    bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(entry["region"])),
                                       np.uint8))[:shape[0] * shape[1]].reshape(shape).astype(bool)
    full[y0:y1, x0:x1][bits] = labels[bits]


def read_entries(path: str) -> list[dict]:
    """The committed entries of a log (voided ones removed), in order; [] when there is none."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    out: list[dict] = []
    for line in data[:data.rfind(b"\n") + 1].splitlines():
        entry = json.loads(line)
        if "void" in entry:
            for i in range(len(out) - 1, -1, -1):
                if out[i]["task_id"] == entry["void"]:
                    del out[i]
                    break
        else:
            out.append(entry)
    return out


class LabelLog:
    """Append-only, fsynced label log (see the module docstring). Not thread-safe: the desk's
    committer is its only writer."""

    def __init__(self, serve_dir: str):
        self.path = os.path.join(serve_dir, LOG_FILE)
        new = not os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if new:
            fsync_dir(serve_dir)
        size = os.fstat(self._fd).st_size
        if size:   # cut a torn last line (written, never fsynced nor acknowledged)
            tail = os.pread(self._fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            keep = size - len(tail) + tail.rfind(b"\n") + 1
            if keep != size:
                os.ftruncate(self._fd, keep)
                os.fsync(self._fd)

    def append(self, entries: list[dict]) -> None:
        """Write every entry, then one fsync; returns once they are all on disk."""
        if not entries:
            return
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        append_fsynced(self._fd, data)   # no half batch before the next one

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def load_mask(path: str, shape, ignore_index: int) -> np.ndarray:
    """A frame's stored mask (uint8 (H, W)), or one filled with ``ignore_index``; ValueError
    when the stored one has another size."""
    from PIL import Image

    if not os.path.exists(path):
        return np.full(tuple(shape), ignore_index, np.uint8)
    full = np.asarray(Image.open(path)).copy()
    if full.shape != tuple(shape):
        raise ValueError(f"mask size {tuple(shape)} differs from the frame's stored labels "
                         f"{full.shape}")
    return full


def write_mask(path: str, full: np.ndarray) -> None:
    """Write a frame mask PNG atomically (no fsync: the log is the durable copy)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(full, np.uint8), mode="L").save(buf, format="PNG")
    write_soft(path, buf.getvalue())


def write_soft(path: str, data: bytes) -> None:
    """Replace a file atomically, without fsync (derived or soft state)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_durable(path: str, data: bytes) -> None:
    """Replace a file atomically and durably: the data and the rename are fsynced before it
    returns (records the service acknowledges, e.g. a new model version)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def rebuild_masks(entries: list[dict], mask_dir: str, ignore_index: int) -> int:
    """Repaint every frame mask the log touches from its entries (idempotent: the last entry of
    each pixel wins, as when it was first written); returns how many frames were rewritten."""
    by_frame: dict[str, list[dict]] = {}
    for e in entries:
        by_frame.setdefault(e["task_id"].split(".", 2)[2], []).append(e)
    written = 0
    for frame_id, group in by_frame.items():
        path = os.path.join(mask_dir, f"{frame_id}.png")
        try:
            full = load_mask(path, group[0]["shape"], ignore_index)
        except ValueError:
            full = np.full(tuple(group[0]["shape"]), ignore_index, np.uint8)
        before = full.copy()
        for e in group:
            apply_entry(full, e)
        if not os.path.exists(path) or not np.array_equal(before, full):
            write_mask(path, full)
            written += 1
    return written


__all__ = ["LabelLog", "make_entry", "apply_entry", "read_entries", "rebuild_masks",
           "load_mask", "write_mask", "write_soft", "LOG_FILE"]
