"""Pool manifests: parquet listing every frame of a pool, streamed, never fully loaded.

A manifest is one parquet file or a directory of parquet files (a dataset)
with columns:

* ``frame_id`` (string, unique, not null) — the frame's stable id;
* ``uri`` (string, not null) — the image: local path or ``s3://`` / ``gs://`` URI;
* ``mask_uri`` (string, optional, nullable) — the label mask, if any.

Other columns are kept and passed through. Relative ``uri`` / ``mask_uri``
values (no ``scheme://``, not starting with ``/``) are resolved when read by
:func:`iter_manifest`: they are joined onto the manifest's directory — the
folder containing the parquet file, or the dataset directory itself. So a
manifest can sit next to its frames and be moved (or synced to S3) with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rayal.data.io import file_info, has_scheme, makedirs, parent_uri, resolve_filesystem

__all__ = [
    "MANIFEST_SCHEMA",
    "REQUIRED_COLUMNS",
    "URI_COLUMNS",
    "write_manifest",
    "manifest_num_rows",
    "iter_manifest",
    "read_manifest",
    "validate_manifest_schema",
    "manifest_base_dir",
    "resolve_relative_uris",
]

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("frame_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("mask_uri", pa.string(), nullable=True),
    ]
)
REQUIRED_COLUMNS = ("frame_id", "uri")
URI_COLUMNS = ("uri", "mask_uri")
_ABSOLUTE_RE = r"^([A-Za-z][A-Za-z0-9+.\-]*://|/|[A-Za-z]:[\\/])"  # scheme, posix root, windows drive


def _as_table(table_or_records) -> pa.Table:
    """Accept a Table, RecordBatch, dict of columns, or an iterable of FrameRecord / dicts."""
    if isinstance(table_or_records, pa.Table):
        return table_or_records
    if isinstance(table_or_records, pa.RecordBatch):
        return pa.Table.from_batches([table_or_records])
    if isinstance(table_or_records, Mapping):
        return pa.table(dict(table_or_records))
    if isinstance(table_or_records, Iterable):
        rows = list(table_or_records)
        if rows and all(hasattr(r, "image_uri") for r in rows):  # FrameRecord (duck-typed: no import cycle)
            return pa.table(
                {
                    "frame_id": [r.frame_id for r in rows],
                    "uri": [r.image_uri for r in rows],
                    "mask_uri": [r.mask_uri for r in rows],
                },
                schema=MANIFEST_SCHEMA,
            )
        if all(isinstance(r, Mapping) for r in rows):
            return pa.Table.from_pylist(rows) if rows else MANIFEST_SCHEMA.empty_table()
    raise TypeError(f"expected a pyarrow Table or FrameRecords, got {type(table_or_records).__name__}")


def _check_schema(schema: pa.Schema, where: str) -> None:
    for name in REQUIRED_COLUMNS:
        if name not in schema.names:
            raise ValueError(f"manifest {where}: missing required column '{name}' (has: {', '.join(schema.names)})")
    for name in ("frame_id",) + URI_COLUMNS:
        if name not in schema.names:
            continue
        t = schema.field(name).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise ValueError(f"manifest {where}: column '{name}' must be string, got {t}")


def _normalise(table: pa.Table, where: str) -> pa.Table:
    """Check columns, cast large_string -> string, reject null / duplicate frame ids and null uris."""
    for name in ("frame_id",) + URI_COLUMNS:  # all-null columns come in as type null
        if name in table.schema.names:
            t = table.schema.field(name).type
            if pa.types.is_large_string(t) or pa.types.is_null(t):
                i = table.schema.get_field_index(name)
                table = table.set_column(i, name, table.column(name).cast(pa.string()))
    _check_schema(table.schema, where)
    for name in REQUIRED_COLUMNS:
        nulls = table.column(name).null_count
        if nulls:
            raise ValueError(f"manifest {where}: column '{name}' has {nulls} null value(s)")
    ids = table.column("frame_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids)
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise ValueError(f"manifest {where}: column 'frame_id' is not unique (e.g. '{dup}')")
    return table


def write_manifest(table_or_records, uri: str, row_group_size: int = 65536) -> str:
    """Write a pool manifest to one parquet file at ``uri``; returns ``uri``.

    ``table_or_records``: a pyarrow Table (extra columns kept), a dict of
    columns, dict rows, or FrameRecords. Validates required columns, string
    types, non-null ``frame_id``/``uri`` and unique ``frame_id``. Written to a
    temporary name and moved into place, so readers never see a partial file.
    """
    if row_group_size <= 0:
        raise ValueError(f"row_group_size must be positive, got {row_group_size}")
    table = _normalise(_as_table(table_or_records), str(uri))
    fs, path = resolve_filesystem(uri)
    makedirs(parent_uri(uri))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        pq.write_table(table, tmp, filesystem=fs, row_group_size=row_group_size)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise
    return str(uri)


def _open(uri: str):
    """(filesystem, path, is_directory) for an existing manifest."""
    fs, path, info = file_info(uri)  # a refusing store raises StorageError naming the URI
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"manifest not found: {uri}")
    return fs, path, info.type == pafs.FileType.Directory


def _dataset(fs, path) -> pads.Dataset:
    return pads.dataset(path, filesystem=fs, format="parquet", exclude_invalid_files=False)


def manifest_base_dir(uri: str) -> str:
    """Directory relative URIs are resolved against: the file's folder, or the dataset dir itself."""
    _, _, is_dir = _open(uri)
    if is_dir:
        uri = os.fspath(uri).rstrip("/")
        return uri if has_scheme(uri) else os.path.abspath(os.path.expanduser(uri))
    return parent_uri(uri)


