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

from typing import Callable

from rayal.pool.formats.base import ExportRequest, Format, IngestRequest


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
