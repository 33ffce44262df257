"""Config sections of training: ``train``, ``madbal`` (multi-head model), ``vaal``."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rayal.config.base import Section


class AugmentConfig(Section):
    """Training-time augmentation, applied identically to image and mask."""

    crop: tuple[int, int] | None = Field(None, description="random crop (H, W); None keeps the frame")
    flip: bool = Field(True, description="random horizontal flip")
    brightness: float = Field(0.2, ge=0.0, lt=1.0, description="brightness factor drawn in 1 +- b")


class TrainConfig(Section):
    """Supervised (re)training on the labelled set, through Ray Train."""

    labels: Literal["pool", "split", "full"] = Field(
        "pool", description="pool: labelled units of the pool state; split: frame ids listed in "
        "label_list (full masks); full: every frame of data.pool_split (the full-supervision reference)")
    label_list: str | None = Field(None, description="file of frame ids, one per line (labels: split)")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    class_weights: list[float] | None = Field(None, description="cross-entropy weight per class")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    patience: int | None = Field(3, ge=1, description="epochs without val mIoU gain before stopping")
    ema_decay: float | None = Field(0.99, gt=0.0, lt=1.0, description="Polyak/EMA of the weights; None: off")
    warm_start: bool = Field(True, description="start a round from the previous round's weights")
    val_split: str | None = Field(None, description="split for early stopping; None: data.eval_split")
    val_limit: int | None = Field(None, ge=1, description="validate on the first N frames only")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="optimizer steps per epoch; None: one pass over the labelled set")
    num_workers: int = Field(0, ge=0, description="Ray Train workers; 0 runs in-process (local mode)")
    use_gpu: bool | None = Field(None, description="None: when CUDA is available")
    cpus_per_worker: float = Field(1.0, gt=0.0)
    torch_threads: int | None = Field(None, ge=1)
    storage_path: str | None = Field(None, description="Ray Train storage; None: <output_dir>/train")
    pseudo_labels: bool = Field(True, description="use pseudo-labels when the strategy supplies them (CEAL)")

    @model_validator(mode="after")
    def _split_needs_list(self) -> "TrainConfig":
        if self.labels == "split" and not self.label_list:
            raise ValueError("train.label_list is required when train.labels is 'split'")
        return self


class MadbalConfig(Section):
    """MADBAL multi-head model: three maturity heads, weight block, loss prediction."""

    enabled: bool = False
    stages: tuple[int, int, int] | None = Field(
        None, description="encoder stage indices of the shallow/middle/deep heads; None: automatic")
    phase2_epochs: int = Field(5, ge=1)
    phase2_lr: float = Field(1e-3, gt=0.0)
    edge_threshold: float = Field(0.1, gt=0.0, description="image-gradient magnitude (0..1) of a boundary")
    loss_channel: Literal["boundary", "centre"] = Field(
        "boundary", description="which loss-prediction channel scales the pixel score")


class VaalConfig(Section):
    """VAAL: a VAE and a discriminator on images (labelled vs unlabelled)."""

    image_size: tuple[int, int] = Field((64, 64), description="frames are resized to (H, W)")
    latent_dim: int = Field(32, ge=2)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(5e-4, gt=0.0)
    beta: float = Field(1.0, ge=0.0, description="KL weight of the VAE loss")
    adversary_weight: float = Field(1.0, ge=0.0)
