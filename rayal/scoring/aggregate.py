"""Pixel maps -> frame / region scores (pure torch).

Region maps are int (B, H, W) with ids 0..R_b-1 per frame (every pixel covered
once). Frame b's region r is flattened to ``b * R + r`` with ``R = max_b R_b``,
so one ``bincount`` / ``scatter_reduce`` handles the whole batch; a
:class:`RegionIndex` does that flattening once for all of a batch's reductions.
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


class RegionIndex:
    """A batch's region maps flattened once, shared by every reduction of that batch.

    region_map: (B, H, W) int ids 0..R_b-1; ``num_regions`` R = max_b R_b.
    ``flat`` (B*H*W,) is ``b * R + region``; ``counts`` (B, R) pixels per region.
    """

    def __init__(self, region_map: torch.Tensor, num_regions: int):
        self.batch = region_map.shape[0]
        self.num_regions = num_regions
        offsets = torch.arange(self.batch, device=region_map.device).view(-1, 1, 1) * num_regions
        self.flat = (region_map.long() + offsets).flatten()
        size = self.batch * num_regions
        self.counts = torch.bincount(self.flat, minlength=size).view(self.batch, num_regions)

    def reduce(self, pixel_map: torch.Tensor, how: str) -> torch.Tensor:
        """(B, H, W) pixel map -> (B, R) mean or max per region; NaN for absent regions."""
        size = self.batch * self.num_regions
        counts = self.counts.flatten()
        if how == "mean":
            sums = torch.bincount(self.flat, weights=pixel_map.flatten().double(), minlength=size)
            out = (sums / counts.clamp_min(1)).to(pixel_map.dtype)
        elif how == "max":
            out = torch.full((size,), float("-inf"), dtype=pixel_map.dtype, device=pixel_map.device)
            out = out.scatter_reduce(0, self.flat, pixel_map.flatten(), reduce="amax",
                                     include_self=True)
        else:
            raise ValueError(f"aggregate must be 'mean' or 'max', got {how!r}")
        out = torch.where(counts > 0, out, torch.full_like(out, float("nan")))
        return out.view(self.batch, self.num_regions)

    def classwise_max(self, class_map: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) per-class pixel map -> (B, R, C) max per region and class (NaN if absent)."""
        classes = class_map.shape[1]
        values = class_map.permute(0, 2, 3, 1).reshape(-1, classes)  # (B*H*W, C)
        out = torch.full((self.batch * self.num_regions, classes), float("-inf"),
                         dtype=class_map.dtype, device=class_map.device)
        index = self.flat.view(-1, 1).expand(-1, classes)
        out = out.scatter_reduce(0, index, values, reduce="amax", include_self=True)
        out = torch.where(torch.isinf(out), torch.full_like(out, float("nan")), out)
        return out.view(self.batch, self.num_regions, classes)

    def class_histogram(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """(B, H, W) class ids -> (B, R, C) pixel counts of each class in each region."""
        flat = self.flat * num_classes + labels.flatten().long()
        hist = torch.bincount(flat, minlength=self.batch * self.num_regions * num_classes)
        return hist.view(self.batch, self.num_regions, num_classes)

    def dominant_class(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """(B, H, W) class ids -> (B, R) most frequent class (ties -> lowest id; -1 absent)."""
        hist = self.class_histogram(labels, num_classes)
        dominant = hist.argmax(dim=-1)
        return torch.where(hist.sum(-1) > 0, dominant, torch.full_like(dominant, -1))


def region_pixel_counts(region_map: torch.Tensor, num_regions: int) -> torch.Tensor:
    """(B, H, W) region ids -> (B, R) pixel count per region (0 where a frame has fewer)."""
    return RegionIndex(region_map, num_regions).counts


def region_reduce(pixel_map: torch.Tensor, region_map: torch.Tensor, num_regions: int,
                  how: str) -> torch.Tensor:
    """(B, H, W) pixel map -> (B, R) mean or max per region; NaN for absent regions."""
    return RegionIndex(region_map, num_regions).reduce(pixel_map, how)


def region_classwise_max(class_map: torch.Tensor, region_map: torch.Tensor,
                         num_regions: int) -> torch.Tensor:
    """(B, C, H, W) per-class pixel map -> (B, R, C) max per region and class (NaN if absent)."""
    return RegionIndex(region_map, num_regions).classwise_max(class_map)


def region_class_histogram(labels: torch.Tensor, region_map: torch.Tensor, num_regions: int,
                           num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, R, C) pixel counts of each class in each region."""
    return RegionIndex(region_map, num_regions).class_histogram(labels, num_classes)


def region_dominant_class(labels: torch.Tensor, region_map: torch.Tensor, num_regions: int,
                          num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, R) most frequent class per region (ties -> lowest id; -1 absent)."""
    return RegionIndex(region_map, num_regions).dominant_class(labels, num_classes)


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, C) pixel counts."""
    batch = labels.shape[0]
    offsets = torch.arange(batch, device=labels.device).view(batch, 1, 1) * num_classes
    flat = (labels.long() + offsets).flatten()
    return torch.bincount(flat, minlength=batch * num_classes).view(batch, num_classes)
