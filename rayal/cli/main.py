"""``rayal`` command line: ``rayal score | pool ... CONFIG [--set key=value ...]``."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

from rayal.cli.pool import cmd_pool
from rayal.cli.serve import cmd_serve
from rayal.cli.parser import build_parser
from rayal.cli.submit import COMMANDS as SUBMIT_COMMANDS, job_argv
from rayal.cli.experiment import cmd_compare, cmd_run, cmd_tune
from rayal.cli.train import cmd_evaluate, cmd_train
from rayal.config import load_config
from rayal.errors import RayalError, RayalWarning


def _model_override(spec: str) -> list[str]:
    """``--model ARCH[:ENCODER]`` or ``--model path/to/checkpoint.pt``."""
    if Path(spec).suffix in (".pt", ".pth", ".ckpt") or Path(spec).is_file():
        return [f"model.checkpoint={spec}"]
    arch, _, encoder = spec.partition(":")
    out = [f"model.arch={arch}", "model.checkpoint=null"]
    return out + ([f"model.encoder={encoder}"] if encoder else [])


def cmd_score(args: argparse.Namespace) -> int:
    from rayal.pipeline.score.score_job import run_scoring

    overrides = list(args.overrides) + (_model_override(args.model) if args.model else [])
    config = load_config(args.config, overrides)
    summary = run_scoring(config, progress=not args.no_progress, resume=args.resume)
    print("\nscore summary")
    print(summary.table())
    return 0


COMMANDS = {"score": cmd_score, "pool": cmd_pool, "train": cmd_train, "evaluate": cmd_evaluate, "run": cmd_run}
COMMANDS.update(SUBMIT_COMMANDS)
COMMANDS.update(compare=cmd_compare, tune=cmd_tune, serve=cmd_serve)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix (bad config, input item, store, pool state)."""
    from rayal.data.errors import FrameError
    from rayal.data.io import StorageError
    from rayal.pool.journal import JournalCorruptError

    return (RayalError, FrameError, StorageError, FileNotFoundError, JournalCorruptError, ValueError)


def _causes(err: BaseException):
    """What a Ray or Ray Train wrapper says caused ``err``: a task's or actor's own exception
    (``RayTaskError.cause``), a Train worker's or controller's failure, then ``__cause__``."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        yield cause
    yield from (e for e in (getattr(err, "worker_failures", None) or {}).values()
                if isinstance(e, BaseException))
    for name in ("controller_failure", "__cause__"):
        value = getattr(err, name, None)
        if isinstance(value, BaseException):
            yield value


def user_error(err: BaseException) -> BaseException | None:
    """The user-facing exception behind ``err`` (``err`` itself, or the cause a Ray task, Ray
    actor or Ray Train worker wrapped), or None when it is a bug (keep its traceback).

    A KeyError counts only when a Ray actor or task raised it (the pool coordinator's
    "round N has no query"); in the driver it is a bug."""
    from ray.exceptions import RayError

    types = _user_error_types()
    todo, seen = [(err, False)], set()
    while todo:
        e, remote = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        wrapper = isinstance(e, RayError) or type(e).__module__.startswith("ray.")
        if not wrapper and (isinstance(e, types) or (remote and isinstance(e, KeyError))):
            return e
        todo.extend((c, remote or wrapper) for c in _causes(e))
    return None


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (a KeyError's own text, not its repr)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(lines) or type(err).__name__


def _warning_format(command: str, plain):
    """``showwarning`` printing a :class:`RayalWarning` as ``rayal <cmd>: warning: <message>``
    and anything else as ``plain`` does."""
    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, RayalWarning):
            return plain(message, category, filename, lineno, file, line)
        print(f"rayal {command}: warning: {message}", file=file or sys.stderr)
    return show


def main(argv: list[str] | None = None) -> int:
    """Run one ``rayal`` command; returns its exit status.

    Every user-facing error (a :class:`rayal.errors.RayalError`, a bad frame or mask, a store
    or path that refuses, a config ValueError; also when a Ray task, actor or Ray Train worker
    raised it) is printed as ``rayal <cmd>: error: <one line>`` and returns 2, without a
    traceback unless ``--debug`` (or ``RAYAL_DEBUG=1``) asks for it. Ctrl-C prints one line and
    returns 130. Anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    command = args.command + (f" {args.pool_command}" if args.command == "pool" else "")
    debug = args.debug or os.environ.get("RAYAL_DEBUG", "") not in ("", "0")
    plain = warnings.showwarning
    warnings.showwarning = _warning_format(command, plain)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"rayal {command}: interrupted; what finished is kept (rayal run --resume and "
              "rayal compare continue where they stopped)", file=sys.stderr)
        return 130
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"rayal {command}: error: {one_line(cause)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = plain


def job_entry(subcommand: str, argv: list[str] | None = None) -> int:
    """Entry point of ``jobs/<subcommand>.py`` (plain ``ray job submit -- python jobs/x.py ...``)."""
    parser = argparse.ArgumentParser(prog=f"jobs/{subcommand}.py",
                                     description=f"Ray job entry point: `rayal {subcommand}`; other "
                                                 "arguments are passed on")
    parser.add_argument("--config", help="YAML config (defaults when omitted)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args, rest = parser.parse_known_args(argv)
    return main(job_argv(subcommand, args.config, args.overrides, rest))


if __name__ == "__main__":
    sys.exit(main())
