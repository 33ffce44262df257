"""Driver-side sink: split scored frame rows into the ``frames`` / ``regions`` /
``embeddings`` / ``quarantine`` parquet datasets (local paths or s3:// gs://), committed
atomically in part sets so a killed job resumes without duplicates or holes.

Layout of a score directory::

    frames/part-00003.parquet      one file per table per part set (absent: no rows)
    regions/part-00003.parquet
    quarantine/part-00003.parquet
    embeddings/part-00003.parquet
    _commits/part-00003.json       the commit marker of part set 3: rows per table, config hash

A part set holds the rows of whole scored batches (every table's rows of a frame are in the
same set). Each file is published whole: written under a hidden temporary name and renamed
(local), or uploaded to its final key, where an object store shows it only once the upload
completes. The marker is written last (one atomic write); a part file without its marker is
uncommitted and deleted by :func:`open_resume`. Readers that list a table directory
(``pq.read_table``, Ray Data, :class:`rayal.selection.base.ScoreTables`) skip the hidden
temporary names and the ``_commits`` directory.
"""
from __future__ import annotations

import json
import re
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayal.data import join_uri, makedirs, resolve_filesystem
from rayal.data.io import exists, list_files, storage_errors

QUARANTINE_SCHEMA = pa.schema([("frame_id", pa.string()), ("uri", pa.string()),
                               ("reason", pa.string())])
TABLES = ("frames", "regions", "quarantine", "embeddings")
COMMITS = "_commits"
_PART = re.compile(r"^part-(\d+)\.parquet$")


def _part_name(part: int) -> str:
    return f"part-{part:05d}.parquet"


class RollingParquetWriter:
    """Append tables to ``{directory}/part-NNNNN.parquet``; a part is published whole by
    :meth:`commit` (or when it reaches ``rows_per_file`` rows), never seen half-written.

    ``first_part`` / ``rows`` / ``bytes`` / ``files`` continue the counts of parts an earlier
    (resumed) job committed.
    """

    def __init__(self, directory: str, rows_per_file: int = 1_000_000, schema: pa.Schema | None = None,
                 first_part: int = 0, rows: int = 0, bytes: int = 0, files: int = 0):
        self.directory = directory
        self.rows_per_file = rows_per_file
        self.fs, self.base = resolve_filesystem(directory)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        makedirs(directory)
        self.schema = schema
        self.writer: pq.ParquetWriter | None = None
        self.part = first_part
        self.rows_in_part = 0
        self.rows = rows
        self.bytes = bytes
        self.files = files

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
            self.commit()

    def _final(self) -> str:
        return f"{self.base}/{_part_name(self.part)}"

    def _temp(self) -> str:
        # local: a hidden name, renamed on commit; object store: the final key (an upload is
        # invisible until it completes)
        return f"{self.base}/.{_part_name(self.part)}.tmp" if self.local else self._final()

    def _open(self) -> None:
        with storage_errors(self.directory, "writing a part"):
            self.writer = pq.ParquetWriter(self._temp(), self.schema, filesystem=self.fs,
                                           compression="zstd")

    def commit(self) -> int:
        """Publish the open part (if any) and move on to the next part number, whether or not
        rows were written (a :class:`ScoreSink`'s tables keep one numbering). Returns the rows
        published."""
        rows = self.rows_in_part
        if self.writer is not None:
            with storage_errors(self.directory, "writing a part"):
                self.writer.close()
                if self.local:
                    self.fs.move(self._temp(), self._final())
                self.bytes += self.fs.get_file_info(self._final()).size or 0
            self.writer = None
            self.files += 1
        self.part += 1
        self.rows_in_part = 0
        return rows

    def close(self) -> None:
        """Publish the last part; a table with no file yet gets one empty file if a schema is
        known (readers then see its columns)."""
        if self.writer is None and self.files == 0 and self.schema is not None:
            self._open()
        if self.writer is not None:
            self.commit()


