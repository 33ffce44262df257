"""Driver-side sink: split scored frame rows into the ``frames`` / ``regions`` /
``embeddings`` / ``quarantine`` parquet datasets (local paths or s3:// gs://).

Each table is a directory of ``part-NNNNN.parquet`` files; a new part starts
every ``rows_per_file`` rows so million-frame pools stay streamable.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayal.data import join_uri, makedirs, resolve_filesystem

QUARANTINE_SCHEMA = pa.schema([("frame_id", pa.string()), ("uri", pa.string()),
                               ("reason", pa.string())])


class RollingParquetWriter:
    """Append tables to ``{directory}/part-NNNNN.parquet``, rolling every ``rows_per_file``."""

    def __init__(self, directory: str, rows_per_file: int = 1_000_000, schema: pa.Schema | None = None):
        self.directory = directory
        self.rows_per_file = rows_per_file
        self.fs, self.base = resolve_filesystem(directory)
        makedirs(directory)
        self.schema = schema
        self.writer: pq.ParquetWriter | None = None
        self.part = 0
        self.rows_in_part = 0
        self.rows = 0
        self.bytes = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.schema is None:
            self.schema = table.schema
        table = table.cast(self.schema) if table.schema != self.schema else table
        if self.writer is None:
            self._open()
        self.writer.write_table(table)
        self.rows_in_part += table.num_rows
        self.rows += table.num_rows
        if self.rows_in_part >= self.rows_per_file:
            self._close_part()

    def _open(self) -> None:
        path = f"{self.base}/part-{self.part:05d}.parquet"
        self.writer = pq.ParquetWriter(path, self.schema, filesystem=self.fs, compression="zstd")

    def _close_part(self) -> None:
        if self.writer is not None:
            self.writer.close()
            info = self.fs.get_file_info(f"{self.base}/part-{self.part:05d}.parquet")
            self.bytes += info.size or 0
            self.writer = None
            self.part += 1
            self.rows_in_part = 0

    def close(self) -> None:
        """Finish the last part; an empty table still gets one (empty) file if a schema is known."""
        if self.writer is None and self.rows == 0 and self.schema is not None:
            self._open()
        self._close_part()


class ScoreSink:
    """Routes each scored batch to the four tables."""

    def __init__(self, output_dir: str, with_embeddings: bool, rows_per_file: int = 1_000_000):
        self.frames = RollingParquetWriter(join_uri(output_dir, "frames"), rows_per_file)
        self.regions = RollingParquetWriter(join_uri(output_dir, "regions"), rows_per_file)
        self.quarantine = RollingParquetWriter(join_uri(output_dir, "quarantine"), rows_per_file,
                                               schema=QUARANTINE_SCHEMA)
        self.embeddings = (RollingParquetWriter(join_uri(output_dir, "embeddings"), rows_per_file)
                           if with_embeddings else None)

    def write(self, batch: pa.Table) -> tuple[int, int]:
        """Returns (frames scored, frames quarantined) in this batch."""
        bad = pc.is_valid(batch.column("error"))
        quarantined = batch.filter(bad)
        if quarantined.num_rows:
            self.quarantine.write(pa.table({
                "frame_id": quarantined.column("frame_id"), "uri": quarantined.column("uri"),
                "reason": quarantined.column("error")}))
        good = batch.filter(pc.invert(bad))
        if good.num_rows == 0:
            return 0, quarantined.num_rows
        self._write_regions(good)
        frame_cols = [c for c in good.column_names if c not in ("error", "regions", "frame_embedding")]
        self.frames.write(good.select(frame_cols))
        if self.embeddings is not None:
            self._write_embeddings(good)
        return good.num_rows, quarantined.num_rows

    def _write_regions(self, good: pa.Table) -> None:
        nested = good.column("regions").combine_chunks()
        flat = pc.list_flatten(nested)
        if len(flat) == 0:
            return
        parents = pc.list_parent_indices(nested)
        columns = {"frame_id": pc.take(good.column("frame_id"), parents)}
        for i, field in enumerate(flat.type):
            if field.name != "embedding":
                columns[field.name] = flat.field(i)
        self.regions.write(pa.table(columns))
        if self.embeddings is not None and flat.type.get_field_index("embedding") >= 0:
            self.embeddings.write(pa.table({
                "frame_id": columns["frame_id"], "unit": columns["unit"],
                "region_id": columns["region_id"],
                "embedding": flat.field(flat.type.get_field_index("embedding"))}))

    def _write_embeddings(self, good: pa.Table) -> None:
        if "frame_embedding" not in good.column_names:
            return
        n = good.num_rows
        self.embeddings.write(pa.table({
            "frame_id": good.column("frame_id"), "unit": pa.array(["frame"] * n),
            "region_id": pa.array([-1] * n, pa.int32()),
            "embedding": good.column("frame_embedding")}))

    def close(self) -> dict[str, dict]:
        out = {}
        for name in ("frames", "regions", "quarantine", "embeddings"):
            writer = getattr(self, name)
            if writer is not None:
                writer.close()
                out[name] = {"path": writer.directory, "rows": writer.rows, "bytes": writer.bytes}
        return out
