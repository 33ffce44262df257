"""Interchange formats of a round's query and its labels: one registry of exporters and
importers, one module per format.

========== ============================================ ==========================================
format     export (``rayal pool export --format``)      ingest (``rayal pool ingest --format``)
========== ============================================ ==========================================
parquet    ``round-R.parquet`` + ``round-R.jsonl``,     -
           one row per unit (:mod:`.parquet`)
png        -                                            a directory of class-id PNG masks
                                                        (:mod:`.png`)
coco       ``round-R.coco.json`` (:mod:`.coco`)         the same COCO JSON, labels as annotations
labelstudio ``round-R.labelstudio.json`` (:mod:`.labelstudio`) the same tasks, labels as annotations
========== ============================================ ==========================================

An exporter is ``export(request) -> dict`` (the written files' URIs under ``"files"`` and the
number of units under ``"rows"``); an importer is ``ingest(request) -> LabelBatch``
(:class:`rayal.pool.labels.LabelBatch`): summaries of queued units only, every item validated
(size against the frame, class ids against ``data.num_classes``, the unit queued) before
anything is returned, so a bad item raises a :class:`~rayal.data.LabelError` /
``ValueError`` naming it and nothing is ingested. :func:`get_exporter` / :func:`get_importer`
raise a ``KeyError`` that lists the registered names; :func:`register_format` adds one.
"""
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


_FORMATS: dict[str, Format] = {}
_BUILTIN_LOADED = False


def register_format(fmt: Format) -> Format:
    """Add (or replace) a format under ``fmt.name``."""
    _builtin()
    _FORMATS[fmt.name] = fmt
    return fmt


def _builtin() -> None:
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    from rayal.pool.formats import coco, labelstudio, parquet, png

    for module in (parquet, png, coco, labelstudio):
        _FORMATS.setdefault(module.FORMAT.name, module.FORMAT)


def formats() -> dict[str, Format]:
    _builtin()
    return dict(_FORMATS)


def export_formats() -> list[str]:
    return [n for n, f in formats().items() if f.export is not None]


def import_formats() -> list[str]:
    return [n for n, f in formats().items() if f.ingest is not None]


def get_exporter(name: str) -> Callable:
    """The export function of a format; KeyError listing the export formats."""
    fmt = formats().get(name)
    if fmt is None or fmt.export is None:
        raise KeyError(f"no exporter {name!r}; export formats: {', '.join(export_formats())}")
    return fmt.export


def get_importer(name: str) -> Callable:
    """The ingest function of a format; KeyError listing the ingest formats."""
    fmt = formats().get(name)
    if fmt is None or fmt.ingest is None:
        raise KeyError(f"no importer {name!r}; ingest formats: {', '.join(import_formats())}")
    return fmt.ingest


__all__ = ["ExportRequest", "IngestRequest", "Format", "register_format", "formats",
           "export_formats", "import_formats", "get_exporter", "get_importer"]
