"""Annotation units: grid patches and superpixels as region maps.

A region map is ``np.int32 (H, W)`` with ids ``0 .. R-1``, consecutive, every
pixel in exactly one region. Ids are stable: grids are row-major
(cell ``(i, j)`` -> ``i * cols + j``) and superpixels are numbered in raster
order of their first pixel, so ``(frame_id, region_id)`` is reproducible from
the frame alone.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "grid_regions",
    "slic_regions",
    "seeds_regions",
    "compute_regions",
    "num_regions",
    "relabel_consecutive",
    "region_boxes",
    "region_pixel_counts",
    "region_class_counts",
    "dominant_class",
]


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    return image


def _check_region_map(region_map: np.ndarray) -> np.ndarray:
    region_map = np.asarray(region_map)
    if region_map.ndim != 2 or region_map.dtype.kind not in "iu":
        raise ValueError(f"region map must be an integer (H, W) array, got {region_map.dtype} {region_map.shape}")
    if region_map.size and region_map.min() < 0:
        raise ValueError("region map has negative ids")
    return region_map


def grid_regions(height: int, width: int, rows: int, cols: int) -> np.ndarray:
    """Fixed grid of ``rows x cols`` cells over an ``(height, width)`` frame.

    Cell boundaries are ``round(linspace(0, size, n + 1))``, so cells differ by
    at most one pixel (exactly equal when ``size % n == 0``; 4x4 on 360x480 ->
    90x120 cells). Returns int32 (height, width), cell ``(i, j)`` -> ``i*cols + j``.
    """
    height, width, rows, cols = int(height), int(width), int(rows), int(cols)
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if not 1 <= rows <= height:
        raise ValueError(f"rows must be in 1..height ({height}), got {rows}")
    if not 1 <= cols <= width:
        raise ValueError(f"cols must be in 1..width ({width}), got {cols}")
    ys = np.round(np.linspace(0, height, rows + 1)).astype(np.intp)
    xs = np.round(np.linspace(0, width, cols + 1)).astype(np.intp)
    row_of = np.repeat(np.arange(rows, dtype=np.int32), np.diff(ys))
    col_of = np.repeat(np.arange(cols, dtype=np.int32), np.diff(xs))
    return row_of[:, None] * np.int32(cols) + col_of[None, :]


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Renumber any integer label map to ``0 .. R-1`` in raster order of first appearance (int32)."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int32)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size, dtype=np.int32)
    return rank[inverse.ravel()].reshape(labels.shape)


def slic_regions(image: np.ndarray, n_segments: int = 100, compactness: float = 10.0, sigma: float = 1.0) -> np.ndarray:
    """SLIC superpixels (scikit-image) of a uint8 (H, W, 3) image -> int32 (H, W) region map.

    Deterministic (SLIC has no random initialisation). Connectivity is
    enforced, then ids are renumbered consecutively in raster order.
    """
    from skimage.segmentation import slic

    image = _check_image(image)
    if int(n_segments) < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    labels = slic(
        image,
        n_segments=int(n_segments),
        compactness=float(compactness),
        sigma=float(sigma),
        start_label=0,
        channel_axis=-1,
        enforce_connectivity=True,
    )
    return relabel_consecutive(labels)


def seeds_regions(image: np.ndarray, n_segments: int = 100, levels: int = 4, iterations: int = 4) -> np.ndarray:
    """SEEDS superpixels (OpenCV contrib) of a uint8 (H, W, 3) image -> int32 (H, W) region map.

    Needs ``cv2.ximgproc`` (``pip install rayal[seeds]``). The image is
    converted to HSV as in OpenCV's SEEDS sample; ids are renumbered
    consecutively in raster order.
    """
    try:
        import cv2
        import cv2.ximgproc  # noqa: F401  (contrib module)
    except ImportError:
        raise ImportError("SEEDS superpixels need opencv-contrib-python-headless (pip install rayal[seeds])") from None
    image = _check_image(image)
    if int(n_segments) < 1 or int(levels) < 1 or int(iterations) < 1:
        raise ValueError(f"n_segments, levels and iterations must be >= 1, got {n_segments}, {levels}, {iterations}")
    h, w = image.shape[:2]
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    seeds = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, int(n_segments), int(levels))
    seeds.iterate(hsv, int(iterations))
    return relabel_consecutive(seeds.getLabels())


def compute_regions(image: np.ndarray, unit: str, **params) -> np.ndarray:
    """Region map for an annotation ``unit`` of a uint8 (H, W, 3) image.

    * ``"image"``: one region (all zeros).
    * ``"patch"`` / ``"grid"``: :func:`grid_regions`, params ``rows`` and ``cols`` (default 4, 4).
    * ``"superpixel"``: ``method="slic"`` (default, :func:`slic_regions`) or
      ``"seeds"`` (:func:`seeds_regions`); other params go to that function.
    """
    image = _check_image(image)
    h, w = image.shape[:2]
    if unit == "image":
        if params:
            raise TypeError(f"unit 'image' takes no parameters, got {sorted(params)}")
        return np.zeros((h, w), np.int32)
    if unit in ("patch", "grid"):
        rows, cols = params.pop("rows", 4), params.pop("cols", 4)
        if params:
            raise TypeError(f"unit '{unit}' takes rows and cols, got unknown {sorted(params)}")
        return grid_regions(h, w, rows, cols)
    if unit == "superpixel":
        method = params.pop("method", "slic")
        if method == "slic":
            return slic_regions(image, **params)
        if method == "seeds":
            return seeds_regions(image, **params)
        raise ValueError(f"unknown superpixel method {method!r} (expected 'slic' or 'seeds')")
    raise ValueError(f"unknown annotation unit {unit!r} (expected 'image', 'patch', 'grid' or 'superpixel')")


def unit_region_map(image: np.ndarray, unit: str, scoring) -> np.ndarray:
    """The int32 (H, W) region map of an annotation unit exactly as the score job computes it.

    ``scoring`` is a :class:`rayal.config.ScoringConfig`; the unit's ``region_map`` hook in the
    unit registry (:mod:`rayal.core.units`) computes it: ``image`` is one region, ``patch`` the
    ``scoring.grid`` (:func:`patch_region_map`), ``superpixel`` SLIC/SEEDS with
    ``scoring.superpixel`` (:func:`superpixel_region_map`). Export and label ingest recompute
    maps with this same function.

    Raises:
        ValueError: ``unit`` is not registered.
    """
    from rayal.core.units import get_unit

    return get_unit(unit).compute_region_map(image, scoring)


def patch_region_map(image: np.ndarray, scoring) -> np.ndarray:
    """The ``patch`` unit's map: the ``scoring.grid`` (rows, cols) of ``image`` (H, W, 3)."""
    rows, cols = scoring.grid
    return compute_regions(image, "patch", rows=rows, cols=cols)


