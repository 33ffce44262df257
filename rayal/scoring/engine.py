"""MC-dropout scoring engine: the trunk once, only what follows the dropout T times.

The model is any object with ``encode(images) -> (features, size)``,
``decode(features) -> decoder output`` and ``classify(decoder_output, size) ->
logits`` (see :class:`rayal.models.SegmentationNet`); this module does not
import it, so the scoring core stays free of model and Ray code.

Dropout positions (DESIGN.md):
- ``logits``: dropout on the final logits (B, C, H, W); encoder, decoder and head
  run once, and the T samples, their softmax and every statistic are one fused
  pass (numba on CPU, batched torch on CUDA).
- ``head_input``: dropout on the decoder output; the segmentation head runs on
  the T masked copies in one batched call.
Masks come from :mod:`rayal.scoring.rng`, so a frame's scores do not depend on
its batch, actor or device.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rayal.core.measures import get_measure, measure_names
from rayal.scoring import measures as M
from rayal.scoring.fused import MAP_ORDER, ad_from_counts, dropout_copies, fused_mc_stats
from rayal.scoring.rng import apply_dropout, frame_seeds, sample_bases


@dataclass
class PixelScores:
    """Per-pixel results for a batch, at input resolution.

    maps: name -> (B, H, W) float32 for every name in ``MAP_ORDER`` that was computed;
    pred: (B, H, W) int64 predicted class; frame: name -> (B,) frame-only scores
    (``area_disagreement``); ovr: (B, C, H, W) one-vs-rest entropies or None;
    features: deepest encoder map (B, D, h, w) or None.
    """

    maps: dict[str, torch.Tensor]
    pred: torch.Tensor
    frame: dict[str, torch.Tensor] = field(default_factory=dict)
    ovr: torch.Tensor | None = None
    features: torch.Tensor | None = None


def torch_mc_stats(mc_probs: torch.Tensor, point_p: torch.Tensor, dice: str,
                   want_ovr: bool) -> dict[str, torch.Tensor]:
    """The fused kernel's outputs computed with the reference measures (CUDA path and oracle)."""
    out = {
        "entropy": M.entropy(point_p), "margin": M.margin(point_p),
        "least_confidence": M.least_confidence(point_p), "bald": M.bald(mc_probs),
        "vote_entropy": M.vote_entropy(mc_probs), "variance": M.variance(mc_probs),
    }
    out["pred"] = point_p.argmax(dim=1)
    out["ovr"] = M.ovr_entropy(point_p) if want_ovr else None
    out["area_disagreement"] = M.area_disagreement(mc_probs, dice=dice)
    return out


