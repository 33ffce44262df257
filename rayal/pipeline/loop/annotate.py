"""The simulated annotator: ground truth for exactly the selected units, through ``ingest``.

The queued units of a round are summarised from the frames' registered ground-truth masks by
:func:`rayal.pool.labels.label_summaries` (the same path real label files take), bad frames are
quarantined, the summaries are ingested, and the cost is counted in units and estimated clicks
(:mod:`rayal.data.oracle`).
"""
from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads

from rayal.config.sections import RayalConfig
from rayal.core.units import get_unit
from rayal.data import unit_region_map
from rayal.data.splits import labelled_split
from rayal.pool.labels import label_summaries
from rayal.selection.base import ScoreTables


def pool_units_total(config: RayalConfig, num_frames: int, round0_scores: str | None = None) -> int:
    """Units in the pool: frames, frames x grid cells, or superpixels (the unit registry's
    ``regions_per_frame``; counted in the score tables for units without an exact count).

    Superpixels are the regions the method really produced (SLIC gives fewer than
    ``n_segments`` on small frames), counted in the round-0 score tables ``round0_scores``,
    which hold every region when ``scoring.top_k_regions`` is None; otherwise frames x the
    nominal ``n_segments``.
    """
    spec = get_unit(config.pool.unit)
    if spec.exact_count:
        return num_frames * spec.units_per_frame(config.scoring)
    if round0_scores is not None and config.scoring.top_k_regions is None:
        regions = ScoreTables.from_dir(round0_scores).regions
        if regions is not None:
            return pads.dataset(regions, format="parquet").count_rows(
                filter=pc.field("unit") == spec.name)
    return num_frames * spec.units_per_frame(config.scoring)


def _clicks(config: RayalConfig, units) -> int:
    spec = get_unit(config.pool.unit)
    if spec.label == "dominant" and spec.clicks is None:
        return units.num_rows   # one click: the dominant label
    split = labelled_split(config.data, config.data.pool_split)
    frames = units.column("frame_id").to_pylist()
    regions = units.column("region_id").to_numpy()
    total = 0
    for frame_id in sorted(set(frames)):
        image, mask = split.load(frame_id)
        ids = regions[[i for i, f in enumerate(frames) if f == frame_id]]
        region_map = None if spec.level == "image" else unit_region_map(image, spec.name, config.scoring)
        total += int(spec.unit_clicks(mask, region_map, ids, config.data.ignore_index).sum())
    return total


def annotate_round(config: RayalConfig, pool, round_id: int, round_dir: str | None = None,
                   checkpoint: str | None = None) -> dict:
    """Label round ``round_id``'s queued units from the ground truth; returns the cost:
    ``units``, ``clicks``, ``class_hist`` (selected units per label), ``quarantined``.

    ``loop.annotation: one_pixel``: each superpixel's label is its highest-scoring pixel's
    under ``checkpoint``, written to ``round_dir`` (:mod:`rayal.pipeline.loop.one_pixel`)."""
    units = pool.units("queued", round_id)
    frames = pool.frames(units.column("frame_id").unique().to_pylist())
    batch = label_summaries(units, frames, unit=config.pool.unit, data=config.data,
                            scoring=config.scoring, on_error="collect")
    quarantined = 0
    for frame_id, region_ids, message in batch.errors:
        pool.quarantine([frame_id] * len(region_ids), region_ids, [message] * len(region_ids))
        quarantined += len(region_ids)
    pool.ingest(batch.table, round_id)
    labelled = pool.units("labeled", round_id)
    num_classes = config.data.num_classes
    dominant = labelled.column("dominant_class").to_numpy().astype(np.int64)
    if config.loop.annotation == "one_pixel" and labelled.num_rows:
        from rayal.pipeline.loop.one_pixel import annotate_points, write_points

        points = annotate_points(config, labelled, checkpoint)
        write_points(round_dir, points)
        dominant = points.column("label").to_numpy().astype(np.int64)
        dominant[dominant == config.data.ignore_index] = -1
    hist = np.bincount(dominant[dominant >= 0], minlength=num_classes)[:num_classes]
    return {"units": labelled.num_rows, "clicks": _clicks(config, labelled) if labelled.num_rows else 0,
            "class_hist": hist.tolist(), "quarantined": quarantined}
