"""MADBAL pixel score (papers/madbal.txt, Eq. 4) and the multi-head scorer (pure torch).

``u = (H(p) + sum_k W_k JS(p, p_k)) * exp(sigmoid(L))``: ``p`` the main head's softmax,
``p_k`` the k-th varied-maturity head's softmax, ``W_k`` the weight block's per-pixel
softmax over the heads, ``L`` the loss-prediction logit of the pixel (boundary channel on
image edges, centre channel elsewhere, Eq. 4's delta(x); or one channel everywhere).
Natural log; probabilities clamped to [1e-12, 1] before any log.

The model is duck-typed (``encode``, ``decode``, ``classify``, ``extras``; see
:class:`rayal.models.MadbalNet`); this module imports neither models nor Ray.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rayal.scoring import measures as M
from rayal.scoring.engine import MCDropoutScorer, PixelScores, finish_scores, scale_input

MATURITY = "maturity_score"  # PixelScores.maps key and score-table column stem
LOSS_CHANNELS = ("auto", "boundary", "centre")


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-pixel Jensen-Shannon divergence over the class axis (dim -3), in nats.

    p, q: (..., C, H, W) probabilities (broadcastable) -> (..., H, W), in [0, log 2].
    ``JS = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``.
    """
    m = 0.5 * (p + q)
    log_m = M._log(m)
    kl_p = (p * (M._log(p) - log_m)).sum(dim=-3)
    kl_q = (q * (M._log(q) - log_m)).sum(dim=-3)
    return 0.5 * (kl_p + kl_q)


