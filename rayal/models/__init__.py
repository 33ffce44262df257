"""Model factory: smp architectures split into encoder -> decoder -> head."""
from rayal.models.factory import (SegmentationNet, build_model, load_checkpoint,
                                  model_from_config, save_checkpoint)

__all__ = ["SegmentationNet", "build_model", "load_checkpoint", "model_from_config",
           "save_checkpoint"]
