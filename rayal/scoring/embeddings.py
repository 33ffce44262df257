"""Pooled encoder embeddings for diversity strategies (pure torch)."""
from __future__ import annotations

import torch


def frame_embeddings(features: torch.Tensor) -> torch.Tensor:
    """Deepest encoder map (B, D, h, w) -> (B, D) global average."""
    return features.mean(dim=(2, 3))


def region_embeddings(features: torch.Tensor, region_map: torch.Tensor,
                      num_regions: int) -> torch.Tensor:
    """Area-weighted average of the feature cells each region covers: -> (B, R, D).

    ``region_map`` (B, H, W) is at image resolution; each image pixel votes for
    the feature cell it falls in, so a region gets the mean feature over its own
    pixels without upsampling the feature map. Absent regions get zeros.
    """
    batch, dim, fh, fw = features.shape
    height, width = region_map.shape[-2:]
    rows = torch.div(torch.arange(height, device=features.device) * fh, height, rounding_mode="floor")
    cols = torch.div(torch.arange(width, device=features.device) * fw, width, rounding_mode="floor")
    cell = (rows.view(-1, 1) * fw + cols.view(1, -1)).view(1, height, width)
    cells = fh * fw
    offsets = torch.arange(batch, device=features.device).view(batch, 1, 1)
    flat = ((offsets * num_regions + region_map.long()) * cells + cell).flatten()
    weights = torch.bincount(flat, minlength=batch * num_regions * cells)
    weights = weights.view(batch, num_regions, cells).to(features.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1)
    return torch.bmm(weights, features.flatten(2).transpose(1, 2))  # (B, R, D)
