"""What an exporter and an importer get (:class:`ExportRequest`, :class:`IngestRequest`) and what a
format is (:class:`Format`): below the registry in :mod:`rayal.pool.formats` and the format
modules that fill it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa


@dataclass
class ExportRequest:
    """What an exporter gets: the round's ``query`` (QUERY_SCHEMA), its ``frames`` (``frame_id,
    uri, mask_uri``), the output directory, the config and, optionally, where the labels come
    from (``labels``: None, ``"oracle"`` = the frames' registered masks, or a directory of
    ``<frame_id>.png`` masks) for formats that carry labels; ``mask_format`` (parquet):
    ``rle``, ``polygon`` or ``both``."""

    query: pa.Table
    frames: pa.Table
    out_dir: str
    round_id: int
    config: object               # RayalConfig
    labels: str | None = None
    mask_format: str = "rle"


@dataclass
class IngestRequest:
    """What an importer gets: ``source`` (a file or directory), the ``units`` queued for labels
    (``frame_id, region_id, round``), their ``frames`` and the config; ``on_error``: ``raise``
    (default) or ``collect`` (bad frames go to ``LabelBatch.errors``)."""

    source: str
    units: pa.Table
    frames: pa.Table
    config: object               # RayalConfig
    on_error: str = "raise"


@dataclass
class Format:
    name: str
    help: str
    export: Callable | None = None
    ingest: Callable | None = None
    extensions: tuple = field(default_factory=tuple)
