"""``rayal run CONFIG [--resume]``, ``rayal compare CONFIG...`` and ``rayal tune CONFIG``."""
from __future__ import annotations

import argparse

from rayal.config import load_config


def add_experiment_parsers(sub, add_config_args) -> None:
    run = sub.add_parser("run", help="one simulated active-learning experiment")
    add_config_args(run)
    run.add_argument("--resume", action="store_true", help="continue a stopped run in output_dir")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    compare = sub.add_parser(
        "compare", help="strategies x seeds of each config's compare: section, side by side "
        "(resumable: finished runs are kept)")
    compare.add_argument("configs", nargs="+", metavar="CONFIG",
                         help="YAML config(s); each is compared into its own output_dir")
    compare.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a value of every config, e.g. compare.seeds=[0,1,2]")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")
    compare.add_argument("--finished-only", action="store_true",
                         help="run nothing: write the comparison from the runs already finished")

    tune = sub.add_parser(
        "tune", help="Ray Tune sweep of whole simulated runs over the tune: search space "
        "(rerun with the same output_dir to resume)")
    add_config_args(tune)
    tune.add_argument("--no-progress", action="store_true", help="no Tune progress table")


def cmd_run(args: argparse.Namespace) -> int:
    from rayal.pipeline.loop.experiment import run_with_baseline
    from rayal.pipeline.loop.selection_params import check_run

    config = load_config(args.config, args.overrides)
    check_run(config)   # a strategy's bad params or missing tables fail now, not after round 0
    run_with_baseline(config, resume=args.resume, progress=not args.no_progress)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rayal.pipeline.study.compare import compare_all

    configs = [load_config(path, args.overrides) for path in args.configs]   # all checked first
    compare_all(configs, progress=not args.no_progress, finished_only=args.finished_only)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from rayal.pipeline.study.tune import run_tune

    result = run_tune(load_config(args.config, args.overrides), progress=not args.no_progress)
    print(f"\n{result['table']}\n(written to {result['output_dir']})")
    return 0
