"""One pydantic model per YAML section.

Every model forbids unknown keys, so a typo such as ``scoring.mc_sample`` is an
error that names the field instead of a silently ignored setting.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rayal.core.measures import FRAME_MEASURES, MC_MEASURES, PIXEL_MEASURES, measure_names
from rayal.core.names import NameView
from rayal.core.plugins import load_plugins
from rayal.core.splits import check_split, parse_split
from rayal.core.units import get_unit, unit_names

# live views of the measure registry (rayal.core.measures): a plugin's measure is valid here
ALL_MEASURES = NameView(lambda: measure_names() + ("ovr_entropy",))

from rayal.config.base import Section  # noqa: E402
from rayal.config.experiment import CompareConfig, LoopConfig, TuneConfig
from rayal.config.serve import ServeConfig
from rayal.config.training import MadbalConfig, TrainConfig, VaalConfig


class SyntheticConfig(Section):
    """Built-in street-like scenes (``data.source: synthetic``)."""

    num_frames: int = Field(200, ge=1)
    height: int = Field(96, ge=16)
    width: int = Field(128, ge=16)
    seed: int = 0
    eval_frames: int = Field(32, ge=1, description="frames of the eval split (rendered with seed + 1)")


class DataConfig(Section):
    """Where frames (and, for simulation, their masks) come from.

    ``source: folder`` pairs ``root/images`` with ``root/masks`` by file stem;
    ``{split}`` in either is replaced by the split name, so the CamVid layout
    (``train/`` + ``trainannot/``) is ``images: "{split}"``, ``masks: "{split}annot"``.
    ``source: manifest`` streams a parquet of ``frame_id, uri`` (local or s3:// gs://).
    """

    source: Literal["folder", "manifest", "synthetic"] = "synthetic"
    root: str | None = None
    images: str = "{split}"
    masks: str | None = "{split}annot"
    pool_split: str = "train"
    eval_split: str = Field("val", description="split each round is evaluated on; may be sliced, "
                            "'val[24:]' (rayal.core.splits)")
    split_files: dict[str, str] = Field(default_factory=dict)
    manifest: str | None = None
    num_classes: int | None = Field(None, ge=2)
    ignore_index: int = 255
    class_names: list[str] | None = None
    image_size: tuple[int, int] | None = None
    limit: int | None = Field(None, ge=1, description="score only the first N frames")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @model_validator(mode="after")
    def _source_needs_location(self) -> "DataConfig":
        if self.source == "folder" and not self.root:
            raise ValueError("data.root is required when data.source is 'folder'")
        if self.source == "manifest" and not self.manifest:
            raise ValueError("data.manifest is required when data.source is 'manifest'")
        if self.class_names is not None and self.num_classes is not None \
                and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"data.class_names has {len(self.class_names)} names "
                f"but data.num_classes is {self.num_classes}")
        for field in ("pool_split", "eval_split"):
            check_split(f"data.{field}", getattr(self, field))
        if parse_split(self.pool_split)[1] is not None:
            raise ValueError(f"data.pool_split {self.pool_split!r}: the pool split cannot be "
                             f"sliced; data.limit takes its first N frames")
        name, part = parse_split(self.eval_split)
        if part is not None and name == self.pool_split:
            raise ValueError(f"data.eval_split {self.eval_split!r} slices the pool split: those "
                             f"frames stay in the pool, to be selected and trained on; slice "
                             f"another split")
        if self.image_size is not None and min(self.image_size) < 8:
            raise ValueError(f"data.image_size must be (H, W) >= 8, got {self.image_size}")
        return self


class ModelConfig(Section):
    """A segmentation-models-pytorch model, or a rayal checkpoint that carries one."""

    arch: str = "Unet"
    encoder: str = "mobilenet_v2"
    encoder_weights: str | None = Field(
        None, description="None (random init) or a local weights file; never downloaded")
    encoder_depth: int = Field(5, ge=3, le=5)
    decoder_channels: list[int] | None = None
    checkpoint: str | None = Field(None, description="rayal checkpoint; overrides arch/encoder")
    extra: dict = Field(default_factory=dict, description="extra keyword arguments for the smp class")

    @field_validator("encoder_weights")
    @classmethod
    def _no_hub_names(cls, value: str | None) -> str | None:
        if value in ("imagenet", "ssl", "swsl", "instagram", "noisy-student"):
            raise ValueError(
                f"model.encoder_weights={value!r} would download weights; give a local file path")
        return value


class SuperpixelConfig(Section):
    method: Literal["slic", "seeds"] = "slic"
    n_segments: int = Field(100, ge=2)
    compactness: float = Field(10.0, gt=0)


class SelfSupervisedConfig(Section):
    """SimCLR (Chen et al., ICML 2020) trained once on the pool's frames, no labels: the frame
    embedding space of TypiClust and ProbCover as their papers specify it (TypiClust Sec. 3.1,
    ProbCover Sec. 4). ``scoring.embedding_model: self_supervised`` turns it on."""

    epochs: int = Field(60, ge=1, description="passes over the training frames")
    batch_size: int = Field(128, ge=2, description="frames per step; 2 x this views (NT-Xent)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    temperature: float = Field(0.5, gt=0, description="NT-Xent temperature tau")
    projection_dim: int = Field(128, ge=2, description="output of the 2-layer projection head")
    image_size: tuple[int, int] | None = Field(
        None, description="[height, width] frames are resized to; None: data.image_size")
    max_frames: int = Field(50_000, ge=2, description="train on at most this many pool frames "
                            "(a seeded sample); every frame is still embedded")
    seed: int = Field(0, description="seeds initialisation, sampling and the augmentations; "
                      "fixed per pool, so every run and seed of a comparison shares one encoder")
    cache: str | None = Field(None, description="directory of trained encoders (one per data + "
                              "setting); None: <reference dir's parent>/ssl_cache for rayal run / "
                              "compare, <output_dir>/ssl_cache for rayal score")
    checkpoint: str | None = Field(None, description="a trained encoder file (set by rayal once "
                                   "trained; give one to skip training)")


class ScoringConfig(Section):
    """What the scoring job computes for every frame."""

    measures: list[str] = Field(
        default_factory=lambda: ["entropy", "margin", "least_confidence", "bald",
                                 "vote_entropy", "variance", "area_disagreement"])
    mc_samples: int = Field(10, ge=0, description="T; 0 disables MC-dropout")
    dropout_p: float = Field(0.2, gt=0.0, lt=1.0)
    dropout_position: Literal["logits", "head_input"] = "logits"
    point_estimate: Literal["deterministic", "mc_mean"] = Field(
        "deterministic",
        description="p used by entropy/margin/least_confidence/ovr: plain forward or MC mean")
    dice: Literal["macro", "joint"] = "macro"
    aggregate: list[Literal["mean", "max"]] = Field(default_factory=lambda: ["mean", "max"])
    units: list[str] = Field(default_factory=lambda: ["patch"],
                             description="region units scored (rayal.core unit registry)")
    grid: tuple[int, int] = (4, 4)
    superpixel: SuperpixelConfig = Field(default_factory=SuperpixelConfig)
    region_cache: str | None = Field(
        None, description="directory (local or s3://) where superpixel maps are kept once per "
        "frame and setting, for scoring, training, annotation and export; rayal run / compare "
        "use <reference dir's parent>/region_cache when unset")
    ovr: bool = Field(False, description="per-class one-vs-rest entropy max per region")
    top_k_regions: int | None = Field(
        16, ge=1, description="keep per frame the union of the top-k regions of every score key")
    embeddings: list[Literal["frame", "region"]] = Field(default_factory=list)
    embedding_model: Literal["model", "self_supervised"] = Field(
        "model", description="model: the task model's deepest encoder map, pooled; "
        "self_supervised: a SimCLR encoder trained once on the pool (scoring.self_supervised), "
        "frame embeddings only")
    self_supervised: SelfSupervisedConfig = Field(default_factory=SelfSupervisedConfig)
    embedding_dtype: Literal["float16", "float32"] = "float16"
    scale: float = Field(1.0, gt=0.0, le=4.0, description="input scale the scores are computed at")
    batch_size: int = Field(8, ge=1)
    commit_frames: int = Field(
        10_000, ge=1, description="frames per committed part set of the score tables: a killed "
        "job resumed with --resume redoes at most this many (or commit_seconds' worth)")
    commit_seconds: float = Field(60.0, gt=0.0, description="commit a part set at least this often")
    mode: Literal["mc_dropout", "multi_head", "committee"] = Field(
        "mc_dropout", description="multi_head: the MADBAL model's maturity_score (needs "
        "madbal.enabled); committee: the train.committee.members models' outputs are the MC "
        "samples (K x mc_samples with dropout inside each member; mc_samples 0: K)")

    @field_validator("units")
    @classmethod
    def _region_units(cls, values: list[str]) -> list[str]:
        known = unit_names("region")
        unknown = [u for u in values if u not in known]
        if unknown:
            raise ValueError(f"unknown region unit(s) {unknown}; choose from {list(known)}")
        return values

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, values: list[str]) -> list[str]:
        unknown = [m for m in values if m not in FRAME_MEASURES]
        if unknown:
            raise ValueError(f"unknown measure(s) {unknown}; choose from {list(FRAME_MEASURES)}")
        if len(set(values)) != len(values):
            raise ValueError(f"duplicate measure in {values}")
        return values

    @model_validator(mode="after")
    def _self_supervised_size(self) -> "ScoringConfig":
        size = self.self_supervised.image_size
        if size is not None and min(size) < 8:
            raise ValueError(f"scoring.self_supervised.image_size must be (H, W) >= 8, got {size}")
        return self

    @model_validator(mode="after")
    def _self_supervised_frames(self) -> "ScoringConfig":
        if self.embedding_model == "self_supervised" and self.embeddings != ["frame"]:
            raise ValueError("scoring.embedding_model 'self_supervised' gives frame embeddings "
                             f"only: set scoring.embeddings to [frame] (got {self.embeddings}); "
                             "region embeddings come from embedding_model 'model'")
        return self

    @model_validator(mode="after")
    def _mc_measures_need_samples(self) -> "ScoringConfig":
        needs_mc = [m for m in self.measures if m in MC_MEASURES]
        if self.mode == "committee":   # K x T samples: checked with train.committee (RayalConfig)
            return self
        if needs_mc and self.mc_samples < 2:
            raise ValueError(f"scoring.mc_samples must be >= 2 for {needs_mc}")
        if self.point_estimate == "mc_mean" and self.mc_samples < 2:
            raise ValueError("scoring.point_estimate 'mc_mean' needs scoring.mc_samples >= 2")
        return self

    @property
    def uses_mc(self) -> bool:
        return any(m in MC_MEASURES for m in self.measures) or self.point_estimate == "mc_mean"


class RayConfig(Section):
    """How the job uses the Ray cluster."""

    address: str | None = Field(
        None, description="None: connect to RAY_ADDRESS if set, else start a local Ray")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray started in-process")
    object_store_memory: int | None = Field(None, ge=78643200)
    actors: int = Field(1, ge=1, description="scoring actor pool size")
    cpus_per_actor: float = Field(1.0, gt=0.0)
    gpus_per_actor: float | None = Field(
        None, ge=0.0, description="None: 1 when CUDA is available, else 0")
    torch_threads: int | None = Field(None, ge=1, description="torch threads inside each actor")
    decode_cpus: float = Field(0.5, gt=0.0, description="CPUs per decode task")
    max_frames_in_flight: int | None = Field(None, ge=1)


class SelectionConfig(Section):
    """Which strategy picks the next query, and how much it may pick."""

    strategy: str = "entropy"
    params: dict = Field(default_factory=dict, description="strategy parameters")
    budget: int | None = Field(16, ge=0, description="units per round")
    budget_cost: float | None = Field(None, ge=0, description="clicks per round (cost-aware)")
    plugins: list[str] = Field(
        default_factory=list, description="modules or .py files imported first: they register "
        "strategies, measures and units (rayal run / compare / tune / pool select)")

    @model_validator(mode="after")
    def _one_budget(self) -> "SelectionConfig":
        if (self.budget is None) == (self.budget_cost is None):
            raise ValueError("give exactly one of selection.budget and selection.budget_cost")
        return self


class PoolConfig(Section):
    """The durable pool state of one project and its coordinator actor."""

    project: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    unit: str = Field("image", description="annotation unit (rayal.core unit registry)")
    state_dir: str = Field("runs/pool", description="journal + snapshots, local or s3://")
    namespace: str = "rayal"
    lease_seconds: float = Field(7 * 24 * 3600.0, gt=0)
    snapshot_every: int = Field(10_000, ge=1, description="journal records between snapshots")
    lock_ttl: float = Field(60.0, ge=2, description="seconds the one-writer lease of state_dir "
                            "lasts unless renewed (a crashed holder blocks at most this long)")

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        get_unit(value)   # ValueError naming the unit and the registered ones
        return value


class RayalConfig(Section):
    """The whole YAML file."""

    name: str = "rayal"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: str = "runs/rayal"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    madbal: MadbalConfig = Field(default_factory=MadbalConfig)
    vaal: VaalConfig = Field(default_factory=VaalConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data):
        """Import ``selection.plugins`` before the sections are validated, so that their units,
        measures and strategies are known to the checks below."""
        selection = data.get("selection") if isinstance(data, dict) else None
        plugins = selection.get("plugins") if isinstance(selection, dict) else None
        if isinstance(plugins, (list, tuple)) and all(isinstance(p, str) for p in plugins):
            try:
                load_plugins(plugins)
            except ImportError as err:
                raise ValueError(f"selection.plugins: {err}") from None
        return data

    @model_validator(mode="after")
    def _validation_outside_the_pool(self) -> "RayalConfig":
        val = self.train.val_split
        name, part = parse_split(val) if val is not None else (None, None)
        if part is not None and name == self.data.pool_split:
            raise ValueError(f"train.val_split {val!r} slices the pool split: those frames stay in "
                             f"the pool, to be selected and trained on; slice another split")
        return self

    @model_validator(mode="after")
    def _multi_head_needs_madbal(self) -> "RayalConfig":
        if self.scoring.mode == "multi_head" and not self.madbal.enabled:
            raise ValueError("scoring.mode 'multi_head' needs madbal.enabled: true")
        return self

    @model_validator(mode="after")
    def _committee_samples(self) -> "RayalConfig":
        k, sc = self.train.committee.members, self.scoring
        if sc.mode != "committee":
            if k > 1:
                raise ValueError(f"train.committee.members={k} trains a committee that only "
                                 "scoring.mode 'committee' scores; set scoring.mode: committee "
                                 "or train.committee.members: 1")
            return self
        samples = k * max(sc.mc_samples if sc.uses_mc else 0, 1)
        needs = [m for m in sc.measures if m in MC_MEASURES]
        if sc.point_estimate == "mc_mean":
            needs.append("point_estimate mc_mean")
        if needs and samples < 2:
            raise ValueError(f"scoring.mode 'committee' with train.committee.members={k} and "
                             f"scoring.mc_samples={sc.mc_samples} gives {samples} sample; {needs} "
                             "need >= 2: raise train.committee.members")
        return self

    @model_validator(mode="after")
    def _one_pixel_needs_superpixels(self) -> "RayalConfig":
        if self.loop.annotation == "one_pixel" and self.pool.unit != "superpixel":
            raise ValueError(f"loop.annotation 'one_pixel' labels superpixels; pool.unit is "
                             f"{self.pool.unit!r}")
        return self