class ScoreSink:
    """Routes each scored batch to the four tables and commits them in part sets of at least
    ``frames_per_part`` frames, or whatever arrived in ``commit_seconds`` (the most a killed
    job redoes). ``resume``: what :func:`open_resume` found; numbering and row counts continue
    from it. ``config_hash``: recorded in every marker (a resume with another config is
    refused by :func:`open_resume`)."""

    def __init__(self, output_dir: str, with_embeddings: bool, frames_per_part: int = 10_000,
                 commit_seconds: float = 60.0, resume: "ResumeState | None" = None,
                 config_hash: str = ""):
        self.output_dir = output_dir
        self.frames_per_part, self.commit_seconds = frames_per_part, commit_seconds
        self.config_hash = config_hash
        state = resume or ResumeState.empty()
        never = 1 << 62   # the sink decides when a part ends

        def writer(name, schema=None):
            return RollingParquetWriter(join_uri(output_dir, name), never, schema,
                                        first_part=state.next_part, rows=state.rows.get(name, 0),
                                        bytes=state.bytes.get(name, 0), files=state.files.get(name, 0))

        self.frames = writer("frames")
        self.regions = writer("regions")
        self.quarantine = writer("quarantine", QUARANTINE_SCHEMA)
        self.embeddings = writer("embeddings") if with_embeddings else None
        makedirs(join_uri(output_dir, COMMITS))
        self.pending_good = self.pending_bad = 0
        self.opened = time.monotonic()

    def _writers(self):
        return {n: w for n in TABLES if (w := getattr(self, n)) is not None}

    def write(self, batch: pa.Table) -> tuple[int, int]:
        """Returns (frames scored, frames quarantined) in this batch; commits a part set when
        it is due."""
        bad = pc.is_valid(batch.column("error"))
        quarantined = batch.filter(bad)
        if quarantined.num_rows:
            self.quarantine.write(pa.table({
                "frame_id": quarantined.column("frame_id"), "uri": quarantined.column("uri"),
                "reason": quarantined.column("error")}))
        good = batch.filter(pc.invert(bad))
        if good.num_rows:
            self._write_regions(good)
            frame_cols = [c for c in good.column_names if c not in ("error", "regions", "frame_embedding")]
            self.frames.write(good.select(frame_cols))
            if self.embeddings is not None:
                self._write_embeddings(good)
        self.pending_good += good.num_rows
        self.pending_bad += quarantined.num_rows
        if (self.pending_good + self.pending_bad >= self.frames_per_part
                or time.monotonic() - self.opened >= self.commit_seconds):
            self.commit()
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

    def commit(self, final: bool = False) -> None:
        """Publish every table's open part, then the set's marker (nothing when the set is
        empty, unless ``final`` must publish empty files)."""
        writers = self._writers()
        if final:
            for w in writers.values():
                if w.writer is None and w.files == 0 and w.schema is not None:
                    w._open()
        if not any(w.writer is not None for w in writers.values()):
            self.opened = time.monotonic()
            return
        part = self.frames.part
        files = {n: w.writer is not None for n, w in writers.items()}
        rows = {n: w.commit() for n, w in writers.items()}
        marker = {"part": part, "frames": self.pending_good, "quarantined": self.pending_bad,
                  "rows": rows, "bytes": {n: w.bytes for n, w in writers.items()},
                  "files": {n: f for n, f in files.items() if f}, "config": self.config_hash}
        from rayal.pipeline.storage import write_json
        write_json(join_uri(self.output_dir, COMMITS, f"part-{part:05d}.json"), marker)
        self.pending_good = self.pending_bad = 0
        self.opened = time.monotonic()

    def close(self) -> dict[str, dict]:
        """Commit what is pending; ``{table: {path, rows, bytes}}`` over all committed parts."""
        self.commit(final=True)
        return {name: {"path": w.directory, "rows": w.rows, "bytes": w.bytes}
                for name, w in self._writers().items()}


class ResumeState:
    """What the committed part sets of a score directory hold (see :func:`open_resume`)."""

    def __init__(self, done: pa.Array, next_part: int, rows: dict, bytes: dict, files: dict):
        self.done = done              # frame ids (string) with committed rows: scored or quarantined
        self.next_part = next_part
        self.rows, self.bytes, self.files = rows, bytes, files

    @classmethod
    def empty(cls) -> "ResumeState":
        return cls(pa.array([], pa.string()), 0, {}, {}, {})


def read_markers(output_dir: str) -> list[dict]:
    """The commit markers under ``output_dir/_commits``, by part number ([] when none)."""
    from rayal.pipeline.storage import read_json

    where = join_uri(output_dir, COMMITS)
    if not exists(where):
        return []
    return sorted((read_json(uri) for name, uri in list_files(where) if name.endswith(".json")),
                  key=lambda m: m["part"])


def open_resume(output_dir: str, config_hash: str) -> ResumeState:
    """Prepare ``output_dir`` to continue a killed scoring job: delete every part file without
    a commit marker (and temporary files), and read the frame ids of the committed ones.

    Raises:
        ValueError: the committed parts were scored with another config (``config_hash``).
    """
    markers = read_markers(output_dir)
    other = {m["config"] for m in markers} - {config_hash}
    if other:
        raise ValueError(f"output_dir {output_dir} holds scores of another config (model, "
                         "scoring or data settings changed): score into a new output_dir, or "
                         "run without --resume to replace them")
    committed = {m["part"] for m in markers}
    rows: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    files: dict[str, int] = {}
    for m in markers:
        for name, n in m["rows"].items():
            rows[name] = rows.get(name, 0) + n
        nbytes.update(m["bytes"])   # running totals: the last marker's are the total
        for name in m.get("files", {}):
            files[name] = files.get(name, 0) + 1
    ids = []
    for name in TABLES:
        directory = join_uri(output_dir, name)
        if not exists(directory):
            continue
        fs, _ = resolve_filesystem(directory)
        for base, uri in list_files(directory):
            match = _PART.match(base)
            if match and int(match.group(1)) in committed:
                if name in ("frames", "quarantine"):
                    path = resolve_filesystem(uri)[1]
                    ids.append(pq.read_table(path, columns=["frame_id"], filesystem=fs)
                               .column("frame_id").combine_chunks().cast(pa.string()))
            elif match or base.endswith(".tmp"):
                with storage_errors(uri, "deleting an uncommitted part"):
                    fs.delete_file(resolve_filesystem(uri)[1])
    done = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
    next_part = max(committed) + 1 if committed else 0
    return ResumeState(done, next_part, rows, nbytes, files)


def clear_outputs(output_dir: str) -> None:
    """Remove the tables and markers a previous scoring job left in ``output_dir``."""
    from rayal.pipeline.storage import remove_tree

    for name in TABLES + (COMMITS,):
        remove_tree(join_uri(output_dir, name))
