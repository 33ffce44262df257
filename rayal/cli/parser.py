"""The ``rayal`` argument parser: every subcommand's arguments (the commands themselves live in
:mod:`rayal.cli.main` and the ``rayal.cli.*`` modules beside it). ``rayal submit`` parses the
command it forwards with this same parser, so it sits below both."""
from __future__ import annotations

import argparse

from rayal import __version__
from rayal.cli.experiment import add_experiment_parsers
from rayal.cli.pool import add_pool_parser
from rayal.cli.serve import add_serve_parser
from rayal.cli.train import add_train_parsers

DESCRIPTION = "``rayal`` command line: ``rayal score | pool ... CONFIG [--set key=value ...]``."


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (defaults when omitted)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. scoring.mc_samples=4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rayal", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"rayal {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error too (also RAYAL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score the unlabelled pool into parquet tables")
    _add_config_args(score)
    score.add_argument("--model", help="ARCH[:ENCODER] for a fresh smp model, or a checkpoint path")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.add_argument("--resume", action="store_true",
                       help="keep the part sets a killed run committed; score only the other frames")
    add_pool_parser(sub)
    add_train_parsers(sub, _add_config_args)
    add_experiment_parsers(sub, _add_config_args)
    add_submit_parsers(sub)
    add_serve_parser(sub, _add_config_args)
    _debug_flag(parser, skip=("submit",))   # submit passes what follows on to the job's rayal
    return parser


def _debug_flag(parser: argparse.ArgumentParser, skip=()) -> None:
    """``--debug`` after any subcommand too (``rayal train CONFIG --debug``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if name not in skip:
                    child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                       help="print the traceback of an error too")
                    _debug_flag(child)


# --- submit / jobs ----------------------------------------------------------------------------------
SUBMIT_EXAMPLE = """examples:
  rayal submit --address http://HEAD:8265 -- score configs/camvid.yaml --set output_dir=s3://b/runs/r0
  rayal submit --no-wait -- run configs/demo.yaml      # print the job id and return
  rayal jobs logs raysubmit_XXXX --follow
token: --token / --token-file, else RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token"""


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Jobs API, e.g. http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, "
                        "RAY_ADDRESS, else http://127.0.0.1:8265)")
    parser.add_argument("--token", help="cluster auth token (prefer RAY_AUTH_TOKEN or --token-file)")
    parser.add_argument("--token-file", help="file holding the cluster auth token")


def add_submit_parsers(subparsers) -> None:
    """Add ``submit`` and ``jobs`` to the ``rayal`` sub-parsers."""
    p = subparsers.add_parser(
        "submit", help="run a rayal command as a Ray job on a cluster and follow it",
        epilog=SUBMIT_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _client_args(p)
    p.add_argument("--working-dir", default=".",
                   help="directory uploaded as the job's working dir (default: .); holds the config")
    p.add_argument("--no-working-dir", action="store_true",
                   help="upload nothing: paths must exist on the cluster, rayal must be installed there")
    p.add_argument("--exclude", action="append", default=[], help="extra upload exclude pattern")
    p.add_argument("--pip", action="append", default=[],
                   help="pip requirement installed for the job, e.g. rayal==0.1.0 (the local "
                        "rayal package is then not uploaded)")
    p.add_argument("--no-ship-code", action="store_true", help="use the rayal installed on the cluster")
    p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="environment variable for the job (NAME copies the local value)")
    p.add_argument("--num-cpus", type=float, help="CPUs reserved for the driver (entrypoint)")
    p.add_argument("--num-gpus", type=float, help="GPUs reserved for the driver (entrypoint)")
    p.add_argument("--memory", type=int, help="bytes of memory reserved for the driver")
    p.add_argument("--submission-id", help="job id (default rayal-<command>-<time>-<random>)")
    p.add_argument("--python", default="python", help="python executable on the cluster")
    p.add_argument("--no-wait", action="store_true", help="submit, print the id and return")
    p.add_argument("--no-validate", action="store_true", help="skip the local config check")
    p.add_argument("job_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the rayal command to run, e.g. -- run configs/demo.yaml --set seed=1")

    jobs = subparsers.add_parser("jobs", help="Ray jobs on a cluster: list, status, logs, stop")
    sub = jobs.add_subparsers(dest="jobs_command", required=True)
    ls = sub.add_parser("list", help="jobs of the cluster, newest first")
    _client_args(ls)
    ls.add_argument("--limit", type=int, default=20, help="at most this many (0: all)")
    ls.add_argument("--json", action="store_true")
    for name, text in (("status", "one job's status"), ("logs", "one job's driver log"),
                       ("stop", "stop a job")):
        q = sub.add_parser(name, help=text)
        _client_args(q)
        q.add_argument("job_id")
        if name == "logs":
            q.add_argument("--follow", "-f", action="store_true",
                           help="stream until the job ends; exit code mirrors the job")
        if name == "stop":
            q.add_argument("--no-wait", action="store_true", help="do not wait until it has stopped")
