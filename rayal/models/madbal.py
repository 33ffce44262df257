"""MADBAL multi-head model (papers/madbal.txt, Sec. 3.1; DESIGN.md "MADBAL").

A :class:`MadbalNet` is a :class:`SegmentationNet` (same encode / decode / classify /
forward, so phase I trains it as any segmentation model) plus the AL supporting modules,
attached to any smp encoder (channel counts come from ``encoder.out_channels``):

- three varied-maturity heads (shallow / semi / almost mature) on three encoder stages.
  Head k: ``z_k = ConvBNReLU3x3(f_k -> D)`` (the adapted features), ``logits_k = Conv1x1(z_k)``;
- the endpoint features ``e = ConvBNReLU1x1(f_deepest -> D)``;
- the weight-prediction block: ``W = softmax_k(Conv1x1(ConvBNReLU3x3([z_1, z_2, z_3, e])))``,
  one weight per head and pixel (DESIGN's choice of inputs: the paper's figure is not in
  the text);
- the loss-prediction module on the head features weighted by W plus the endpoint (paper:
  "features ... weighted by the weight maps"):
  ``L = Conv1x1(ConvBNReLU3x3([W_1 z_1, W_2 z_2, W_3 z_3, e]))``, two logit channels
  (boundary, centre); ``sigmoid(L)`` is a pixel's predicted error-proneness.
The fusion runs at the shallow head's resolution; every output is brought to the input
resolution by bilinear upsampling (softmax weights stay a convex combination).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rayal.config.sections import ModelConfig
from rayal.config.training import MadbalConfig
from rayal.models.base import SegmentationNet

NUM_HEADS = 3
LOSS_CHANNELS = ("boundary", "centre")


def resolve_stages(out_channels: tuple[int, ...], stages: tuple[int, int, int] | None
                   ) -> tuple[int, int, int]:
    """Encoder stage indices of the shallow / middle / deep heads.

    out_channels: the encoder's channels per feature map, index 0 = the input image.
    Automatic (``stages`` None): of the stages with channels, the three before the deepest
    (resnet/mobilenet depth 5: stages 2, 3, 4 at strides 4, 8, 16); with only three, those.
    """
    depth = len(out_channels) - 1
    usable = [i for i in range(1, depth + 1) if out_channels[i] > 0]
    if stages is None:
        if len(usable) < NUM_HEADS:
            raise ValueError(f"madbal needs 3 encoder stages with channels, the encoder has "
                             f"{usable} (out_channels {list(out_channels)})")
        chosen = usable[-4:-1] if len(usable) > NUM_HEADS else usable
        return tuple(chosen)  # type: ignore[return-value]
    bad = [s for s in stages if s not in usable]
    if bad or list(stages) != sorted(set(stages)) or len(stages) != NUM_HEADS:
        raise ValueError(f"madbal.stages {list(stages)}: need 3 increasing stages among "
                         f"{usable} (encoder out_channels {list(out_channels)})")
    return tuple(int(s) for s in stages)  # type: ignore[return-value]


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MaturityModules(nn.Module):
    """Varied-maturity heads, weight-prediction block and loss-prediction module.

    ``forward(features, out_size)``: encoder features (list, index 0 = input) -> dict of
    ``head_logits`` (K, B, C, *out_size), ``head_weights`` (B, K, *out_size) (softmax over
    K), ``loss_logits`` (B, 2, *out_size) (boundary, centre; pre-sigmoid).
    """

    def __init__(self, out_channels: tuple[int, ...], stages: tuple[int, int, int],
                 num_classes: int, width: int):
        super().__init__()
        self.stages = tuple(stages)
        self.necks = nn.ModuleList(_conv_bn_relu(out_channels[s], width, 3) for s in stages)
        self.heads = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in stages)
        self.endpoint = _conv_bn_relu(out_channels[-1], width, 1)
        fused = (NUM_HEADS + 1) * width
        self.weight_block = nn.Sequential(_conv_bn_relu(fused, width, 3),
                                          nn.Conv2d(width, NUM_HEADS, 1))
        self.loss_module = nn.Sequential(_conv_bn_relu(fused, width, 3),
                                         nn.Conv2d(width, len(LOSS_CHANNELS), 1))

    def forward(self, features: list[torch.Tensor], out_size: tuple[int, int]) -> dict:
        adapted = [neck(features[s]) for neck, s in zip(self.necks, self.stages)]
        head_logits = [head(z) for head, z in zip(self.heads, adapted)]
        ref = tuple(adapted[0].shape[-2:])  # the shallow head's grid
        zs = [_resize(z, ref) for z in adapted]
        endpoint = _resize(self.endpoint(features[-1]), ref)
        weights = torch.softmax(self.weight_block(torch.cat(zs + [endpoint], dim=1)), dim=1)
        weighted = [weights[:, k:k + 1] * z for k, z in enumerate(zs)]
        loss_logits = self.loss_module(torch.cat(weighted + [endpoint], dim=1))
        return {"head_logits": torch.stack([_resize(h, out_size) for h in head_logits]),
                "head_weights": _resize(weights, out_size),
                "loss_logits": _resize(loss_logits, out_size)}


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class MadbalNet(SegmentationNet):
    """A segmentation model with the MADBAL modules under ``aux``.

    ``forward(images)`` returns the main logits only, so phase I is ordinary supervised
    training; :meth:`multi_head` and :meth:`extras` give the extra outputs. The phase-I
    model is ``net`` (+ the normalisation buffers); :meth:`extra_modules` is what phase II
    trains (its parameters have ``requires_grad=False`` outside phase II).
    """

    def __init__(self, smp_model: nn.Module, num_classes: int, model_config: ModelConfig,
                 madbal: MadbalConfig):
        super().__init__(smp_model, num_classes, model_config)
        channels = tuple(int(c) for c in smp_model.encoder.out_channels)
        self.stages = resolve_stages(channels, madbal.stages)
        # the resolved stages travel in checkpoints, so a reload builds the same modules
        self.madbal_config = madbal.model_copy(update={"enabled": True, "stages": self.stages})
        self.aux = MaturityModules(channels, self.stages, num_classes, madbal.head_channels)
        # Phase I (forward) never uses the extras: frozen, so DDP and optimisers over
        # model.parameters() skip them; train_phase2 unfreezes them while it runs.
        self.aux.requires_grad_(False)

    @classmethod
    def from_segmentation(cls, model: SegmentationNet, madbal: MadbalConfig) -> "MadbalNet":
        """Wrap a plain model (its weights shared, not copied) with fresh extra modules."""
        if isinstance(model, MadbalNet):
            return model
        out = cls(model.net, model.num_classes, model.model_config, madbal)
        return out.to(next(model.parameters()).device)

    def extra_modules(self) -> nn.Module:
        """The modules phase II trains (heads, weight block, loss prediction)."""
        return self.aux

    def segmentation_state(self) -> dict[str, torch.Tensor]:
        """Every phase-I parameter and buffer (everything outside ``aux``), by name."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("aux.")}

    def _padded(self, size: tuple[int, int]) -> tuple[int, int]:
        s = self.output_stride
        return (-(-size[0] // s) * s, -(-size[1] // s) * s)

    def extras(self, features: list[torch.Tensor], size: tuple[int, int]) -> dict:
        """Encoder features (from :meth:`encode`) -> extra outputs at the input size ``size``:
        ``head_logits`` (3, B, C, H, W), ``head_weights`` (B, 3, H, W) (softmax over heads),
        ``loss_logits`` (B, 2, H, W) (channel 0 boundary, 1 centre; pre-sigmoid)."""
        out = self.aux(features, self._padded(size))
        h, w = size
        return {k: v[..., :h, :w] for k, v in out.items()}

    def multi_head(self, images: torch.Tensor) -> dict:
        """Images (B, 3, H, W) in [0, 1] -> every output at input resolution: ``logits``
        (B, C, H, W) (main head, = forward), the :meth:`extras` and ``features`` (the
        encoder's stage maps, deepest last)."""
        features, size = self.encode(images)
        out = self.extras(features, size)
        out["logits"] = self.classify(self.decode(features), size)
        out["features"] = features
        return out


def attach_madbal(model: SegmentationNet, madbal: MadbalConfig, seed: int = 0) -> MadbalNet:
    """``model`` wrapped as a :class:`MadbalNet` whose extra modules are seeded by ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MadbalNet.from_segmentation(model, madbal)


__all__ = ["MadbalNet", "MaturityModules", "attach_madbal", "resolve_stages"]
