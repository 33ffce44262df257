"""The segmentation network every rayal model is: an smp model split explicitly into
encoder -> decoder -> head.

:class:`SegmentationNet` wraps any smp architecture so the scoring engine can run
the trunk (encoder + decoder) once and only what follows the MC-dropout layer T
times. It also pads inputs to the encoder's output stride and crops the logits
back, so frames of any size (CamVid's 360x480) go through unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rayal.config.sections import ModelConfig


class SegmentationNet(nn.Module):
    """``logits = head(decoder(encoder(x)))`` for an smp model.

    Shapes: ``x`` (B, 3, H, W) float in [0, 1] (normalised inside), logits
    (B, C, H, W). ``features`` is the encoder's list of stage maps, deepest last.
    """

    def __init__(self, smp_model: nn.Module, num_classes: int, model_config: ModelConfig):
        super().__init__()
        self.net = smp_model
        self.num_classes = num_classes
        self.model_config = model_config
        self.output_stride = int(getattr(smp_model.encoder, "output_stride", 32))
        # ImageNet statistics: the convention of every smp encoder.
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.net.decoder

    @property
    def head(self) -> nn.Module:
        return self.net.segmentation_head

    @property
    def embedding_dim(self) -> int:
        return int(self.net.encoder.out_channels[-1])

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        s = self.output_stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def encode(self, images: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Images (B, 3, H, W) in [0, 1] -> (encoder features, original (H, W))."""
        x, size = self._pad((images - self.mean) / self.std)
        return self.net.encoder(x), size

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Encoder features -> decoder output (B, D, H', W') (padded size)."""
        return self.net.decoder(features)

    def classify(self, decoder_output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decoder output -> logits (B, C, H, W) cropped to the original size."""
        logits = self.net.segmentation_head(decoder_output)
        return logits[..., : size[0], : size[1]]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features, size = self.encode(images)
        return self.classify(self.decode(features), size)
