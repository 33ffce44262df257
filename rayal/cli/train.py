"""``rayal train CONFIG [--full]`` and ``rayal evaluate CONFIG --checkpoint PATH``."""
from __future__ import annotations

import argparse

from rayal.config import load_config


def add_train_parsers(sub, add_config_args) -> None:
    train = sub.add_parser("train", help="train on the labelled set through Ray Train")
    add_config_args(train)
    train.add_argument("--full", action="store_true",
                       help="train on every frame of data.pool_split (full-supervision reference)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate = sub.add_parser("evaluate", help="mIoU of a checkpoint on data.eval_split")
    add_config_args(evaluate)
    evaluate.add_argument("--checkpoint", required=True, help="rayal checkpoint (.pt)")
    evaluate.add_argument("--out", help="directory for metrics.json (default <output_dir>/evaluate)")


def cmd_train(args: argparse.Namespace) -> int:
    from rayal.pipeline.loop.train_job import run_training

    config = load_config(args.config, args.overrides)
    summary = run_training(config, full=args.full, progress=not args.no_progress)
    print("\ntrain summary")
    print(summary.table())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rayal.pipeline.loop.train_job import per_class_table, run_evaluation

    config = load_config(args.config, args.overrides)
    metrics = run_evaluation(config, args.checkpoint, args.out)
    print(per_class_table(metrics))
    print(f"metrics written to {metrics['out_dir']}/metrics.json")
    return 0
