"""MADBAL's one-pixel annotation, simulated: one true label per selected superpixel.

With ``loop.annotation: one_pixel`` the annotator does not label a selected superpixel with its
dominant class; it labels the superpixel's highest-scoring pixel under the current model
(the model the round selected with) with that pixel's ground-truth class, one click each
(DESIGN.md "Units of annotation"). The pixel score is MADBAL's maturity score ``u`` in
``scoring.mode: multi_head`` and the strategy's measure (default entropy) otherwise.

Each round's points are kept in ``round_NNN/points.parquet`` (``frame_id, region_id, y, x,
label``; ``label`` is ``ignore_index`` where the pixel is void) and every labelled frame trains
on the union of its points (:func:`point_specs`).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from rayal.config.sections import RayalConfig
from rayal.data import exists, join_uri, unit_region_map
from rayal.data.splits import labelled_split
from rayal.pipeline.storage import read_parquet, write_parquet
from rayal.scoring.maturity import MATURITY
from rayal.train.dataset import LabelSpec

POINTS_FILE = "points.parquet"


def pixel_score_name(config: RayalConfig) -> str:
    """The pixel map the annotator maximises: maturity (multi-head) or the strategy's measure."""
    if config.scoring.mode == "multi_head":
        return MATURITY
    return str(config.selection.params.get("measure", "entropy"))


def highest_pixels(score: np.ndarray, region_map: np.ndarray, region_ids) -> list[tuple[int, int]]:
    """(y, x) of the highest ``score`` (H, W) pixel inside each region of ``region_ids``
    (``region_map`` (H, W) int); ties go to the first pixel in row-major order."""
    flat_score, flat_regions = score.reshape(-1), region_map.reshape(-1)
    out = []
    for region in region_ids:
        inside = np.flatnonzero(flat_regions == region)
        if inside.size == 0:
            raise ValueError(f"region {region} is not in the frame's region map")
        best = inside[int(np.argmax(flat_score[inside]))]
        out.append(divmod(int(best), score.shape[1]))
    return out


def annotate_points(config: RayalConfig, units: pa.Table, checkpoint: str | None) -> pa.Table:
    """Points for the superpixel ``units`` (``frame_id, region_id``) from the model in
    ``checkpoint`` (None: the seeded fresh model round 0 scores with)."""
    from rayal.pipeline.score.batch import FrameBatchScorer   # torch model code: only when used

    scorer = FrameBatchScorer(config.model_copy(update={
        "model": config.model.model_copy(update={"checkpoint": checkpoint})}))
    name = pixel_score_name(config)
    split = labelled_split(config.data, config.data.pool_split)
    frames = units.column("frame_id").to_pylist()
    regions = units.column("region_id").to_numpy()
    rows: dict[str, list] = {"frame_id": [], "region_id": [], "y": [], "x": [], "label": []}
    for frame_id in sorted(set(frames)):
        image, mask = split.load(frame_id)
        ids = [int(regions[i]) for i, f in enumerate(frames) if f == frame_id]
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255.0).to(scorer.device)
        maps = scorer.scorer(x, [frame_id]).maps
        if name not in maps:
            raise ValueError(f"loop.annotation one_pixel: the scorer gives no {name!r} pixel map "
                             f"(it gives {sorted(maps)})")
        score = maps[name][0].float().cpu().numpy()
        region_map = unit_region_map(image, "superpixel", config.scoring)
        for region, (y, x_) in zip(ids, highest_pixels(score, region_map, ids)):
            rows["frame_id"].append(frame_id)
            rows["region_id"].append(region)
            rows["y"].append(y)
            rows["x"].append(x_)
            rows["label"].append(int(mask[y, x_]))
    return pa.table({"frame_id": pa.array(rows["frame_id"], pa.string()),
                     "region_id": pa.array(rows["region_id"], pa.int32()),
                     "y": pa.array(rows["y"], pa.int32()), "x": pa.array(rows["x"], pa.int32()),
                     "label": pa.array(rows["label"], pa.int32())})


def write_points(round_dir: str, points: pa.Table) -> None:
    write_parquet(points, join_uri(round_dir, POINTS_FILE))


def point_specs(round_dirs: list[str], ignore_index: int) -> list[LabelSpec]:
    """One ``points`` :class:`LabelSpec` per frame: the union of its points over ``round_dirs``
    (void pixels are dropped: they carry no label)."""
    by_frame: dict[str, list[tuple[int, int, int]]] = {}
    for round_dir in round_dirs:
        path = join_uri(round_dir, POINTS_FILE)
        if not exists(path):
            continue
        table = read_parquet(path).to_pydict()
        for f, y, x, c in zip(table["frame_id"], table["y"], table["x"], table["label"]):
            points = by_frame.setdefault(f, [])   # a frame with only void points trains on nothing
            if c != ignore_index:
                points.append((y, x, c))
    return [LabelSpec(f, "points", points=tuple(p)) for f, p in sorted(by_frame.items())]
