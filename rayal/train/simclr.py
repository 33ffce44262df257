"""SimCLR on unlabelled frames: the self-supervised embedding space of TypiClust and ProbCover
(pure torch + torchvision; no Ray).

Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020: two augmented views of every frame (Sec. 3, Appendix A: random
resized crop, horizontal flip, colour jitter 0.4/0.4/0.4/0.1 applied with p 0.8, grayscale with
p 0.2; no blur, as in their CIFAR-10 setting for small images), an encoder f, a 2-layer MLP
projection head g, and the NT-Xent loss (Sec. 2.1, Eq. 1). The representation used downstream
is f's output (before g), here the deepest encoder map averaged over space, exactly as the task
model's frame embeddings (:func:`rayal.scoring.embeddings.frame_embeddings`).

TypiClust (Hacohen et al., ICML 2022, Sec. 3.1) and ProbCover (Yehuda et al., NeurIPS 2022,
Sec. 4) both pick in such a space: a representation learned without labels on the whole pool.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

# crop area range: 0.2-1 as in the SimCLR that TypiClust / ProbCover use (SCAN's; MoCo v2 too);
# SimCLR itself crops 0.08-1 (Appendix A), too small a piece of a 32x48 frame to keep a scene
CROP_SCALE = (0.2, 1.0)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR Eq. 1), averaged over the 2N anchors.

    Args:
        z1, z2: (N, D) projections of the two views of the same N frames (row i of each is a
            positive pair; the other 2N - 2 views are the negatives).
        temperature: tau > 0.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: shapes differ or N < 2 (no negatives).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss needs two (N, D) tensors of one shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"nt_xent_loss needs N >= 2 frames (negatives), got {n}")
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))   # k != i in the denominator
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def simclr_augment(size: tuple[int, int]) -> v2.Compose:
    """One view of a (3, H, W) float image in [0, 1] at ``size`` (SimCLR Appendix A)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ])


def two_views(images: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent augmentations of every frame of ``images`` (N, 3, H, W) in [0, 1]; draws
    from torch's global generator (seed it, or run under ``torch.random.fork_rng``)."""
    augment = simclr_augment(size)
    first = torch.stack([augment(img) for img in images])
    second = torch.stack([augment(img) for img in images])
    return first, second


class SimCLRNet(nn.Module):
    """Encoder f (an smp encoder, as the task model's) + projection head g (SimCLR Sec. 2.1).

    ``embed(x)``: (B, 3, H, W) in [0, 1] -> (B, D) representations (f, pooled), D the deepest
    encoder map's channels. ``forward(x)``: -> (B, projection_dim) projections g(f(x)).
    """

    def __init__(self, encoder: str, depth: int, projection_dim: int):
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.encoder_name, self.depth, self.projection_dim = encoder, depth, projection_dim
        self.encoder = get_encoder(encoder, in_channels=3, depth=depth, weights=None)
        width = self.encoder.out_channels[-1]
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True),
                                  nn.Linear(width, projection_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def train_simclr(images: np.ndarray, *, encoder: str, depth: int, size: tuple[int, int],
                 epochs: int, batch_size: int, lr: float, temperature: float,
                 projection_dim: int, seed: int, device: str = "cpu",
                 log=None) -> tuple[SimCLRNet, list[float]]:
    """Train SimCLR on ``images`` (N, H, W, 3) uint8 (frames already at ``size``).

    Seeded end to end (initialisation, batch order, augmentations): the same inputs give the
    same weights on the CPU (on a GPU up to cuDNN's non-deterministic kernels). Each epoch is ``floor(N / batch)`` full batches (the tail is
    dropped, as in SimCLR's large-batch setting), or one batch of all N when N < batch.

    Returns:
        (the trained net in eval mode, the mean loss of every epoch).

    Raises:
        ValueError: fewer than 2 frames.
    """
    n = len(images)
    if n < 2:
        raise ValueError(f"SimCLR needs at least 2 frames, got {n}")
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)   # CPU and CUDA generators, both restored on exit
        net = SimCLRNet(encoder, depth, projection_dim).to(device)
        optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-6)
        data = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        batch = min(batch_size, n)
        losses = []
        net.train()
        for epoch in range(epochs):
            order = torch.randperm(n)
            tic, total, steps = time.perf_counter(), 0.0, 0
            for start in range(0, n - batch + 1, batch):
                x = data[order[start:start + batch]].float().div_(255.0)
                first, second = two_views(x, size)
                loss = nt_xent_loss(net(first.to(device)), net(second.to(device)), temperature)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total, steps = total + float(loss.detach()), steps + 1
            losses.append(total / steps)
            if log is not None:
                log(f"SimCLR epoch {epoch + 1}/{epochs}: NT-Xent {losses[-1]:.4f} "
                    f"(chance {math.log(2 * batch - 1):.2f}), {time.perf_counter() - tic:.1f} s")
    return net.eval(), losses


@torch.no_grad()
def embed_frames(net: SimCLRNet, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1], any H x W -> (B, D) float32 representations at ``size``."""
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return net.embed(x).float()
