"""Config sections of experiments: ``loop`` (one AL run), ``compare`` and ``tune``."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rayal.config.base import Section


class LoopConfig(Section):
    """One simulated active-learning run: initial set, rounds, stop rule, reference."""

    initial: float = Field(0.1, gt=0, description="initial labelled units: a fraction (< 1) of "
                           "the pool's units or a count (>= 1), drawn at random (seeded)")
    rounds: int | None = Field(None, ge=0, description="AL rounds after the initial one; None: "
                               "until max_labelled")
    max_labelled: float | None = Field(0.5, gt=0, description="stop once labelled units reach "
                                       "this fraction (<= 1) or count (> 1)")
    full_miou: float | None = Field(None, gt=0, le=1, description="full-supervision mIoU; None: "
                                    "train the reference once (train --full) and cache it")
    reference_dir: str | None = Field(None, description="where the full-supervision reference is "
                                      "cached; None: <output_dir>/full")
    baseline: str | None = Field(None, description="also run this strategy (e.g. random) with "
                                 "the same seed, into <output_dir>/baseline_<name>")
    plot_frames: int = Field(4, ge=0, description="frames shown with their selected regions")
    keep_scores: bool = Field(False, description="keep each round's score tables")

    @model_validator(mode="after")
    def _a_stop_rule(self) -> "LoopConfig":
        if self.rounds is None and self.max_labelled is None:
            raise ValueError("give loop.rounds or loop.max_labelled (or both)")
        return self


class CompareConfig(Section):
    """``rayal compare``: strategies x seeds, each a whole run."""

    strategies: list[str] = Field(default_factory=lambda: ["random", "entropy"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    params: dict[str, dict] = Field(default_factory=dict, description="strategy -> selection.params")
    overrides: dict[str, list[str]] = Field(
        default_factory=dict, description="strategy -> extra KEY=VALUE overrides for its runs")

    @model_validator(mode="after")
    def _non_empty(self) -> "CompareConfig":
        if not self.strategies or not self.seeds:
            raise ValueError("compare.strategies and compare.seeds must not be empty")
        return self


class TuneConfig(Section):
    """``rayal tune``: a Ray Tune sweep where every trial is a whole simulated run."""

    search_space: dict[str, dict] = Field(
        default_factory=lambda: {"selection.strategy": {"choice": ["random", "entropy"]}},
        description="config key -> {choice: [...]} | {uniform: [lo, hi]} | {loguniform: [lo, hi]} "
                    "| {randint: [lo, hi]}")
    num_samples: int = Field(4, ge=1)
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: rounds before a trial may be stopped")
    reduction_factor: int = Field(2, ge=2)
    max_concurrent_trials: int | None = Field(None, ge=1, description="None: from the CPUs available")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    name: str = "tune"
    storage_path: str | None = Field(None, description="None: <output_dir>/ray_tune")
