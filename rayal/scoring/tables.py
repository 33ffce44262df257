"""PixelScores + region maps -> compact columnar score tables (numpy, no pixel maps).

``frames``: one row per frame: ``{measure}_{agg}`` for each pixel measure,
``area_disagreement``, ``maturity_score_{agg}`` (multi-head mode), predicted-class pixel
histogram.
``regions``: one row per kept (frame, unit, region): pixel count, ``{measure}_{agg}``,
``maturity_score`` (multi-head mode: region mean of the MADBAL pixel score u, which the
``madbal`` strategy ranks by), per-class one-vs-rest entropy max, dominant predicted class. Only the union of
each frame's top-k regions of every score key is kept, so a million-frame pool
stays a few hundred bytes per frame and unit.
``embeddings``: pooled deepest encoder features per frame and per kept region.
Every column is a numpy array whose first axis is the row.
"""
from __future__ import annotations

import numpy as np
import torch

from rayal.core.measures import get_measure
from rayal.core.tables import score_column
from rayal.scoring.aggregate import RegionIndex, class_histogram, frame_reduce
from rayal.scoring.embeddings import frame_embeddings, region_embeddings
from rayal.scoring.engine import PixelScores
from rayal.scoring.maturity import MATURITY


def frame_columns(scores: PixelScores, measures: list[str], aggregate: list[str],
                  num_classes: int) -> dict[str, np.ndarray]:
    """(B,)-long columns of frame scores plus ``pred_hist`` (B, C) pixel counts."""
    cols: dict[str, np.ndarray] = {}
    for name in measures:
        if name in scores.frame:
            cols[name] = scores.frame[name].cpu().numpy().astype(np.float32)
        elif name in scores.maps:
            for how in _aggregations(name, aggregate):
                cols[score_column(name, how)] = frame_reduce(scores.maps[name], how).cpu().numpy()
    if MATURITY in scores.maps:  # multi-head mode: not a configurable measure, always kept
        for how in aggregate:
            cols[f"{MATURITY}_{how}"] = frame_reduce(scores.maps[MATURITY], how).cpu().numpy()
    cols["pred_hist"] = class_histogram(scores.pred, num_classes).cpu().numpy().astype(np.int32)
    return cols


def _aggregations(measure: str, aggregate: list[str]) -> list[str]:
    """The configured aggregates the measure supports (measure registry)."""
    supported = get_measure(measure).aggregations
    return [how for how in aggregate if how in supported]


RANK_MANTISSA_BITS = 16   # region scores are ranked at ~1.5e-5 relative precision


def rank_precision(values: torch.Tensor) -> torch.Tensor:
    """values rounded to ``RANK_MANTISSA_BITS`` significant bits (same shape; inf and 0 kept).

    The same frame scored in another batch (a resumed job, another batch size, another device)
    differs in the last float bits; regions whose scores tie up to that noise (flat image areas
    give equal scores) then round to the same value and rank by region id. Not a guarantee: a
    score within float noise of a rounding boundary can still round either way (with noise of
    ~1e-7 relative, about one near-tie in a hundred)."""
    mantissa, exponent = torch.frexp(values)
    scale = float(2 ** RANK_MANTISSA_BITS)
    return torch.ldexp(torch.round(mantissa * scale) / scale, exponent)


def top_k_union(keys: torch.Tensor, exists: torch.Tensor, k: int | None) -> torch.Tensor:
    """keys (B, R, K) scores -> (B, R) bool: region is in its frame's top-k for any key.

    Keys are compared at :func:`rank_precision`; ties go to the lowest region id, so the kept
    set of a frame rarely depends on float noise from the batch it was scored in."""
    if k is None or k >= keys.shape[1]:
        return exists
    ranked = torch.nan_to_num(keys.float(), nan=float("-inf"), posinf=float("inf"))
    ranked = rank_precision(ranked).masked_fill(~exists[..., None], float("-inf"))
    top = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :k]  # (B, k, K)
    keep = torch.zeros_like(exists)
    batch = torch.arange(keys.shape[0], device=keys.device).view(-1, 1, 1).expand_as(top)
    keep[batch.flatten(), top.flatten()] = True
    return keep & exists


def region_columns(scores: PixelScores, region_map: torch.Tensor, unit: str,
                   measures: list[str], aggregate: list[str], num_classes: int,
                   top_k: int | None, want_embeddings: bool) -> dict[str, np.ndarray]:
    """Rows for the kept regions of one unit kind; ``frame_index`` says which batch frame."""
    num_regions = int(region_map.amax().item()) + 1
    index = RegionIndex(region_map, num_regions)
    counts = index.counts
    exists = counts > 0
    score_cols: dict[str, torch.Tensor] = {}
    for name in measures:
        if name in scores.maps:
            for how in _aggregations(name, aggregate):
                score_cols[score_column(name, how)] = index.reduce(scores.maps[name], how)
    if MATURITY in scores.maps:  # MADBAL's superpixel u: the region mean of the pixel score
        score_cols[MATURITY] = index.reduce(scores.maps[MATURITY], "mean")
    keys = list(score_cols.values())
    ovr_max = None
    if scores.ovr is not None:
        ovr_max = index.classwise_max(scores.ovr)  # (B, R, C)
        keys.extend(ovr_max.unbind(-1))
    stacked = torch.stack(keys, dim=-1) if keys else counts[..., None].float()
    keep = top_k_union(stacked, exists, top_k)
    frame_index, region_id = keep.nonzero(as_tuple=True)
    cols: dict[str, np.ndarray] = {
        "frame_index": frame_index.cpu().numpy().astype(np.int64),
        "region_id": region_id.cpu().numpy().astype(np.int32),
        "unit": np.full(len(frame_index), unit),
        "pixel_count": counts[keep].cpu().numpy().astype(np.int32),
    }
    for name, values in score_cols.items():
        cols[name] = values[keep].cpu().numpy().astype(np.float32)
    if ovr_max is not None:
        cols["ovr_max"] = ovr_max[keep].cpu().numpy().astype(np.float32)  # (n, C)
    dominant = index.dominant_class(scores.pred, num_classes)
    cols["dominant_pred"] = dominant[keep].cpu().numpy().astype(np.int16)
    if want_embeddings and scores.features is not None:
        emb = region_embeddings(scores.features.float(), region_map, num_regions)
        cols["embedding"] = emb[keep].cpu().numpy()
    return cols


def frame_embedding_rows(scores: PixelScores) -> np.ndarray:
    """(B, D) frame embeddings (deepest encoder map, global average)."""
    if scores.features is None:
        raise ValueError("frame embeddings need PixelScores.features (want_features=True)")
    return frame_embeddings(scores.features.float()).cpu().numpy()
