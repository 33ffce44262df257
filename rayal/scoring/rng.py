"""Counter-based dropout masks: reproducible, order-free, identical on CPU kernel and torch.

A mask bit is a pure function of ``(frame seed, sample t, element index)``, so a
frame gets the same MC-dropout masks whichever batch, actor or device scores it,
and the fused CPU kernel, the torch path and "T full passes" all see the same
masks. Elements are indexed channel-last (``(h * W + w) * C + c``); one 64-bit
hash (splitmix64's finaliser) of ``base + index // 4`` yields four 16-bit
uniforms, so the drop probability is quantised to 1/65536 (0.2 -> 0.199997).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

GOLDEN64 = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
LANES = 4  # 16-bit uniforms per 64-bit hash


def _signed(v: int) -> int:
    """A uint64 constant as the int64 torch stores (two's complement)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def frame_seed(seed: int, frame_id: str) -> int:
    """A 32-bit seed from the run seed and the frame's stable id."""
    digest = hashlib.blake2b(f"{seed}:{frame_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def frame_seeds(seed: int, frame_ids: list[str]) -> np.ndarray:
    """(B,) uint64 seeds for a batch of frame ids."""
    return np.array([frame_seed(seed, f) for f in frame_ids], dtype=np.uint64)


def drop_threshold(p: float) -> int:
    """Elements whose 16-bit uniform is below this are dropped: P(drop) = thr / 65536."""
    return int(round(p * 65536))


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 holding uint64 bits."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64_torch(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrap-around arithmetic = uint64 bits)."""
    x = (x ^ _shr(x, 30)) * _signed(MIX1)
    x = (x ^ _shr(x, 27)) * _signed(MIX2)
    return x ^ _shr(x, 31)


def sample_bases(seeds: np.ndarray | torch.Tensor, num_samples: int) -> torch.Tensor:
    """Per (frame, sample) stream bases: (B,) seeds -> (B, T) int64 (uint64 bits)."""
    s = torch.as_tensor(np.asarray(seeds, dtype=np.int64)).view(-1, 1)
    t = torch.arange(num_samples, dtype=torch.int64).view(1, -1)
    return mix64_torch(s * _signed(GOLDEN64) + t)


def keep_mask(seeds: np.ndarray | torch.Tensor, t: int, shape: tuple[int, ...], p: float,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean keep mask (B, C, H, W) of MC sample ``t`` for ``shape`` = (C, H, W)."""
    channels, height, width = shape
    base = sample_bases(seeds, t + 1)[:, t].to(device).view(-1, 1, 1, 1)
    pixel = torch.arange(height * width, dtype=torch.int64, device=device).view(1, height, width)
    idx = pixel * channels + torch.arange(channels, device=device).view(channels, 1, 1)
    bits = mix64_torch(base + (idx // LANES).unsqueeze(0))
    # bits k..k+15 survive an arithmetic shift unchanged for k <= 48
    uniform = (bits >> (16 * (idx % LANES))) & 0xFFFF
    return uniform >= drop_threshold(p)


def apply_dropout(x: torch.Tensor, seeds: np.ndarray, t: int, p: float) -> torch.Tensor:
    """Inverted dropout of sample ``t`` on (B, ...) with the counter-based mask."""
    keep = keep_mask(seeds, t, tuple(x.shape[1:]), p, device=x.device)
    return torch.where(keep, x / (1.0 - p), torch.zeros((), dtype=x.dtype, device=x.device))
