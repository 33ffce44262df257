"""VAAL training and scoring (torch only, no Ray).

Each step takes one labelled batch ``x_L`` and one unlabelled batch ``x_U`` (Algorithm 1 of
Sinha et al. 2019) and makes

1. a VAE update on ``L_VAE = L_trd + adversary_weight * L_adv``:
   ``L_trd`` = per-pixel squared reconstruction error + ``beta * KL(q(z|x) || N(0, I)) / (3 H W)``
   over ``x_L`` and ``x_U`` (the negative ELBO of a unit-variance Gaussian decoder per pixel,
   so the adversarial term at weight 1 is on the same scale); ``L_adv`` = BCE of
   ``D(mu(x))`` against "labelled" for every frame: the VAE tries to make all frames look
   labelled;
2. a discriminator update on BCE with labelled = 1, unlabelled = 0, on the (detached)
   latent means of the same step.

Labelled and unlabelled frames go through the VAE as one batch, so train-mode BatchNorm
statistics are shared: separate passes would normalise each set by its own statistics
and hide exactly the differences the discriminator has to find.

An epoch runs until both sources have been iterated once (the shorter one restarts).
The selection score of a frame is ``1 - D(mu(x))``: the probability that it is unlabelled,
higher = annotate first.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Iterator, Union

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rayal.config.training import VaalConfig
from rayal.models.vaal import VaalModel

BatchSource = Union[Iterable, Callable[[], Iterable]]


class ImageBatches:
    """Re-iterable seeded shuffled batches of in-memory images.

    images: (N, H, W, 3) uint8 or (N, 3, H, W) float in [0, 1].
    Each pass yields (B, 3, H, W) float32 tensors in [0, 1] in a new order drawn from
    ``np.random.default_rng([seed, pass_number])``, so a run is reproducible.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.batch_size, self.seed = images, int(batch_size), int(seed)
        self.passes = 0

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = np.random.default_rng([self.seed, self.passes]).permutation(len(self.images))
        self.passes += 1
        for start in range(0, len(order), self.batch_size):
            yield as_image_batch(self.images[order[start:start + self.batch_size]])


def as_image_batch(images, size: tuple[int, int] | None = None, what: str = "images") -> torch.Tensor:
    """(B, H, W, 3) uint8 or (B, 3, H, W) float in [0, 1] (numpy or torch) -> (B, 3, h, w)
    float32 tensor, bilinearly resized (antialiased) to ``size`` when given and different."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"{what}: uint8 images must be (B, H, W, 3), got {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
    elif x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{what}: float images must be (B, 3, H, W), got {tuple(x.shape)}")
    x = x.float()
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def vae_loss(x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float) -> torch.Tensor:
    """Per-pixel negative ELBO: ``mean (recon - x)^2 + beta * mean_b KL_b / (C H W)``, with
    ``KL_b = -1/2 sum_j (1 + logvar - mu^2 - exp(logvar))`` (nats) for each frame b."""
    mse = F.mse_loss(recon, x)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
    return mse + beta * kl / x[0].numel()


def _start(source: BatchSource) -> Iterator:
    return iter(source() if callable(source) and not hasattr(source, "__iter__") else source)


def _epoch_pairs(labelled: BatchSource, unlabelled: BatchSource) -> Iterator[tuple]:
    """(labelled batch, unlabelled batch) pairs until both sources finished one pass; the one
    that runs out first restarts (a new pass), so both sets are seen whole every epoch."""
    sources, names = (labelled, unlabelled), ("labelled", "unlabelled")
    iters = [_start(s) for s in sources]
    done, seen = [False, False], [0, 0]
    while True:
        got = [next(it, None) for it in iters]
        for k in (0, 1):
            if got[k] is None and seen[k] == 0:
                raise ValueError(f"the {names[k]} frames yield no batches; VAAL needs both sets")
            done[k] |= got[k] is None
            seen[k] += got[k] is not None
        if all(done) and any(g is None for g in got):
            return
        for k in (0, 1):
            if got[k] is None:  # restart the shorter source only while the other still runs
                iters[k] = _start(sources[k])
                got[k] = next(iters[k], None)
                if got[k] is None:
                    raise ValueError(f"the {names[k]} frames yield no batches on a second pass; "
                                     "give a re-iterable (or a callable returning an iterable)")
        yield got[0], got[1]


def _step(model: VaalModel, opt_vae, opt_d, xl: torch.Tensor, xu: torch.Tensor,
          config: VaalConfig, generator: torch.Generator) -> dict:
    """One VAE update then one discriminator update; returns the step's losses."""
    x = torch.cat([xl, xu])
    recon, _, mu, logvar = model.vae(x, generator)
    trd = vae_loss(x, recon, mu, logvar, config.beta)
    logits = model.discriminator(mu)
    adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    opt_vae.zero_grad(set_to_none=True)
    (trd + config.adversary_weight * adv).backward()
    opt_vae.step()

    target = torch.cat([torch.ones(len(xl)), torch.zeros(len(xu))]).to(x.device)
    d_loss = F.binary_cross_entropy_with_logits(model.discriminator(mu.detach()), target)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return {"vae": trd.item(), "adversarial": adv.item(), "discriminator": d_loss.item()}


def train_vaal(labelled: BatchSource, unlabelled: BatchSource, config: VaalConfig, *,
               seed: int, device: str | torch.device = "cpu", progress: bool = False) -> VaalModel:
    """Train a VAAL VAE + discriminator; returns the model in eval mode on ``device``.

    labelled / unlabelled: re-iterables (or zero-argument callables returning iterables) of
    image batches (B, 3, H, W) float in [0, 1] (or (B, H, W, 3) uint8), iterated once or
    more per epoch; resized to ``config.image_size`` when they differ.
    seed: weights initialisation and reparameterisation noise (the batch order is the
    sources' own); the same seed and inputs give the same model on CPU.
    ``model.history`` holds the mean losses of each epoch.
    """
    device = torch.device(device)
    model = VaalModel.from_config(config, seed=seed).to(device).train()
    opt_vae = torch.optim.Adam(model.vae.parameters(), lr=config.lr)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=config.lr)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    size = tuple(config.image_size)
    epochs = tqdm(range(config.epochs), desc="VAAL train", unit="epoch", disable=not progress)
    for epoch in epochs:
        totals: dict[str, float] = {}
        steps = 0
        for xl, xu in _epoch_pairs(labelled, unlabelled):
            xl = as_image_batch(xl, size, "labelled batch").to(device)
            xu = as_image_batch(xu, size, "unlabelled batch").to(device)
            for name, value in _step(model, opt_vae, opt_d, xl, xu, config, generator).items():
                totals[name] = totals.get(name, 0.0) + value
            steps += 1
        means = {name: value / steps for name, value in totals.items()}
        model.history.append({"epoch": epoch, "steps": steps, **means})
        epochs.set_postfix({k: f"{v:.3f}" for k, v in means.items()})
    return model.eval()


@torch.no_grad()
def vaal_scores(model: VaalModel, images, batch_size: int = 64) -> np.ndarray:
    """(B,) float32 "unlabelled-looking" scores ``1 - D(mu(x))`` in [0, 1], higher = pick first.

    images: (B, 3, H, W) float in [0, 1] or (B, H, W, 3) uint8 (numpy or torch); resized to
    the model's image size when different. The model is used in eval mode (deterministic).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = as_image_batch(images, model.image_size)
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros(0, np.float32)