def image_edges(images: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boundary pixels from image gradients: (B, 3, H, W) in [0, 1] -> (B, H, W) bool.

    Per channel, central differences with replicated borders,
    ``gx = (I[y, x+1] - I[y, x-1]) / 2`` (likewise ``gy``); a pixel is a boundary when
    ``max_channel sqrt(gx^2 + gy^2) > threshold``. A step between columns j and j+1 of
    height s marks columns j and j+1 (gradient s / 2), colour edges of equal luminance too.
    """
    if images.ndim != 4:
        raise ValueError(f"image_edges expects images (B, 3, H, W), got shape {tuple(images.shape)}")
    x = F.pad(images.float(), (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (x[..., 1:-1, 2:] - x[..., 1:-1, :-2])
    gy = 0.5 * (x[..., 2:, 1:-1] - x[..., :-2, 1:-1])
    return (gx.square() + gy.square()).sqrt().amax(dim=1) > threshold


def select_loss_logit(loss_logits: torch.Tensor, channel: str,
                      boundary: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2, H, W) (boundary, centre) logits -> (B, H, W) logit that scales the score.

    ``auto`` takes the boundary channel where ``boundary`` (B, H, W) is True, else centre.
    """
    if loss_logits.ndim != 4 or loss_logits.shape[1] != 2:
        raise ValueError(f"loss logits must be (B, 2, H, W), got shape {tuple(loss_logits.shape)}")
    if channel == "boundary":
        return loss_logits[:, 0]
    if channel == "centre":
        return loss_logits[:, 1]
    if channel != "auto":
        raise ValueError(f"loss channel must be one of {LOSS_CHANNELS}, got {channel!r}")
    if boundary is None:
        raise ValueError("loss channel 'auto' needs the boundary map (B, H, W)")
    return torch.where(boundary, loss_logits[:, 0], loss_logits[:, 1])


def maturity_score(p: torch.Tensor, head_probs: torch.Tensor, head_weights: torch.Tensor,
                   loss_logit: torch.Tensor) -> torch.Tensor:
    """MADBAL pixel uncertainty (Eq. 4): -> (B, H, W).

    p: (B, C, H, W) main-head probabilities; head_probs: (K, B, C, H, W) the K heads'
    probabilities; head_weights: (B, K, H, W) per-pixel head weights (a softmax over K);
    loss_logit: (B, H, W) loss-prediction logit. ``u = (H(p) + sum_k W_k JS(p, p_k)) *
    exp(sigmoid(L))``, so ``u`` is in [0, (log C + log 2) * e].
    """
    M._check(p, 4, "maturity_score p")
    M._check(head_probs, 5, "maturity_score head_probs")
    batch, _, height, width = p.shape
    heads = head_probs.shape[0]
    if head_probs.shape[1:] != p.shape:
        raise ValueError(f"head_probs {tuple(head_probs.shape)} must be (K, *p.shape) "
                         f"with p {tuple(p.shape)}")
    if tuple(head_weights.shape) != (batch, heads, height, width):
        raise ValueError(f"head_weights must be (B, K, H, W) = {(batch, heads, height, width)}, "
                         f"got {tuple(head_weights.shape)}")
    if tuple(loss_logit.shape) != (batch, height, width):
        raise ValueError(f"loss_logit must be (B, H, W) = {(batch, height, width)}, "
                         f"got {tuple(loss_logit.shape)}")
    js = js_divergence(p.unsqueeze(0), head_probs)  # (K, B, H, W)
    maturity = (head_weights * js.movedim(0, 1)).sum(dim=1)
    return (M.entropy(p) + maturity) * torch.exp(torch.sigmoid(loss_logit))


class MultiHeadScorer:
    """Multi-head (MADBAL) mode: :class:`PixelScores` with ``maturity_score`` added.

    The trunk runs once: encoder -> (extra modules, decoder -> main head). The main logits
    give the usual maps (entropy / margin / least confidence, and the MC measures when
    ``mc_samples`` > 0, through :class:`MCDropoutScorer` on the same decoder output, so
    every measure of MC-dropout mode is available here too). ``maturity_score`` uses the
    deterministic softmax of the main head as ``p``. Same call as :class:`MCDropoutScorer`.
    """

    def __init__(self, model, *, loss_channel: str = "auto", edge_threshold: float = 0.1,
                 mc_samples: int = 0, dropout_p: float = 0.2, position: str = "logits",
                 point_estimate: str = "deterministic", dice: str = "macro",
                 want_ovr: bool = False, want_features: bool = False, scale: float = 1.0,
                 seed: int = 0, use_fused: bool | None = None):
        if loss_channel not in LOSS_CHANNELS:
            raise ValueError(f"loss_channel must be one of {LOSS_CHANNELS}, got {loss_channel!r}")
        if not callable(getattr(model, "extras", None)):
            raise ValueError(f"multi-head scoring needs a MADBAL model (with extras()), "
                             f"got {type(model).__name__}")
        self.model = model
        self.loss_channel = loss_channel
        self.edge_threshold = edge_threshold
        self.want_features = want_features
        self.scale = scale
        self.main = MCDropoutScorer(model, mc_samples=mc_samples, dropout_p=dropout_p,
                                    position=position, point_estimate=point_estimate, dice=dice,
                                    want_ovr=want_ovr, seed=seed, use_fused=use_fused)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, frame_ids: list[str]) -> PixelScores:
        """images: (B, 3, H, W) float in [0, 1] on the model's device."""
        full_size, images = tuple(images.shape[-2:]), scale_input(images, self.scale)
        features, size = self.model.encode(images)
        extras = self.model.extras(features, size)  # before decode: it only reads the features
        decoded = self.model.decode(features)
        logits = self.model.classify(decoded, size).float()
        scores = self.main.score_decoded(decoded, size, list(frame_ids), logits=logits)
        boundary = image_edges(images, self.edge_threshold) if self.loss_channel == "auto" else None
        loss_logit = select_loss_logit(extras["loss_logits"].float(), self.loss_channel, boundary)
        scores.maps[MATURITY] = maturity_score(
            torch.softmax(logits, dim=1), torch.softmax(extras["head_logits"].float(), dim=2),
            extras["head_weights"].float(), loss_logit)
        return finish_scores(scores, features, full_size, self.scale, self.want_features)


__all__ = ["MATURITY", "MultiHeadScorer", "image_edges", "js_divergence", "maturity_score",
           "select_loss_logit"]
