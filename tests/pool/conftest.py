"""Pool test helpers: tiny frame registries, score tables, images and masks on disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

PLUGIN = str(Path(__file__).with_name("strategies_plugin.py"))


@pytest.fixture(scope="session")
def plugin() -> str:
    """Path of the test strategy plugin, already loaded in this process."""
    from rayal.pool.coordinator import load_plugins

    load_plugins([PLUGIN])
    return PLUGIN


def frames_table(n: int, prefix: str = "f") -> pa.Table:
    return pa.table({"frame_id": [f"{prefix}{i:03d}" for i in range(n)],
                     "uri": [f"/data/{prefix}{i:03d}.png" for i in range(n)]})


def write_scores(directory: Path, n_frames: int, prefix: str = "f", regions: int = 0,
                 unit: str = "patch", seed: int = 0) -> str:
    """frames/ (and regions/) parquet score tables with random scores; returns the dir."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:03d}" for i in range(n_frames)]
    (directory / "frames").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"frame_id": ids, "score": rng.random(n_frames)}),
                   directory / "frames" / "part-0.parquet")
    if regions:
        (directory / "regions").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "frame_id": np.repeat(ids, regions), "unit": [unit] * (n_frames * regions),
            "region_id": np.tile(np.arange(regions, dtype=np.int32), n_frames),
            "score": rng.random(n_frames * regions)}), directory / "regions" / "part-0.parquet")
    return str(directory)


def write_frames(directory: Path, n: int, size=(24, 32), num_classes: int = 3, seed: int = 0):
    """RGB PNG frames + class-id PNG masks; returns (frames table with mask_uri, masks dict)."""
    rng = np.random.default_rng(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    (directory / "masks").mkdir(parents=True, exist_ok=True)
    rows, masks = [], {}
    for i in range(n):
        fid = f"f{i:03d}"
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        mask = rng.integers(0, num_classes, size, dtype=np.uint8)
        Image.fromarray(image).save(directory / "images" / f"{fid}.png")
        Image.fromarray(mask).save(directory / "masks" / f"{fid}.png")
        rows.append({"frame_id": fid, "uri": str(directory / "images" / f"{fid}.png"),
                     "mask_uri": str(directory / "masks" / f"{fid}.png")})
        masks[fid] = mask
    return pa.Table.from_pylist(rows), masks


@pytest.fixture(scope="session")
def h():
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(frames_table=frames_table, write_scores=write_scores,
                           write_frames=write_frames, PLUGIN=PLUGIN)
