"""Model factory: smp architectures split into encoder -> decoder -> head; the MADBAL
multi-head model (maturity heads, weight block, loss prediction)."""
from rayal.models.base import SegmentationNet
from rayal.models.factory import (build_model, checkpoint_bytes, load_checkpoint,
                                  model_from_checkpoint_bytes, model_from_config, save_checkpoint)
from rayal.models.madbal import MadbalNet, attach_madbal, resolve_stages

__all__ = ["MadbalNet", "SegmentationNet", "attach_madbal", "build_model", "checkpoint_bytes",
           "load_checkpoint", "model_from_checkpoint_bytes", "model_from_config", "resolve_stages",
           "save_checkpoint"]
