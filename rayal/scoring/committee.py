"""Committee scoring: K models' outputs stacked on the MC axis (query by committee).

Suggestive Annotation (Yang et al. 2017, Sec. 3.2) measures uncertainty as the disagreement of
four FCNs trained on bootstrap samples; CEREALS uses vote entropy over a committee. Here each
member's softmax output is one "sample" of the MC axis, so every MC statistic of
:mod:`rayal.scoring.fused` (BALD, vote entropy, variance, Area Disagreement, and the mean
prediction for entropy / margin / least confidence / OVR) applies unchanged (DESIGN.md,
"Committee"). With ``mc_samples`` T > 0 each member also draws T dropout samples: K x T samples.

Point estimate: ``deterministic`` = the mean of the members' plain (dropout-free) softmaxes;
``mc_mean`` = the mean over all K x T samples (identical when T = 0). Member k draws its
dropout masks from ``member_seeds[k]`` (:mod:`rayal.scoring.rng`), so a committee of one with
its member's seed scores exactly as :class:`~rayal.scoring.engine.MCDropoutScorer`.

Ray-free, like the rest of :mod:`rayal.scoring`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rayal.scoring.engine import MCDropoutScorer, PixelScores, finish_scores, scale_input, torch_mc_stats
from rayal.scoring.fused import fused_mc_stats
from rayal.scoring.rng import apply_dropout, frame_seeds

_EPS = 1e-12


class CommitteeScorer:
    """Turn a batch of images into :class:`PixelScores` with K models.

    models: K objects with ``encode`` / ``decode`` / ``classify`` (see
    :class:`rayal.models.SegmentationNet`), all on one device. member_seeds: K dropout seeds
    (default ``seed`` for every member). Embeddings (``want_features``) come from member 0.
    Raises ValueError for an empty committee, a seed count that differs from K or an unknown
    dropout position.
    """

    def __init__(self, models: Sequence, *, mc_samples: int = 0, dropout_p: float = 0.2,
                 position: str = "logits", point_estimate: str = "deterministic",
                 dice: str = "macro", want_ovr: bool = False, want_features: bool = False,
                 scale: float = 1.0, seed: int = 0, member_seeds: Sequence[int] | None = None,
                 use_fused: bool | None = None):
        if not models:
            raise ValueError("a committee needs at least one member model")
        if position not in ("logits", "head_input"):
            raise ValueError(f"dropout position must be 'logits' or 'head_input', got {position!r}")
        member_seeds = list(member_seeds) if member_seeds is not None else [seed] * len(models)
        if len(member_seeds) != len(models):
            raise ValueError(f"{len(member_seeds)} member seeds for {len(models)} committee members")
        self.models, self.member_seeds = list(models), member_seeds
        self.mc_samples, self.dropout_p, self.position = mc_samples, dropout_p, position
        self.point_from_mean = point_estimate == "mc_mean"
        self.dice, self.want_ovr, self.want_features = dice, want_ovr, want_features
        self.scale, self.use_fused = scale, use_fused

    @property
    def num_samples(self) -> int:
        """Samples on the MC axis: K x T, or K without dropout."""
        return len(self.models) * max(self.mc_samples, 1)

    def _member_logits(self, model, images: torch.Tensor, member_seed: int, frame_ids: list[str]
                       ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(samples (T or 1, B, C, H, W), plain logits (B, C, H, W), encoder features)."""
        features, size = model.encode(images)
        decoded = model.decode(features)
        plain = model.classify(decoded, size).float()
        if self.mc_samples == 0:
            return plain[None], plain, features
        seeds = frame_seeds(member_seed, frame_ids)
        if self.position == "logits":
            samples = torch.stack([apply_dropout(plain, seeds, t, self.dropout_p)
                                   for t in range(self.mc_samples)])
        else:
            dropped = torch.cat([apply_dropout(decoded, seeds, t, self.dropout_p)
                                 for t in range(self.mc_samples)])
            samples = model.classify(dropped, size).float()
            samples = samples.view(self.mc_samples, plain.shape[0], *samples.shape[1:])
        return samples, plain, features

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, frame_ids: list[str]) -> PixelScores:
        """images: (B, 3, H, W) float in [0, 1] on the members' device."""
        full_size, images = tuple(images.shape[-2:]), scale_input(images, self.scale)
        samples, mean_p, lead_features = [], None, None
        for k, (model, member_seed) in enumerate(zip(self.models, self.member_seeds)):
            z, plain, features = self._member_logits(model, images, member_seed, list(frame_ids))
            samples.append(z)
            p = torch.softmax(plain, dim=1)
            mean_p = p if mean_p is None else mean_p + p
            if k == 0:
                lead_features = features
        zt = torch.cat(samples)                      # (S, B, C, H, W) logits
        mean_p = mean_p / len(self.models)           # members' plain mean prediction
        stats = self.stats(zt, mean_p)
        scores = MCDropoutScorer._package(stats, images.device)
        return finish_scores(scores, lead_features, full_size, self.scale, self.want_features)

    def stats(self, zt: torch.Tensor, mean_p: torch.Tensor) -> dict:
        """Statistics of stacked sample logits ``zt`` (S, B, C, H, W) with ``mean_p`` (B, C, H, W)
        the point estimate unless ``mc_mean``: the fused kernel on CPU, torch on CUDA."""
        fused = zt.device.type == "cpu" if self.use_fused is None else self.use_fused
        if fused:
            # softmax(log p) = p for a distribution p: the kernel's "deterministic logits"
            z_point = torch.log(mean_p.clamp_min(_EPS))
            bases = np.zeros((zt.shape[1], zt.shape[0]), np.uint64)
            return fused_mc_stats(zt.cpu().numpy(), z_point.cpu().numpy(), bases,
                                  num_samples=zt.shape[0], dropout_p=None,
                                  point_from_mean=self.point_from_mean, want_ovr=self.want_ovr,
                                  dice=self.dice)
        probs = torch.softmax(zt, dim=2)
        point = probs.mean(0) if self.point_from_mean else mean_p
        return torch_mc_stats(probs, point, self.dice, self.want_ovr)


__all__ = ["CommitteeScorer"]