class MCDropoutScorer:
    """Turn a batch of images into :class:`PixelScores`.

    ``mc_samples`` = 0 gives the deterministic measures only. ``use_fused`` None
    picks the numba kernel on CPU and the torch path on CUDA. ``measures``: the configured
    measure names; those of the measure registry that are not built in (a plugin's) are
    computed with their registered ``compute`` function (:func:`registered_measure_stats`).
    """

    def __init__(self, model, *, mc_samples: int = 10, dropout_p: float = 0.2,
                 position: str = "logits", point_estimate: str = "deterministic",
                 dice: str = "macro", want_ovr: bool = False, want_features: bool = False,
                 scale: float = 1.0, seed: int = 0, use_fused: bool | None = None,
                 measures=None):
        if position not in ("logits", "head_input"):
            raise ValueError(f"dropout position must be 'logits' or 'head_input', got {position!r}")
        self.model = model
        self.mc_samples = mc_samples
        self.dropout_p = dropout_p
        self.position = position
        self.point_from_mean = point_estimate == "mc_mean"
        self.dice = dice
        self.want_ovr = want_ovr
        self.want_features = want_features
        self.scale = scale
        self.seed = seed
        self.use_fused = use_fused
        self.extra_measures = [get_measure(m) for m in measures or () if not get_measure(m).native]

    def _fused(self, device: torch.device) -> bool:
        return device.type == "cpu" if self.use_fused is None else self.use_fused

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, frame_ids: list[str]) -> PixelScores:
        """images: (B, 3, H, W) float in [0, 1] on the model's device."""
        full_size, images = tuple(images.shape[-2:]), scale_input(images, self.scale)
        features, size = self.model.encode(images)
        decoded = self.model.decode(features)
        scores = self.score_decoded(decoded, size, frame_ids)
        return finish_scores(scores, features, full_size, self.scale, self.want_features)

    @torch.no_grad()
    def score_decoded(self, decoded: torch.Tensor, size: tuple[int, int], frame_ids: list[str],
                      logits: torch.Tensor | None = None) -> PixelScores:
        """Everything after the decoder: decoder output (B, D, H', W') -> :class:`PixelScores`
        at ``size`` (no ``scale`` resize, no features). ``logits`` (B, C, H, W): the main
        head's deterministic output when the caller already has it (computed here otherwise).
        """
        seeds = frame_seeds(self.seed, list(frame_ids))
        if self.mc_samples > 0 and self.position == "head_input":
            stats = self._head_input_dropout(decoded, size, seeds, logits)
        else:
            logits = self.model.classify(decoded, size) if logits is None else logits
            stats = (self._deterministic(logits) if self.mc_samples == 0
                     else self._logit_dropout(logits, seeds))
        if self.extra_measures:
            stats.update(self._registered(decoded, size, seeds, logits))
        return self._package(stats, decoded.device)

    def _registered(self, decoded: torch.Tensor, size: tuple[int, int], seeds: np.ndarray,
                    logits: torch.Tensor | None) -> dict:
        """Plugin measures (torch): the point estimate and, when one needs them, the T samples
        with this scorer's dropout position and masks."""
        det = (self.model.classify(decoded, size) if logits is None else logits).float()
        mc = None
        if self.mc_samples > 0 and (self.point_from_mean or any(s.needs_mc for s in self.extra_measures)):
            if self.position == "head_input":
                mc = torch.stack([torch.softmax(self.model.classify(
                    apply_dropout(decoded, seeds, t, self.dropout_p), size).float(), dim=1)
                    for t in range(self.mc_samples)])
            else:
                mc = torch.stack([torch.softmax(apply_dropout(det, seeds, t, self.dropout_p), dim=1)
                                  for t in range(self.mc_samples)])
        point = mc.mean(0) if (self.point_from_mean and mc is not None) else torch.softmax(det, dim=1)
        return registered_measure_stats(self.extra_measures, point, mc)

    def _deterministic(self, logits: torch.Tensor) -> dict:
        p = torch.softmax(logits.float(), dim=1)
        return {"entropy": M.entropy(p), "margin": M.margin(p),
                "least_confidence": M.least_confidence(p), "pred": p.argmax(1),
                "ovr": M.ovr_entropy(p) if self.want_ovr else None}

    def _logit_dropout(self, logits: torch.Tensor, seeds: np.ndarray) -> dict:
        logits = logits.float()
        if self._fused(logits.device):
            bases = sample_bases(seeds, self.mc_samples).numpy().view(np.uint64)
            z = logits.cpu().numpy()
            return fused_mc_stats(z[None], z, bases, num_samples=self.mc_samples,
                                  dropout_p=self.dropout_p, point_from_mean=self.point_from_mean,
                                  want_ovr=self.want_ovr, dice=self.dice)
        mc = torch.stack([torch.softmax(apply_dropout(logits, seeds, t, self.dropout_p), dim=1)
                          for t in range(self.mc_samples)])
        return self._torch_stats(mc, logits)

    def _head_input_dropout(self, decoded: torch.Tensor, size: tuple[int, int],
                            seeds: np.ndarray, det_logits: torch.Tensor | None = None) -> dict:
        batch = decoded.shape[0]
        if self._fused(decoded.device):
            bases = sample_bases(seeds, self.mc_samples).numpy().view(np.uint64)
            copies = dropout_copies(decoded.float().cpu().numpy(), bases, self.dropout_p)
            dropped = torch.from_numpy(copies).flatten(0, 1)
        else:
            dropped = torch.cat([apply_dropout(decoded, seeds, t, self.dropout_p)
                                 for t in range(self.mc_samples)])
        sampled = self.model.classify(dropped, size).float()
        sampled = sampled.view(self.mc_samples, batch, *sampled.shape[1:])
        if det_logits is None:
            det_logits = self.model.classify(decoded, size)
        det_logits = det_logits.float()
        if self._fused(decoded.device):
            bases = np.zeros((batch, self.mc_samples), np.uint64)
            return fused_mc_stats(sampled.cpu().numpy(), det_logits.cpu().numpy(), bases,
                                  num_samples=self.mc_samples, dropout_p=None,
                                  point_from_mean=self.point_from_mean, want_ovr=self.want_ovr,
                                  dice=self.dice)
        return self._torch_stats(torch.softmax(sampled, dim=2), det_logits)

    def _torch_stats(self, mc_probs: torch.Tensor, det_logits: torch.Tensor) -> dict:
        point = mc_probs.mean(0) if self.point_from_mean else torch.softmax(det_logits, dim=1)
        return torch_mc_stats(mc_probs, point, self.dice, self.want_ovr)

    @staticmethod
    def _package(stats: dict, device: torch.device) -> PixelScores:
        as_tensor = lambda v: torch.as_tensor(v).to(device)  # noqa: E731
        maps = {name: as_tensor(stats[name]).float()
                for name in MAP_ORDER + measure_names("pixel", native=False) if name in stats}
        frame = {name: as_tensor(stats[name]).float()
                 for name in measure_names("frame") if name in stats}
        ovr = as_tensor(stats["ovr"]) if stats.get("ovr") is not None else None
        return PixelScores(maps=maps, pred=as_tensor(stats["pred"]).long(), frame=frame, ovr=ovr)


