"""Building and checkpointing segmentation models: any segmentation-models-pytorch
architecture wrapped as a :class:`rayal.models.base.SegmentationNet` (a
:class:`rayal.models.madbal.MadbalNet` with ``madbal.enabled``), rayal checkpoints as bytes
or local files.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Callable

import segmentation_models_pytorch as smp
import torch
from torch import nn

from rayal.config.sections import ModelConfig
from rayal.config.training import MadbalConfig
from rayal.models.base import SegmentationNet
from rayal.models.madbal import MadbalNet, attach_madbal

CHECKPOINT_FORMAT = "rayal-checkpoint"
CHECKPOINT_VERSION = 1


def _smp_class(arch: str) -> type:
    for name in dir(smp):
        if name.lower() == arch.lower() and isinstance(getattr(smp, name), type):
            return getattr(smp, name)
    known = sorted(n for n in dir(smp) if isinstance(getattr(smp, n), type)
                   and issubclass(getattr(smp, n), nn.Module) and n[0].isupper())
    raise ValueError(f"model.arch {arch!r} is not an smp architecture; known: {known}")


def build_model(config: ModelConfig, num_classes: int, seed: int = 0,
                madbal: MadbalConfig | None = None) -> SegmentationNet:
    """A freshly initialised smp model (``encoder_weights`` only from a local file).

    Initialisation is seeded, so every actor of a pool builds identical weights. With
    ``madbal.enabled`` the model is a :class:`rayal.models.MadbalNet`; its extra modules are
    drawn after the segmentation model, whose weights equal the plain model's of that seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _build(config, num_classes)
        if madbal is not None and madbal.enabled:
            model = MadbalNet.from_segmentation(model, madbal)
        return model


def _build(config: ModelConfig, num_classes: int) -> SegmentationNet:
    cls = _smp_class(config.arch)
    kwargs: dict[str, Any] = dict(config.extra)
    if config.decoder_channels is not None:
        kwargs["decoder_channels"] = list(config.decoder_channels)
    try:
        net = cls(encoder_name=config.encoder, encoder_weights=None,
                  encoder_depth=config.encoder_depth, classes=num_classes, **kwargs)
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"cannot build model.arch={config.arch} "
                         f"model.encoder={config.encoder}: {err}") from None
    if config.encoder_weights:
        path = Path(config.encoder_weights)
        if not path.is_file():
            raise FileNotFoundError(f"model.encoder_weights: no such file {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        # smp encoders override load_state_dict and return None: compare keys ourselves
        if not set(state) & set(net.encoder.state_dict()):
            raise ValueError(f"model.encoder_weights {path} matches none of the encoder's weights")
        net.encoder.load_state_dict(state, strict=False)
    return SegmentationNet(net, num_classes, config)


def checkpoint_bytes(model: SegmentationNet, meta: dict | None = None) -> bytes:
    """A rayal checkpoint as bytes: weights + model config (+ the MADBAL config of a MadbalNet),
    everything :func:`model_from_checkpoint_bytes` needs to rebuild the model alone.

    Bytes, so the caller stores them anywhere (a local file, ``s3://``, ``gs://``)."""
    madbal = getattr(model, "madbal_config", None)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        # the weights travel in the file: no path to the original weights or checkpoint
        "model_config": model.model_config.model_dump(mode="json")
        | {"checkpoint": None, "encoder_weights": None},
        "num_classes": model.num_classes,
        "madbal": madbal.model_dump(mode="json") if madbal is not None else None,
        "state_dict": model.state_dict(),
        "meta": meta or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def model_from_checkpoint_bytes(data: bytes, source: str = "<bytes>",
                                map_location: str | torch.device = "cpu"
                                ) -> tuple[SegmentationNet, dict]:
    """Rebuild the model a checkpoint describes (a MadbalNet when it carries a MADBAL config)
    and load its weights. ``source`` names the checkpoint in errors. Returns (model, meta)."""
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(f"model.checkpoint {source} is not a rayal checkpoint ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"model.checkpoint {source} is not a rayal checkpoint")
    model_config = ModelConfig.model_validate(payload["model_config"])
    madbal = payload.get("madbal")  # absent in checkpoints of plain models
    madbal = MadbalConfig.model_validate(madbal) if madbal else None
    model = build_model(model_config, int(payload["num_classes"]), madbal=madbal)
    model.load_state_dict(payload["state_dict"])
    return model, dict(payload.get("meta", {}))


def save_checkpoint(path: str | Path, model: SegmentationNet, meta: dict | None = None) -> Path:
    """:func:`checkpoint_bytes` into a local file (atomically); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(checkpoint_bytes(model, meta))
    tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SegmentationNet, dict]:
    """The model and meta of a local checkpoint file (see :func:`model_from_checkpoint_bytes`).

    Checkpoints on object stores are read by ``rayal.train.checkpoint.read_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.checkpoint: no such file {path}")
    return model_from_checkpoint_bytes(path.read_bytes(), str(path), map_location)


CheckpointLoader = Callable[[str], "tuple[SegmentationNet, dict]"]


def model_from_config(config: ModelConfig, num_classes: int | None, seed: int = 0,
                      madbal: MadbalConfig | None = None, *,
                      load: CheckpointLoader | None = None) -> SegmentationNet:
    """The checkpoint when one is given, else a fresh model with ``num_classes``.

    ``madbal.enabled``: a fresh model is built as a MadbalNet; a plain checkpoint is wrapped
    with fresh extra modules (seeded by ``seed``); a MadbalNet checkpoint loads as saved.
    A MadbalNet checkpoint stays a MadbalNet without ``madbal`` (forward is unchanged).
    ``load(checkpoint) -> (model, meta)`` reads the checkpoint (default :func:`load_checkpoint`,
    local files; pass ``rayal.train.checkpoint.read_checkpoint`` for URIs).
    """
    if config.checkpoint:
        model, _ = (load or load_checkpoint)(config.checkpoint)
        if num_classes is not None and model.num_classes != num_classes:
            raise ValueError(f"model.checkpoint has {model.num_classes} classes, "
                             f"data.num_classes is {num_classes}")
        if madbal is not None and madbal.enabled and not hasattr(model, "madbal_config"):
            model = attach_madbal(model, madbal, seed=seed)
        return model
    if num_classes is None:
        raise ValueError("data.num_classes is required to build a fresh model")
    return build_model(config, num_classes, seed=seed, madbal=madbal)
