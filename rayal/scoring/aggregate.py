"""Pixel maps -> frame / region scores (pure torch).

Region maps are int (B, H, W) with ids 0..R_b-1 per frame (every pixel covered
once). Frame b's region r is flattened to ``b * R + r`` with ``R = max_b R_b``,
so one ``bincount`` / ``scatter_reduce`` handles the whole batch.
"""
from __future__ import annotations

import torch


def frame_reduce(pixel_map: torch.Tensor, how: str) -> torch.Tensor:
    """(B, H, W) -> (B,) mean or max over pixels."""
    flat = pixel_map.flatten(1)
    if how == "mean":
        return flat.mean(dim=1)
    if how == "max":
        return flat.amax(dim=1)
    raise ValueError(f"aggregate must be 'mean' or 'max', got {how!r}")


def _flat_ids(region_map: torch.Tensor, num_regions: int) -> torch.Tensor:
    batch = region_map.shape[0]
    offsets = torch.arange(batch, device=region_map.device).view(batch, 1, 1) * num_regions
    return (region_map.long() + offsets).flatten()


def region_pixel_counts(region_map: torch.Tensor, num_regions: int) -> torch.Tensor:
    """(B, H, W) region ids -> (B, R) pixel count per region (0 where a frame has fewer)."""
    flat = _flat_ids(region_map, num_regions)
    counts = torch.bincount(flat, minlength=region_map.shape[0] * num_regions)
    return counts.view(region_map.shape[0], num_regions)


def region_reduce(pixel_map: torch.Tensor, region_map: torch.Tensor, num_regions: int,
                  how: str) -> torch.Tensor:
    """(B, H, W) pixel map -> (B, R) mean or max per region; NaN for absent regions."""
    batch = pixel_map.shape[0]
    flat = _flat_ids(region_map, num_regions)
    values = pixel_map.flatten().to(torch.float64 if how == "mean" else pixel_map.dtype)
    size = batch * num_regions
    counts = torch.bincount(flat, minlength=size)
    if how == "mean":
        sums = torch.bincount(flat, weights=values, minlength=size)
        out = (sums / counts.clamp_min(1)).to(pixel_map.dtype)
    elif how == "max":
        out = torch.full((size,), float("-inf"), dtype=pixel_map.dtype, device=pixel_map.device)
        out = out.scatter_reduce(0, flat, values, reduce="amax", include_self=True)
    else:
        raise ValueError(f"aggregate must be 'mean' or 'max', got {how!r}")
    out = torch.where(counts > 0, out, torch.full_like(out, float("nan")))
    return out.view(batch, num_regions)


def region_classwise_max(class_map: torch.Tensor, region_map: torch.Tensor,
                         num_regions: int) -> torch.Tensor:
    """(B, C, H, W) per-class pixel map -> (B, R, C) max per region and class (NaN if absent)."""
    batch, classes = class_map.shape[:2]
    flat = _flat_ids(region_map, num_regions)  # (B*H*W,)
    values = class_map.permute(0, 2, 3, 1).reshape(-1, classes)  # (B*H*W, C)
    out = torch.full((batch * num_regions, classes), float("-inf"), dtype=class_map.dtype,
                     device=class_map.device)
    index = flat.view(-1, 1).expand(-1, classes)
    out = out.scatter_reduce(0, index, values, reduce="amax", include_self=True)
    out = torch.where(torch.isinf(out), torch.full_like(out, float("nan")), out)
    return out.view(batch, num_regions, classes)


def region_class_histogram(labels: torch.Tensor, region_map: torch.Tensor, num_regions: int,
                           num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, R, C) pixel counts of each class in each region."""
    batch = labels.shape[0]
    flat = _flat_ids(region_map, num_regions) * num_classes + labels.flatten().long()
    hist = torch.bincount(flat, minlength=batch * num_regions * num_classes)
    return hist.view(batch, num_regions, num_classes)


def region_dominant_class(labels: torch.Tensor, region_map: torch.Tensor, num_regions: int,
                          num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, R) most frequent class per region (ties -> lowest id; -1 absent)."""
    hist = region_class_histogram(labels, region_map, num_regions, num_classes)
    dominant = hist.argmax(dim=-1)
    return torch.where(hist.sum(-1) > 0, dominant, torch.full_like(dominant, -1))


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, C) pixel counts."""
    batch = labels.shape[0]
    offsets = torch.arange(batch, device=labels.device).view(batch, 1, 1) * num_classes
    flat = (labels.long() + offsets).flatten()
    return torch.bincount(flat, minlength=batch * num_classes).view(batch, num_classes)
