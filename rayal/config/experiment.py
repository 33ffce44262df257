"""Config sections of experiments: ``loop`` (one AL run), ``compare`` and ``tune``."""
from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rayal.config.base import Section
from rayal.errors import RayalWarning


class LoopConfig(Section):
    """One simulated active-learning run: initial set, rounds, stop rule, reference."""

    initial: float = Field(0.1, gt=0, description="initial labelled units: a fraction (< 1) of "
                           "the pool's units or a count (>= 1), drawn at random (seeded)")
    initial_strategy: str = Field("random", description="strategy of round 0 (the cold start), "
                                  "on the untrained model's scores: random, or a representative "
                                  "pick such as typiclust (needs scoring.embeddings)")
    initial_params: dict = Field(default_factory=dict, description="initial_strategy's parameters")
    rounds: int | None = Field(None, ge=0, description="AL rounds after the initial one; None: "
                               "until max_labelled")
    max_labelled: float | None = Field(0.5, gt=0, description="stop once labelled units reach "
                                       "this fraction (<= 1) or count (> 1)")
    full_miou: float | None = Field(None, gt=0, le=1, description="full-supervision mIoU; None: "
                                    "train the reference once (train --full) and cache it")
    reference_dir: str | None = Field(None, description="where the full-supervision reference is "
                                      "cached; None: <output_dir>/full")
    reference_epochs: int | None = Field(None, ge=1, description="epochs of the full-supervision "
                                         "reference; None: reference_factor x what one run's "
                                         "model trains in all ((rounds + 1) x train.epochs when "
                                         "warm-started with fixed rounds, else train.epochs)")
    reference_factor: int = Field(1, ge=1, description="how many times a run's training the "
                                  "derived reference gets: small models from scratch are far "
                                  "from converged after one run's steps, and a reference below "
                                  "the runs is no ceiling (rayal compare warns when a run ends "
                                  "above it)")
    baseline: str | None = Field(None, description="also run this strategy (e.g. random) with "
                                 "the same seed, into <output_dir>/baseline_<name>")
    annotation: Literal["dominant", "one_pixel"] = Field(
        "dominant", description="how the simulated annotator labels a superpixel: its dominant "
        "ground-truth label (one click), or MADBAL's one pixel: the true label of its "
        "highest-scoring pixel under the current model (one click)")
    persistent_scoring: bool = Field(True, description="score every round with scoring actors "
                                     "kept for the whole run (no per-round Ray Data start-up); "
                                     "false: a fresh rayal-score job each round")
    plot_frames: int = Field(4, ge=0, description="frames shown with their selected regions")
    keep_scores: bool = Field(False, description="keep each round's score tables")

    @model_validator(mode="after")
    def _a_stop_rule(self) -> "LoopConfig":
        if self.rounds is None and self.max_labelled is None:
            raise ValueError("give loop.rounds or loop.max_labelled (or both)")
        return self


