"""Run-directory files on any storage (local path, ``file://``, ``s3://``, ``gs://``).

Small whole-file helpers over :mod:`rayal.data.io` for what run directories hold: JSON,
parquet tables, PNG figures. Local files are written to a temporary name and renamed (a
crash never leaves half a ``rounds.parquet``); an object-store PUT is atomic by itself.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayal.data import io as dio
from rayal.train.checkpoint import load_bytes, store_bytes

__all__ = ["absolute", "write_json", "read_json", "write_parquet", "read_parquet", "save_figure",
           "save_plot", "remove_tree"]


def absolute(uri: str | Path) -> str:
    """A local path made absolute (Ray workers may run in another directory); a URI as it is."""
    uri = os.fspath(uri)
    return uri if dio.has_scheme(uri) else os.path.abspath(uri)


def write_json(path: str | Path, payload: dict) -> None:
    """``payload`` as indented JSON (parent directories created)."""
    store_bytes(os.fspath(path), json.dumps(payload, indent=2).encode())


def read_json(path: str | Path) -> dict:
    """A JSON file; FileNotFoundError naming ``path`` when it is missing."""
    return json.loads(load_bytes(os.fspath(path), "JSON file"))


def write_parquet(table: pa.Table, path: str | Path) -> None:
    """``table`` as one parquet file."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store_bytes(os.fspath(path), buf.getvalue())


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One parquet file (only ``columns`` when given); FileNotFoundError naming ``path`` when
    it is missing."""
    return pq.read_table(pa.BufferReader(load_bytes(os.fspath(path), "parquet file")), columns=columns)


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """A matplotlib figure as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    store_bytes(os.fspath(path), buf.getvalue())


def save_plot(draw: Callable[[Path], None], path: str | Path) -> None:
    """``draw(local_path)`` renders a PNG into a temporary file, which is then stored at
    ``path`` (for plotting functions that write a file themselves)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "figure.png"
        draw(local)
        store_bytes(os.fspath(path), local.read_bytes())


def remove_tree(path: str | Path) -> None:
    """Delete a directory (every object under a prefix) and its contents; no-op if absent."""
    fs, fs_path, info = dio.file_info(os.fspath(path))
    if info.type == pafs.FileType.NotFound:
        return
    with dio.storage_errors(os.fspath(path), "deleting"):
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(fs_path)
        else:
            fs.delete_file(fs_path)