def validate_manifest_schema(uri: str) -> pa.Schema:
    """Read only the schema; raise ValueError naming a missing or non-string column. Returns the schema."""
    fs, path, is_dir = _open(uri)
    schema = _dataset(fs, path).schema if is_dir else pq.read_schema(path, filesystem=fs)
    _check_schema(schema, str(uri))
    return schema


def manifest_num_rows(uri: str) -> int:
    """Number of frames, from parquet footers only (no data pages are read)."""
    fs, path, is_dir = _open(uri)
    if is_dir:
        return int(_dataset(fs, path).count_rows())
    with fs.open_input_file(path) as f:
        return int(pq.ParquetFile(f).metadata.num_rows)


def resolve_relative_uris(batch: pa.RecordBatch | pa.Table, base: str) -> pa.RecordBatch | pa.Table:
    """Join relative values of the URI columns onto ``base`` (nulls stay null).
    Works on a RecordBatch or a Table and returns the same kind."""
    sep = "/" if has_scheme(base) else os.sep
    prefix = base.rstrip(sep) + sep
    arrays = list(batch.columns)
    for name in URI_COLUMNS:
        i = batch.schema.get_field_index(name)
        if i < 0:
            continue
        col = batch.column(i)
        is_abs = pc.match_substring_regex(col, _ABSOLUTE_RE)
        if pc.all(pc.fill_null(is_abs, True)).as_py():
            continue
        arrays[i] = pc.if_else(is_abs, col, pc.binary_join_element_wise(prefix, col, ""))
    return type(batch).from_arrays(arrays, schema=batch.schema)


def iter_manifest(uri: str, batch_size: int = 65536, columns=None) -> Iterator[pa.RecordBatch]:
    """Stream the manifest as RecordBatches of at most ``batch_size`` rows.

    Only one batch (plus one row group of read-ahead) is in memory at a time,
    so pools of millions of frames can be scanned. ``columns`` selects
    columns (default all); relative ``uri`` / ``mask_uri`` values are
    resolved against :func:`manifest_base_dir`.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    schema = validate_manifest_schema(uri)
    if columns is not None:
        columns = list(columns)
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise ValueError(f"manifest {uri}: no column(s) {unknown} (has: {', '.join(schema.names)})")
    base = manifest_base_dir(uri)
    fs, path, is_dir = _open(uri)
    if is_dir:
        for batch in _dataset(fs, path).to_batches(columns=columns, batch_size=batch_size):
            if batch.num_rows:
                yield resolve_relative_uris(batch, base)
        return
    with fs.open_input_file(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns):
            yield resolve_relative_uris(batch, base)


def read_manifest(uri: str, columns=None) -> pa.Table:
    """Whole manifest as one Table (relative URIs resolved). For small pools; stream big ones."""
    batches = list(iter_manifest(uri, columns=columns))
    if batches:
        return pa.Table.from_batches(batches)
    schema = validate_manifest_schema(uri)
    return schema.empty_table() if columns is None else schema.empty_table().select(list(columns))
