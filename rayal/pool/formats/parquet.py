"""``parquet``: the round's query as ``round-R.parquet`` + ``round-R.jsonl``, one row per unit
with its region as COCO-style RLE and/or polygon (:func:`rayal.pool.export.export_query`)."""
from __future__ import annotations

from rayal.pool.formats.base import ExportRequest, Format


def export(req: ExportRequest) -> dict:
    from rayal.pool.export import export_query

    c = req.config
    out = export_query(req.query, req.frames, req.out_dir, round_id=req.round_id,
                       unit=c.pool.unit, scoring=c.scoring, data=c.data,
                       mask_format=req.mask_format)
    return {"files": [out["parquet"], out["jsonl"]], "rows": out["rows"]}


FORMAT = Format("parquet", "parquet + JSON lines, one row per unit (region RLE / polygon)",
                export=export, extensions=(".parquet", ".jsonl"))
