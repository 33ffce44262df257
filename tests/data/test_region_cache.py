"""Superpixel maps cached once per frame and setting (rayal.data.region_cache)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rayal.config.sections import ScoringConfig
from rayal.data import unit_region_map
from rayal.data.region_cache import cache_key


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((48, 64, 3), np.uint8)
    image[:24] = (200, 80, 40)
    image[24:, 32:] = (30, 160, 90)
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


def _scoring(cache: Path | None, n_segments: int = 20) -> ScoringConfig:
    return ScoringConfig(superpixel={"n_segments": n_segments},
                         region_cache=None if cache is None else str(cache))


def _files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*.npy"))


def test_cached_maps_equal_fresh_ones_and_are_read_back(tmp_path):
    image = _frame()
    fresh = unit_region_map(image, "superpixel", _scoring(None))
    first = unit_region_map(image, "superpixel", _scoring(tmp_path))
    assert np.array_equal(first, fresh) and first.dtype == np.int32
    [stored] = _files(tmp_path)
    mtime = stored.stat().st_mtime_ns
    again = unit_region_map(image, "superpixel", _scoring(tmp_path))
    assert np.array_equal(again, fresh) and stored.stat().st_mtime_ns == mtime   # read, not rewritten


def test_changed_setting_or_frame_is_not_reused(tmp_path):
    image = _frame()
    unit_region_map(image, "superpixel", _scoring(tmp_path, 20))
    other = unit_region_map(image, "superpixel", _scoring(tmp_path, 8))
    assert np.array_equal(other, unit_region_map(image, "superpixel", _scoring(None, 8)))
    unit_region_map(_frame(1), "superpixel", _scoring(tmp_path, 20))
    assert len(_files(tmp_path)) == 3
    assert cache_key(image, {"n_segments": 20}) != cache_key(image[::-1], {"n_segments": 20})


def test_corrupt_cached_map_is_detected_and_recomputed(tmp_path):
    image = _frame()
    fresh = unit_region_map(image, "superpixel", _scoring(None))
    unit_region_map(image, "superpixel", _scoring(tmp_path))
    [stored] = _files(tmp_path)
    data = bytearray(stored.read_bytes())
    data[-5] ^= 0xFF                                  # one flipped byte in the map
    stored.write_bytes(bytes(data))
    assert np.array_equal(unit_region_map(image, "superpixel", _scoring(tmp_path)), fresh)
    stored.write_bytes(stored.read_bytes()[:10])      # a torn write
    assert np.array_equal(unit_region_map(image, "superpixel", _scoring(tmp_path)), fresh)
    assert unit_region_map(image, "superpixel", _scoring(tmp_path)).shape == (48, 64)
    assert not [p for p in os.listdir(stored.parent) if p.endswith(".tmp")]
