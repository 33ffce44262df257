"""Rows partitioned into on-disk buckets: a grace hash join in bounded memory.

MADBAL must join two 100M-row tables (region scores and region embeddings) on
the unit key. Holding a key -> cluster map for every region is O(N) memory;
instead both sides are partitioned by frame index into ``P`` bucket files and
joined one bucket at a time (both sides of a unit land in the same bucket).
"""
from __future__ import annotations

import os

import numpy as np


class BucketSpill:
    """Append columns row-aligned into ``num_buckets`` bucket files per column.

    dtypes: column name -> numpy dtype. ``append(bucket, **columns)`` routes each row to
    its bucket; ``read(b)`` returns that bucket's columns (rows in append order).
    """

    def __init__(self, directory: str, name: str, num_buckets: int, dtypes: dict[str, np.dtype]):
        self.num_buckets = num_buckets
        self.dtypes = {k: np.dtype(v) for k, v in dtypes.items()}
        self.paths = {(b, col): os.path.join(directory, f"{name}-{b:04d}-{col}.bin")
                      for b in range(num_buckets) for col in self.dtypes}
        self.files = {key: open(path, "wb") for key, path in self.paths.items()}

    def append(self, bucket: np.ndarray, **columns: np.ndarray) -> None:
        if len(bucket) == 0:
            return
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(self.num_buckets + 1))
        for col, dtype in self.dtypes.items():
            values = np.asarray(columns[col], dtype)[order]
            for b in np.flatnonzero(np.diff(bounds)):
                self.files[(b, col)].write(values[bounds[b]:bounds[b + 1]].tobytes())

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()

    def read(self, b: int) -> dict[str, np.ndarray]:
        return {col: np.fromfile(self.paths[(b, col)], dtype) for col, dtype in self.dtypes.items()}
