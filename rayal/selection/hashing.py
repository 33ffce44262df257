"""Order-free pseudo-random priorities for units: a seeded hash of (frame_id, region_id).

A random sample drawn from per-row random numbers would change whenever the
score table's rows come in another order (Ray Data does not promise an order);
a hash of the unit itself gives the same sample for the same units, and lets
random selection reuse the lazy top-B machinery instead of resolving 10M rows.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit, prange


@njit(parallel=True, cache=True)
def _fnv1a_strings(offsets, data, seed, out):
    for i in prange(len(out)):
        h = np.uint64(0xCBF29CE484222325) ^ seed
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * np.uint64(0x100000001B3)
        out[i] = h


@njit(cache=True)
def _mix64(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(parallel=True, cache=True)
def _unit_priority(frame_hash, region_id, out):
    for i in prange(len(out)):
        h = _mix64(frame_hash[i] ^ (np.uint64(region_id[i] + 1) * np.uint64(0x9E3779B97F4A7C15)))
        out[i] = (h >> np.uint64(11)) * (1.0 / 9007199254740992.0)  # top 53 bits -> [0, 1)


def string_hashes(strings: pa.Array | pa.ChunkedArray, seed: int) -> np.ndarray:
    """(N,) uint64 seeded FNV-1a hash of each UTF-8 string (nulls hash as empty strings)."""
    if isinstance(strings, pa.ChunkedArray):
        parts = [string_hashes(chunk, seed) for chunk in strings.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    strings = strings.cast(pa.large_string())
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64)[strings.offset: strings.offset + len(strings) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    out = np.empty(len(strings), np.uint64)
    _fnv1a_strings(offsets, data, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), out)
    return out


def unit_priority(frame_id: pa.Array | pa.ChunkedArray, region_id: np.ndarray, seed: int) -> np.ndarray:
    """(N,) float64 in [0, 1): a seeded pseudo-random number per unit, independent of row order."""
    out = np.empty(len(region_id), np.float64)
    _unit_priority(string_hashes(frame_id, seed), np.asarray(region_id, np.int64), out)
    return out
