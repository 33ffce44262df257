"""Pixel-level uncertainty measures (pure torch, natural log).

Conventions: ``p`` is a softmax output (B, C, H, W); MC samples are
(T, B, C, H, W). Probabilities are clamped to [1e-12, 1] before any log.
These are the reference definitions; :mod:`rayal.scoring.fused` computes the
same quantities in one fused pass and is tested against them.
"""
from __future__ import annotations

from typing import Literal

import torch

EPS = 1e-12


def _log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp(EPS, 1.0))


def _check(p: torch.Tensor, ndim: int, name: str) -> None:
    if p.ndim != ndim:
        shape = "(B, C, H, W)" if ndim == 4 else "(T, B, C, H, W)"
        raise ValueError(f"{name} expects probabilities {shape}, got shape {tuple(p.shape)}")


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-sum_c p log p``: (B, C, H, W) -> (B, H, W), in nats."""
    _check(p, 4, "entropy")
    return -(p * _log(p)).sum(dim=1)


def margin(p: torch.Tensor) -> torch.Tensor:
    """``1 - (p1 - p2)`` with p1 >= p2 the two largest class probabilities: (B, H, W)."""
    _check(p, 4, "margin")
    top2 = p.topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def least_confidence(p: torch.Tensor) -> torch.Tensor:
    """``1 - max_c p``: (B, C, H, W) -> (B, H, W)."""
    _check(p, 4, "least_confidence")
    return 1.0 - p.amax(dim=1)


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """Mutual information ``H(mean_t p_t) - mean_t H(p_t)``: (T, B, C, H, W) -> (B, H, W)."""
    _check(mc_probs, 5, "bald")
    mean_entropy = -(mc_probs * _log(mc_probs)).sum(dim=2).mean(dim=0)
    return entropy(mc_probs.mean(dim=0)) - mean_entropy


def _votes(mc_probs: torch.Tensor) -> torch.Tensor:
    """Argmax vote counts per class: (T, B, C, H, W) -> (B, C, H, W) float."""
    num_classes = mc_probs.shape[2]
    winners = mc_probs.argmax(dim=2)  # (T, B, H, W)
    onehot = torch.nn.functional.one_hot(winners, num_classes)  # (T, B, H, W, C)
    return onehot.sum(dim=0).permute(0, 3, 1, 2).to(mc_probs.dtype)


def vote_entropy(mc_probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the argmax vote shares over the T samples: (T, B, C, H, W) -> (B, H, W)."""
    _check(mc_probs, 5, "vote_entropy")
    shares = _votes(mc_probs) / mc_probs.shape[0]
    return entropy(shares)


def variance(mc_probs: torch.Tensor) -> torch.Tensor:
    """``mean_c var_t p_t`` (population variance over samples): (T, B, C, H, W) -> (B, H, W)."""
    _check(mc_probs, 5, "variance")
    return mc_probs.var(dim=0, unbiased=False).mean(dim=1)


def dice_per_class(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Dice of two one-hot maps (..., C, H, W) -> (dice (..., C), present (..., C))."""
    inter = (a * b).sum(dim=(-2, -1))
    total = a.sum(dim=(-2, -1)) + b.sum(dim=(-2, -1))
    present = total > 0
    dice = torch.where(present, 2.0 * inter / total.clamp_min(1), torch.zeros_like(total))
    return dice, present


def area_disagreement(mc_probs: torch.Tensor,
                      dice: Literal["macro", "joint"] = "macro") -> torch.Tensor:
    """Area Disagreement ``1 - mean_t Dice(onehot(argmax p_t), f_agg)``: (T, B, C, H, W) -> (B,).

    ``f_agg`` is the one-hot argmax of ``mean_t p_t``. ``macro`` averages Dice over
    the classes present in either map; ``joint`` pools all classes (for one-hot
    maps this is the pixel agreement rate).
    """
    _check(mc_probs, 5, "area_disagreement")
    num_classes = mc_probs.shape[2]
    agg = torch.nn.functional.one_hot(mc_probs.mean(0).argmax(1), num_classes)
    agg = agg.permute(0, 3, 1, 2).to(mc_probs.dtype)  # (B, C, H, W)
    samples = torch.nn.functional.one_hot(mc_probs.argmax(2), num_classes)
    samples = samples.permute(0, 1, 4, 2, 3).to(mc_probs.dtype)  # (T, B, C, H, W)
    if dice == "macro":
        per_class, present = dice_per_class(samples, agg.unsqueeze(0))  # (T, B, C)
        scores = (per_class * present).sum(-1) / present.sum(-1).clamp_min(1)
    elif dice == "joint":
        inter = (samples * agg.unsqueeze(0)).sum(dim=(2, 3, 4))
        total = samples.sum(dim=(2, 3, 4)) + agg.sum(dim=(1, 2, 3)).unsqueeze(0)
        scores = 2.0 * inter / total
    else:
        raise ValueError(f"dice must be 'macro' or 'joint', got {dice!r}")
    return 1.0 - scores.mean(dim=0)


def ovr_entropy(p: torch.Tensor) -> torch.Tensor:
    """One-vs-rest binary entropy per class ``-p log p - (1-p) log(1-p)``: (B, C, H, W) -> same."""
    _check(p, 4, "ovr_entropy")
    q = 1.0 - p
    return -(p * _log(p) + q * _log(q))
