"""``png``: a directory of class-id PNG masks, ``<frame_id>.png`` (full frame) or
``<frame_id>__<region_id>.png`` (one region, frame-size or its box) — today's
``rayal pool ingest --masks`` (:func:`rayal.pool.labels.label_summaries`)."""
from __future__ import annotations

from rayal.pool.formats.base import Format, IngestRequest


def ingest(req: IngestRequest):
    from rayal.pool.labels import label_summaries

    c = req.config
    return label_summaries(req.units, req.frames, unit=c.pool.unit, data=c.data,
                           scoring=c.scoring, masks_dir=req.source, on_error=req.on_error)


FORMAT = Format("png", "a directory of <frame_id>[__<region_id>].png class-id masks",
                ingest=ingest, extensions=(".png",))