def superpixel_region_map(image: np.ndarray, scoring) -> np.ndarray:
    """The ``superpixel`` unit's map: SLIC / SEEDS with ``scoring.superpixel``; with
    ``scoring.region_cache`` set, computed once per frame and setting
    (:mod:`rayal.data.region_cache`)."""
    sp = scoring.superpixel
    params = dict(method=sp.method, n_segments=sp.n_segments, compactness=sp.compactness)
    compute = lambda: compute_regions(image, "superpixel", **params)  # noqa: E731
    cache = getattr(scoring, "region_cache", None)
    if not cache:
        return compute()
    from rayal.data.region_cache import cached_superpixels

    return cached_superpixels(image, params, cache, compute)


def num_regions(region_map: np.ndarray) -> int:
    """Number of regions R of a consecutive region map (``max + 1``; 0 if empty)."""
    region_map = np.asarray(region_map)
    return int(region_map.max()) + 1 if region_map.size else 0


def region_boxes(region_map: np.ndarray) -> np.ndarray:
    """Bounding boxes, int32 (R, 4) rows ``(y0, x0, y1, x1)``; y1, x1 exclusive (slice bounds).

    Regions with no pixels (non-consecutive maps) get ``(0, 0, 0, 0)``.
    """
    region_map = _check_region_map(region_map)
    h, w = region_map.shape
    r = num_regions(region_map)
    ids = region_map.ravel()
    ys = np.repeat(np.arange(h, dtype=np.int32), w)
    xs = np.tile(np.arange(w, dtype=np.int32), h)
    boxes = np.empty((r, 4), np.int32)
    boxes[:, 0:2] = np.iinfo(np.int32).max
    boxes[:, 2:4] = -1
    np.minimum.at(boxes[:, 0], ids, ys)
    np.minimum.at(boxes[:, 1], ids, xs)
    np.maximum.at(boxes[:, 2], ids, ys)
    np.maximum.at(boxes[:, 3], ids, xs)
    boxes[:, 2:4] += 1
    empty = boxes[:, 2] == 0
    boxes[empty] = 0
    return boxes


def region_pixel_counts(region_map: np.ndarray) -> np.ndarray:
    """Pixels per region, int64 (R,)."""
    region_map = _check_region_map(region_map)
    return np.bincount(region_map.ravel(), minlength=num_regions(region_map))


def region_class_counts(region_map: np.ndarray, mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel counts per (region, class), int64 (R, num_classes); ids outside 0..C-1 (void) are not counted."""
    region_map = _check_region_map(region_map)
    mask = np.asarray(mask)
    if mask.shape != region_map.shape:
        raise ValueError(f"mask shape {mask.shape} does not match region map shape {region_map.shape}")
    r, c = num_regions(region_map), int(num_classes)
    ids, lab = region_map.ravel().astype(np.int64), mask.ravel().astype(np.int64)
    valid = (lab >= 0) & (lab < c)
    return np.bincount(ids[valid] * c + lab[valid], minlength=r * c).reshape(r, c)


def dominant_class(region_map: np.ndarray, mask: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Most frequent valid class per region, int32 (R,); ``ignore_index`` where a region is all void.

    Ties go to the lowest class id. This is the one-click label of a superpixel.
    """
    counts = region_class_counts(region_map, mask, num_classes)
    out = counts.argmax(axis=1).astype(np.int32)
    out[counts.sum(axis=1) == 0] = ignore_index
    return out
