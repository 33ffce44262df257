"""``rayal`` command line: ``rayal score | pool ... CONFIG [--set key=value ...]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rayal import __version__
from rayal.cli.pool import add_pool_parser, cmd_pool
from rayal.cli.submit import COMMANDS as SUBMIT_COMMANDS, add_submit_parsers
from rayal.cli.experiment import add_experiment_parsers, cmd_compare, cmd_run, cmd_tune
from rayal.cli.train import add_train_parsers, cmd_evaluate, cmd_train
from rayal.config import ConfigError, load_config
from rayal.data.io import StorageError


def _model_override(spec: str) -> list[str]:
    """``--model ARCH[:ENCODER]`` or ``--model path/to/checkpoint.pt``."""
    if Path(spec).suffix in (".pt", ".pth", ".ckpt") or Path(spec).is_file():
        return [f"model.checkpoint={spec}"]
    arch, _, encoder = spec.partition(":")
    out = [f"model.arch={arch}", "model.checkpoint=null"]
    return out + ([f"model.encoder={encoder}"] if encoder else [])


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (defaults when omitted)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. scoring.mc_samples=4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rayal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score the unlabelled pool into parquet tables")
    _add_config_args(score)
    score.add_argument("--model", help="ARCH[:ENCODER] for a fresh smp model, or a checkpoint path")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pool_parser(sub)
    add_train_parsers(sub, _add_config_args)
    add_experiment_parsers(sub, _add_config_args)
    add_submit_parsers(sub)
    return parser


def cmd_score(args: argparse.Namespace) -> int:
    from rayal.pipeline.score_job import run_scoring

    overrides = list(args.overrides) + (_model_override(args.model) if args.model else [])
    config = load_config(args.config, overrides)
    summary = run_scoring(config, progress=not args.no_progress)
    print("\nscore summary")
    print(summary.table())
    return 0


COMMANDS = {"score": cmd_score, "pool": cmd_pool, "train": cmd_train, "evaluate": cmd_evaluate, "run": cmd_run}
COMMANDS.update(SUBMIT_COMMANDS)
COMMANDS.update(compare=cmd_compare, tune=cmd_tune)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, FileNotFoundError, ValueError, StorageError) as err:
        print(f"rayal {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
