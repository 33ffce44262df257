"""A Ray Data datasource that streams a parquet manifest in blocks of exactly one batch.

``read_parquet`` makes one block per row group (often 64k+ rows), which would
hold a whole row group's frames in one scoring task: no progress, no streaming.
Here each read task covers ``rows_per_task`` manifest rows and yields them as
``batch_size``-row blocks, reading only the row groups it overlaps; nothing but
the parquet footers is read on the driver.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from rayal.data import manifest_base_dir, resolve_filesystem, resolve_relative_uris
from rayal.pipeline.score.frames import drop_frames, rebatch

COLUMNS = ["frame_id", "uri"]


@dataclass(frozen=True)
class RowGroupSlice:
    path: str
    row_group: int
    offset: int
    length: int


def _manifest_files(uri: str) -> tuple[pa.fs.FileSystem, list[str]]:
    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pa.fs.FileType.Directory:
        selector = pa.fs.FileSelector(path, recursive=True)
        files = sorted(f.path for f in fs.get_file_info(selector)
                       if f.is_file and f.path.endswith(".parquet"))
        return fs, files
    return fs, [path]


class ManifestDatasource(Datasource):
    """Manifest rows ``[0, limit)`` as ``batch_size``-row blocks of ``frame_id, uri``
    (relative URIs resolved against the manifest's directory, as :func:`rayal.data.iter_manifest` does),
    without the rows whose frame id is in ``skip`` (blocks may then be shorter)."""

    def __init__(self, uri: str, batch_size: int, rows_per_task: int | None = None,
                 limit: int | None = None, skip: pa.Array | None = None):
        self.uri = uri
        self.skip = skip   # frame ids (string) left out (already scored); shipped once via ray.put
        self.batch_size = batch_size
        self.rows_per_task = rows_per_task or batch_size * 32
        self.fs, files = _manifest_files(uri)
        self.base_dir = manifest_base_dir(uri)  # relative frame URIs are resolved against it
        self.groups: list[tuple[str, int, int]] = []  # (path, row group, rows)
        total = 0
        for path in files:
            meta = pq.ParquetFile(self.fs.open_input_file(path)).metadata
            for i in range(meta.num_row_groups):
                rows = meta.row_group(i).num_rows
                if limit is not None and total + rows > limit:
                    rows = limit - total
                if rows > 0:
                    self.groups.append((path, i, rows))
                    total += rows
        self.num_rows = total

    def estimate_inmemory_data_size(self) -> int:
        return self.num_rows * 128

    def _slices(self) -> list[list[RowGroupSlice]]:
        """Consecutive manifest rows cut into tasks of ``rows_per_task`` rows."""
        tasks, current, filled = [], [], 0
        for path, group, rows in self.groups:
            offset = 0
            while offset < rows:
                take = min(rows - offset, self.rows_per_task - filled)
                current.append(RowGroupSlice(path, group, offset, take))
                offset += take
                filled += take
                if filled == self.rows_per_task:
                    tasks.append(current)
                    current, filled = [], 0
        if current:
            tasks.append(current)
        return tasks

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list[ReadTask]:
        import ray

        fs, batch_size, base_dir = self.fs, self.batch_size, self.base_dir
        skip_ref = ray.put(self.skip) if self.skip is not None else None

        def keep(table: pa.Table) -> pa.Table:
            return table if skip_ref is None else drop_frames(table, ray.get(skip_ref))

        def make_reader(slices: list[RowGroupSlice]):
            def tables():
                for s in slices:
                    parquet = pq.ParquetFile(fs.open_input_file(s.path))
                    table = parquet.read_row_group(s.row_group, columns=COLUMNS)
                    yield resolve_relative_uris(keep(table.slice(s.offset, s.length)), base_dir)

            return lambda: rebatch(tables(), batch_size)

        tasks = []
        for slices in self._slices():
            rows = sum(s.length for s in slices)
            meta = BlockMetadata(num_rows=rows if self.skip is None else None,  # unknown: filtered
                                 size_bytes=rows * 128, exec_stats=None,
                                 input_files=tuple(sorted({s.path for s in slices})))
            tasks.append(ReadTask(make_reader(slices), meta, per_task_row_limit=per_task_row_limit))
        return tasks
