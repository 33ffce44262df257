"""Score-table and query-table vocabulary: column names and the query schema, in one place.

Score tables (one parquet dataset each, written by ``rayal score``):

- ``frames``: ``frame_id``, one column per measure (:func:`score_column`), ``pred_hist``
  (C,) int32 predicted-class pixel counts, ``maturity_score_{agg}`` in multi-head mode;
- ``regions``: ``frame_id``, ``unit`` (the unit's name), ``region_id``, ``pixel_count``,
  measure columns, ``ovr_max`` (C,) per-class one-vs-rest entropy max, ``dominant_pred``;
- ``embeddings``: ``frame_id``, ``unit`` (``"frame"`` or a region unit), ``region_id``,
  ``embedding`` (D,) float16/32.

numpy / pyarrow layer.
"""
from __future__ import annotations

import pyarrow as pa

from rayal.core.measures import score_column   # column naming follows the measure's kind

__all__ = ["FRAME_ID", "REGION_ID", "SCORE_TABLES", "UNIT", "QUERY_SCHEMA", "score_column"]

SCORE_TABLES = ("frames", "regions", "embeddings")
FRAME_ID, UNIT, REGION_ID = "frame_id", "unit", "region_id"
PIXEL_COUNT, DOMINANT_PRED, PRED_HIST, OVR_MAX, EMBEDDING = (
    "pixel_count", "dominant_pred", "pred_hist", "ovr_max", "embedding")


QUERY_SCHEMA = pa.schema([
    ("rank", pa.int64()), ("frame_id", pa.string()), ("unit", pa.string()),
    ("region_id", pa.int32()), ("score", pa.float64()), ("reason", pa.string()),
    ("class_id", pa.int16()), ("cluster", pa.int32()), ("cost", pa.float32()),
])
