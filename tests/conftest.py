"""Shared fixtures: one local Ray per test session (fractional CPUs, small object store)."""
from __future__ import annotations

from pathlib import Path

import pytest

CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=4, object_store_memory=200 * 2**20,
             include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def camvid_dir() -> Path:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID}")
    return CAMVID
