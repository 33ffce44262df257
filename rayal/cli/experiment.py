"""``rayal run CONFIG [--resume]``, ``rayal compare CONFIG...`` and ``rayal tune CONFIG``."""
from __future__ import annotations

import argparse

from rayal.config import load_config


def add_experiment_parsers(sub, add_config_args) -> None:
    run = sub.add_parser("run", help="one simulated active-learning experiment")
    add_config_args(run)
    run.add_argument("--resume", action="store_true", help="continue a stopped run in output_dir")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_run(args: argparse.Namespace) -> int:
    from rayal.pipeline.experiment import run_with_baseline

    config = load_config(args.config, args.overrides)
    run_with_baseline(config, resume=args.resume, progress=not args.no_progress)
    return 0
