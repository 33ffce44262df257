"""Shared fixtures for rayal.data tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CAMVID = Path(__file__).resolve().parents[2].parent / "shared/data/camvid"


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID}")
    return CAMVID


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    """Encode an array as PNG bytes (optionally forcing a PIL mode)."""
    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr, mode=mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(arr))
    return path
