"""Config sections of training: ``train``, ``madbal`` (multi-head model), ``vaal``."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rayal.config.base import Section
from rayal.core.splits import check_split


class AugmentConfig(Section):
    """Training-time augmentation, applied identically to image and mask."""

    crop: tuple[int, int] | None = Field(None, description="random crop (H, W); None keeps the frame")
    flip: bool = Field(True, description="random horizontal flip")
    brightness: float = Field(0.2, ge=0.0, lt=1.0, description="brightness factor drawn in 1 +- b")


class CommitteeConfig(Section):
    """A committee of K models trained every round (query by committee; Suggestive Annotation's
    four FCNs on bootstrap samples, Yang et al. 2017, Sec. 3.2; CEREALS' vote entropy).
    Used by ``scoring.mode: committee``, where the member axis is the MC axis."""

    members: int = Field(1, ge=1, description="K models trained per round (1: no committee)")
    bootstrap: bool = Field(
        True, description="each member trains on a bootstrap resample (with replacement, seeded "
        "by run seed and member) of the labelled units; false: every member on all of them")
    seed_offset: int = Field(
        1, ge=0, description="member k trains (and draws its dropout masks) with seed + k * "
        "seed_offset; 0 with bootstrap: false gives K identical members")
    lead_on_all: bool = Field(
        True, description="member 0 (the lead: evaluated for the learning curve, used for "
        "pseudo-labels) trains on all labelled units with the run seed, as a single-model run "
        "does; false: it takes a bootstrap resample too (the paper's committee)")
    parallel: bool = Field(True, description="train the members at once, one Ray task (or Ray "
                           "Train run, with train.num_workers >= 1) each; false: one after another")
    cpus_per_member: float = Field(
        0.5, gt=0.0, description="CPUs a member's Ray task reserves (train.num_workers: 0)")


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
    select_epoch: Literal["best", "last"] = Field(
        "best", description="the (EMA) weights a training keeps as best.pt, the model that is "
        "evaluated and scores the pool: best: the epoch of highest validation mIoU; last: the "
        "final epoch's, so no validation frame chooses the model (validation mIoU is still "
        "recorded per epoch); last needs patience: null (a fixed schedule)")
    ema_decay: float | None = Field(0.99, gt=0.0, lt=1.0, description="Polyak/EMA of the weights; None: off")
    warm_start: bool = Field(True, description="start a round from the previous round's weights")
    seed_offset: int = Field(
        0, ge=0, description="training draws (weight init, batch order, augmentation) use seed + "
        "seed_offset; the initial set, selection and scoring keep the run seed: several training "
        "draws of one seed measure training noise on one machine (runs are deterministic there)")
    val_split: str | None = Field(None, description="split for early stopping and the best epoch; "
                                  "None: data.eval_split; may be sliced, 'val[:24]' (rayal.core.splits)")
    val_limit: int | None = Field(None, ge=1, description="validate on the first N frames only")
    steps_per_epoch: int | None = Field(
        None, ge=1, description="optimizer steps per epoch; None: one pass over the labelled set")
    num_workers: int = Field(0, ge=0, description="Ray Train workers; 0 runs in-process (local mode)")
    use_gpu: bool | None = Field(None, description="None: when CUDA is available")
    cpus_per_worker: float = Field(1.0, gt=0.0)
    torch_threads: int | None = Field(None, ge=1)
    storage_path: str | None = Field(None, description="Ray Train storage; None: <output_dir>/train")
    pseudo_labels: bool = Field(True, description="use pseudo-labels when the strategy supplies them (CEAL)")
    masks_dir: str | None = Field(
        None, description="annotators' masks (<frame_id>.png) for labels: pool; None: the dataset's masks")
    committee: CommitteeConfig = Field(default_factory=CommitteeConfig)

    @model_validator(mode="after")
    def _split_needs_list(self) -> "TrainConfig":
        if self.labels == "split" and not self.label_list:
            raise ValueError("train.label_list is required when train.labels is 'split'")
        check_split("train.val_split", self.val_split)
        if self.select_epoch == "last" and self.patience is not None:
            raise ValueError("train.select_epoch 'last' trains a fixed schedule, but train.patience "
                             f"is {self.patience} (early stopping on validation mIoU): set "
                             "train.patience: null")
        return self


class MadbalConfig(Section):
    """MADBAL multi-head model: three maturity heads, weight block, loss prediction.

    Phase II (after phase I trained the segmentation model) trains only the extra modules
    with SGD (momentum 0.9, learning rate decayed linearly to 0 over ``phase2_epochs``, the
    paper's schedule) on ``L_II = l0 L_centre + l1 L_boundary + sum_k l_{k+1} L_seg^k``.
    """

    enabled: bool = False
    stages: tuple[int, int, int] | None = Field(
        None, description="encoder stage indices of the shallow/middle/deep heads (1 = first "
        "stage after the input, increasing); None: the three stages before the deepest")
    head_channels: int = Field(64, ge=4, description="channels of each head's adapted features")
    phase2_epochs: int = Field(5, ge=1)
    phase2_lr: float = Field(0.01, gt=0.0, description="initial SGD learning rate of phase II")
    loss_weights: tuple[float, float, float, float, float] = Field(
        (1.0, 1.0, 0.05, 0.1, 0.15), description="lambda_0..4 of Eq. 3: centre, boundary, "
        "shallow / middle / deep head cross-entropy")
    edge_threshold: float = Field(0.1, gt=0.0, description="image-gradient magnitude (0..1) of a boundary")
    loss_channel: Literal["auto", "boundary", "centre"] = Field(
        "auto", description="loss-prediction channel that scales the pixel score: auto (Eq. 4) "
        "uses boundary on image edges and centre elsewhere")

    @field_validator("stages")
    @classmethod
    def _increasing_stages(cls, value: tuple[int, int, int] | None):
        if value is not None and not (1 <= value[0] < value[1] < value[2]):
            raise ValueError(f"madbal.stages must be increasing stage indices >= 1, got {list(value)}")
        return value

    @field_validator("loss_weights")
    @classmethod
    def _non_negative_weights(cls, value: tuple[float, ...]):
        if any(w < 0 for w in value) or not any(w > 0 for w in value):
            raise ValueError(f"madbal.loss_weights must be >= 0 with one > 0, got {list(value)}")
        return value


class VaalConfig(Section):
    """VAAL: a VAE and a discriminator on images (labelled vs unlabelled)."""

    image_size: tuple[int, int] = Field((64, 64), description="frames are resized to (H, W)")
    latent_dim: int = Field(32, ge=2)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(5e-4, gt=0.0)
    beta: float = Field(1.0, ge=0.0, description="KL weight of the VAE loss")
    adversary_weight: float = Field(1.0, ge=0.0)
    base_channels: int = Field(
        128, ge=4, description="channels of the first VAE conv (doubling to 8x); the paper's 128")
    frames_per_epoch: int | None = Field(
        2048, ge=1, description="labelled and (separately) unlabelled frames drawn per epoch, a "
        "fresh seeded sample each epoch; bounds memory; None: every frame (small pools only)")

    @field_validator("image_size")
    @classmethod
    def _multiple_of_16(cls, value: tuple[int, int]) -> tuple[int, int]:
        # four stride-2 convolutions down, three transposed ones up from (H/8, W/8)
        if any(v < 16 or v % 16 for v in value):
            raise ValueError(f"vaal.image_size must be multiples of 16 (>= 16), got {list(value)}")
        return value
