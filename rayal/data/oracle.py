"""The simulated annotator's cost model: estimated clicks per annotated unit.

Labels themselves come from the ground truth through the pool's ingest path
(:func:`rayal.pool.labels.label_summaries`); this module only prices them:
- a superpixel labelled with its dominant class, or a single pixel: 1 click;
- a whole image or a patch: the vertices of the polygons an annotator would draw, i.e. for
  every connected class component inside the unit the vertex count of its outline simplified
  to ``tolerance`` pixels (skimage ``approximate_polygon``), at least 3 per component.
"""
from __future__ import annotations

import numpy as np
from skimage.measure import approximate_polygon, find_contours, label


def polygon_clicks(mask: np.ndarray, ignore_index: int, tolerance: float = 2.0) -> int:
    """Estimated clicks to draw every class component of a (H, W) mask as polygons."""
    clicks = 0
    for cls in np.unique(mask):
        if cls == ignore_index:
            continue
        components = label(mask == cls, connectivity=1)
        for comp in range(1, int(components.max()) + 1):
            padded = np.pad(components == comp, 1)
            contours = find_contours(padded.astype(np.float32), 0.5)
            outline = max(contours, key=len)
            clicks += max(3, len(approximate_polygon(outline, tolerance)) - 1)
    return clicks


def unit_clicks(mask: np.ndarray, region_map: np.ndarray | None, region_ids, annotation: str,
                ignore_index: int) -> np.ndarray:
    """Clicks per listed unit of one frame. ``annotation``: ``full`` (polygons) or
    ``dominant`` / ``points`` (one click each)."""
    region_ids = list(region_ids)
    if annotation != "full":
        return np.ones(len(region_ids), np.int64)
    out = np.zeros(len(region_ids), np.int64)
    for i, r in enumerate(region_ids):
        if region_map is None or r < 0:
            out[i] = polygon_clicks(mask, ignore_index)
        else:
            ys, xs = np.nonzero(region_map == r)
            if ys.size == 0:
                continue
            box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            inside = np.where(region_map[box] == r, mask[box], ignore_index)
            out[i] = polygon_clicks(inside, ignore_index)
    return out