class CompareConfig(Section):
    """``rayal compare``: strategies x seeds, each a whole run into ``<output_dir>/<strategy>/seed<k>``.

    A strategy's runs use ``params[strategy]`` as ``selection.params`` (the base
    ``selection.params`` when it is the base strategy and has no entry; ``{}`` otherwise), then
    ``overrides[strategy]`` (KEY=VALUE, e.g. ``scoring.mode=multi_head`` for MADBAL).
    """

    strategies: list[str] = Field(default_factory=lambda: ["random", "entropy"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    params: dict[str, dict] = Field(default_factory=dict, description="strategy -> selection.params")
    overrides: dict[str, list[str]] = Field(
        default_factory=dict, description="strategy -> extra KEY=VALUE overrides for its runs")
    variants: dict[str, str] = Field(
        default_factory=dict, description="label -> registered strategy it runs: one strategy "
        "twice with other params (e.g. entropy_kcenter: entropy); labels go in strategies, "
        "params, overrides, the tables and the run directories")
    draws: int = Field(
        1, ge=1, description="training draws per strategy x seed: draw d trains with "
        "train.seed_offset + 1000 d (same initial set, selection seed and reference), into "
        "<strategy>/seed<k> (d = 0) and <strategy>/seed<k>_draw<d>; the statistics average a "
        "seed's draws before pairing it, and verdicts.json reports the training noise")

    @model_validator(mode="after")
    def _non_empty(self) -> "CompareConfig":
        if not self.strategies or not self.seeds:
            raise ValueError("compare.strategies and compare.seeds must not be empty")
        for name, values in (("strategies", self.strategies), ("seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise ValueError(f"compare.{name} has duplicates: {values}")
        _known_strategies("compare", self.strategies, self.params, self.overrides)
        return self


def _known_strategies(section: str, strategies: list[str] | None, params: dict, overrides: dict) -> None:
    """``params`` / ``overrides`` entries of strategies not in the sweep are dropped with a
    :class:`RayalWarning` naming them: narrowing ``--set compare.strategies=[...]`` must not
    require editing the tables too, and a typo in a name still shows up."""
    if strategies is None:
        return
    for name, table in (("params", params), ("overrides", overrides)):
        extra = sorted(set(table) - set(strategies))
        if extra:
            warnings.warn(f"{section}.{name} has entries for {extra}, which are not among the "
                          f"strategies {strategies}: ignored", RayalWarning, stacklevel=2)
            for key in extra:   # in place: the model validator must not re-run itself
                del table[key]


DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")


def check_distribution(key: str, spec) -> None:
    """One search-space entry: ``{choice|grid: [v, ...]}`` or ``{uniform|loguniform|randint: [lo, hi]}``
    (``randint`` draws from ``lo .. hi - 1``, as ``tune.randint``)."""
    where = f"tune.search_space[{key!r}]"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"{where} must be one of {{{' | '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"{where}: unknown distribution {kind!r}; choose from {list(DISTRIBUTIONS)}")
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: {kind} needs a non-empty list of values, got {args!r}")
        return
    if not (isinstance(args, (list, tuple)) and len(args) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args)):
        raise ValueError(f"{where}: {kind} needs [lo, hi] numbers, got {args!r}")
    lo, hi = args
    if not lo < hi:
        raise ValueError(f"{where}: {kind} needs lo < hi, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}: loguniform needs lo > 0, got {lo}")
    if kind == "randint" and not all(isinstance(v, int) for v in args):
        raise ValueError(f"{where}: randint needs integer bounds, got {args!r}")


class TuneConfig(Section):
    """``rayal tune``: a Ray Tune sweep where every trial is a whole simulated run.

    Keys of ``search_space`` are dotted config keys (``selection.strategy``, ``train.lr``,
    ``selection.params.aggregate``...). A trial whose strategy is not the base one starts from
    ``params[strategy]`` (else ``{}``) and ``overrides[strategy]``, as in ``compare``; sampled
    ``selection.params.*`` values its strategy does not take are left out of that trial.
    """

    search_space: dict[str, dict] = Field(
        default_factory=lambda: {"selection.strategy": {"choice": ["random", "entropy"]}},
        description="config key -> {choice: [...]} | {grid: [...]} | {uniform: [lo, hi]} | "
                    "{loguniform: [lo, hi]} | {randint: [lo, hi]} (hi exclusive)")
    params: dict[str, dict] = Field(default_factory=dict, description="strategy -> selection.params")
    overrides: dict[str, list[str]] = Field(
        default_factory=dict, description="strategy -> extra KEY=VALUE overrides for its trials")
    num_samples: int = Field(4, ge=1, description="trials drawn (times the grid size with grid: entries)")
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: rounds before a trial may be stopped")
    reduction_factor: int = Field(2, ge=2)
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="most trials at once; None, or more than fit: as many as leave "
        "room for each trial's nested work (scoring actors + decode task, or Train workers)")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs held by the trial process itself "
                                  "(its nested work asks for its own: ray.*, train.*)")
    stall_timeout_s: float | None = Field(
        3600.0, gt=0, description="fail the sweep (resumable) when no trial starts, reports a "
        "round or ends for this long; None: wait forever")
    gpus_per_trial: float = Field(
        0.0, ge=0, description="GPUs held by the trial process itself; its scoring actors and Ray "
        "Train workers ask for their own (ray.gpus_per_actor, train.use_gpu), so usually 0")
    name: str = Field("tune", pattern=r"^[A-Za-z0-9_.-]+$")
    storage_path: str | None = Field(None, description="local or shared path; None: <output_dir>/ray_tune")

    @field_validator("search_space")
    @classmethod
    def _distributions(cls, space: dict[str, dict]) -> dict[str, dict]:
        if not space:
            raise ValueError("tune.search_space must not be empty")
        for key, spec in space.items():
            check_distribution(key, spec)
        return space

    @model_validator(mode="after")
    def _strategy_tables(self) -> "TuneConfig":
        spec = self.search_space.get("selection.strategy") or {}
        strategies = spec.get("choice", spec.get("grid"))
        _known_strategies("tune", strategies, self.params, self.overrides)
        return self
