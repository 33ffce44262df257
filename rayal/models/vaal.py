"""VAAL networks (Sinha et al. 2019): a VAE over images and a labelled-vs-unlabelled discriminator.

Architecture of the paper's code, scaled to ``image_size`` (H, W multiples of 16):

- encoder: four ``Conv(4x4, stride 2) -> BatchNorm -> ReLU`` blocks with ``c, 2c, 4c, 8c``
  channels (c = ``base_channels``, 128 in the paper) -> (B, 8c, H/16, W/16) -> two linear
  layers give ``mu`` and ``logvar`` (B, latent_dim);
- decoder: linear ``z -> (8c, H/8, W/8)``, three ``ConvTranspose(4x4, stride 2) -> BatchNorm
  -> ReLU`` blocks (4c, 2c, c) and a 1x1 transposed conv to 3 channels -> (B, 3, H, W);
- discriminator: MLP ``latent_dim -> 512 -> 512 -> 1`` on the latent mean ``mu``; it returns
  a logit, ``sigmoid(logit)`` = probability that the frame is labelled.

Inputs are (B, 3, H, W) float images in [0, 1]; the decoder output has no activation
(reconstruction by squared error, as in the paper's code).
"""
from __future__ import annotations

import torch
from torch import nn

from rayal.config.training import VaalConfig


def _init(module: nn.Module) -> None:
    # He initialisation of every conv / linear weight, as the paper's code does
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class VAE(nn.Module):
    """Convolutional VAE: ``x (B, 3, H, W) -> mu, logvar (B, latent_dim) -> recon (B, 3, H, W)``."""

    def __init__(self, image_size: tuple[int, int] = (64, 64), latent_dim: int = 32,
                 base_channels: int = 128):
        super().__init__()
        h, w = (int(v) for v in image_size)
        if h < 16 or w < 16 or h % 16 or w % 16:
            raise ValueError(f"image_size must be multiples of 16 (>= 16), got {image_size!r}")
        if latent_dim < 1 or base_channels < 1:
            raise ValueError(f"latent_dim and base_channels must be >= 1, got {latent_dim}, {base_channels}")
        self.image_size, self.latent_dim = (h, w), int(latent_dim)
        c = int(base_channels)
        widths = [3, c, 2 * c, 4 * c, 8 * c]
        self.encoder = nn.Sequential(*[
            layer for i in range(4) for layer in (
                nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i + 1]), nn.ReLU(inplace=True))],
            nn.Flatten())
        flat = 8 * c * (h // 16) * (w // 16)
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        self._start = (8 * c, h // 8, w // 8)
        self.fc_decode = nn.Linear(latent_dim, 8 * c * (h // 8) * (w // 8))
        self.decoder = nn.Sequential(*[
            layer for i in (4, 3, 2) for layer in (
                nn.ConvTranspose2d(widths[i], widths[i - 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i - 1]), nn.ReLU(inplace=True))],
            nn.ConvTranspose2d(c, 3, 1))
        self.apply(_init)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> (mu, logvar), each (B, latent_dim); logvar = log sigma^2 (natural log)."""
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"VAE input must be (B, 3, {self.image_size[0]}, {self.image_size[1]}), "
                             f"got {tuple(x.shape)}")
        features = self.encoder(x)
        return self.fc_mu(features), self.fc_logvar(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> reconstruction (B, 3, H, W)."""
        return self.decoder(self.fc_decode(z).view(-1, *self._start))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``, eps ~ N(0, I) drawn from ``generator`` (seeded)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """-> (recon (B, 3, H, W), z, mu, logvar (B, latent_dim) each)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode(z), z, mu, logvar


class Discriminator(nn.Module):
    """MLP on the latent mean: (B, latent_dim) -> (B,) logit of "this frame is labelled"."""

    def __init__(self, latent_dim: int = 32, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 1))
        self.apply(_init)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu).squeeze(1)


class VaalModel(nn.Module):
    """The VAE and the discriminator of one VAAL run."""

    def __init__(self, image_size: tuple[int, int] = (64, 64), latent_dim: int = 32,
                 base_channels: int = 128):
        super().__init__()
        self.vae = VAE(image_size, latent_dim, base_channels)
        self.discriminator = Discriminator(latent_dim)
        self.history: list[dict] = []  # per-epoch mean losses, filled by training

    @classmethod
    def from_config(cls, config: VaalConfig, seed: int = 0) -> "VaalModel":
        """Seeded initialisation; the global torch RNG is left as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(tuple(config.image_size), config.latent_dim, config.base_channels)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.vae.image_size

    def prob_labelled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B,) discriminator probability D(mu(x)) of "labelled"."""
        mu, _ = self.vae.encode(x)
        return torch.sigmoid(self.discriminator(mu))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B,) "unlabelled-looking" score ``1 - D(mu(x))`` in [0, 1]."""
        mu, _ = self.vae.encode(x)
        return torch.sigmoid(-self.discriminator(mu))  # = 1 - sigmoid(logit), without cancellation
