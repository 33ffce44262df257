"""Checkpoint files on any storage: local paths, ``file://``, ``s3://``, ``gs://``.

The model layer turns checkpoints into bytes and back (:func:`rayal.models.checkpoint_bytes`,
:func:`rayal.models.model_from_checkpoint_bytes`); this module stores those bytes through
:mod:`rayal.data.io`. Local files are written to a temporary name and renamed, so a crash never
leaves half a checkpoint; an object-store PUT is atomic by itself.
"""
from __future__ import annotations

import io
import os

import pyarrow.fs as pafs
import torch

from rayal.data import io as dio
from rayal.data.errors import FrameError
from rayal.models import SegmentationNet, checkpoint_bytes, model_from_checkpoint_bytes

__all__ = ["store_bytes", "load_bytes", "write_checkpoint", "read_checkpoint", "save_state",
           "load_state"]


def store_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` atomically (local: temp file + rename; object store: one PUT)."""
    fs, path = dio.resolve_filesystem(os.fspath(uri))
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    dio.write_bytes(os.fspath(uri), data)


def load_bytes(uri: str, what: str = "checkpoint") -> bytes:
    """The bytes at ``uri``; a missing file raises FileNotFoundError naming ``what`` and the URI,
    a refusing store a :class:`rayal.data.io.StorageError`."""
    try:
        return dio.read_bytes(os.fspath(uri))
    except FrameError as err:
        if err.reason == "missing file":
            raise FileNotFoundError(f"{what}: no such file {uri}") from None
        raise OSError(f"{what} {uri}: {err.reason}") from None


def write_checkpoint(uri: str, model: SegmentationNet, meta: dict | None = None) -> str:
    """A rayal checkpoint of ``model`` (+ ``meta``) at ``uri``; returns ``uri`` as a string."""
    store_bytes(uri, checkpoint_bytes(model, meta))
    return os.fspath(uri)


def read_checkpoint(uri: str, map_location: str | torch.device = "cpu") -> tuple[SegmentationNet, dict]:
    """(model, meta) of the rayal checkpoint at ``uri`` (local path or URI)."""
    return model_from_checkpoint_bytes(load_bytes(uri, "model.checkpoint"), os.fspath(uri),
                                       map_location)


def save_state(uri: str, payload: dict) -> None:
    """``torch.save`` of a training state (weights, optimizer, loop state) to ``uri``."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    store_bytes(uri, buf.getvalue())


def load_state(uri: str, map_location: str | torch.device = "cpu") -> dict:
    """A training state written by :func:`save_state`."""
    return torch.load(io.BytesIO(load_bytes(uri, "training state")), map_location=map_location,
                      weights_only=False)