def registered_measure_stats(specs, point_p: torch.Tensor, mc_probs: torch.Tensor | None) -> dict:
    """Registered measures computed by their ``compute`` functions: ``point_p`` (B, C, H, W)
    softmax probabilities, ``mc_probs`` (T, B, C, H, W) or None -> name -> (B, H, W) maps
    (pixel measures) or (B,) values (frame measures).

    Raises:
        ValueError: a measure needs MC samples and ``mc_probs`` is None, or returns a bad shape.
    """
    out = {}
    B, _, H, W = point_p.shape
    for spec in specs:
        if spec.needs_mc and mc_probs is None:
            raise ValueError(f"measure {spec.name!r} needs MC samples (scoring.mc_samples >= 2)")
        value = spec.function()(mc_probs if spec.needs_mc else point_p)
        want = (B, H, W) if spec.kind == "pixel" else (B,)
        if tuple(value.shape) != want:
            raise ValueError(f"measure {spec.name!r} returned shape {tuple(value.shape)}, expected {want}")
        out[spec.name] = value
    return out


def scale_input(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Images (B, 3, H, W) at the scale the scores are computed at (bilinear)."""
    if scale == 1.0:
        return images
    return F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)


def finish_scores(scores: PixelScores, features: list[torch.Tensor], full_size: tuple[int, int],
                  scale: float, want_features: bool) -> PixelScores:
    """Attach the deepest encoder map when asked and bring maps back to ``full_size``."""
    if want_features:
        scores.features = features[-1]
    return resize_scores(scores, full_size) if scale != 1.0 else scores


def resize_scores(scores: PixelScores, size: tuple[int, int]) -> PixelScores:
    """Bring maps computed at ``scale`` back to the frame's resolution (regions live there)."""
    up = lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    maps = {k: up(v[:, None])[:, 0] for k, v in scores.maps.items()}
    pred = F.interpolate(scores.pred[:, None].float(), size=size, mode="nearest")[:, 0].long()
    ovr = up(scores.ovr) if scores.ovr is not None else None
    return PixelScores(maps=maps, pred=pred, frame=scores.frame, ovr=ovr, features=scores.features)


__all__ = ["MCDropoutScorer", "PixelScores", "ad_from_counts", "registered_measure_stats",
           "resize_scores", "torch_mc_stats"]
