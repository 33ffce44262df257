"""``rayal submit [options] -- COMMAND ...`` and ``rayal jobs list | status | logs | stop``.

``submit`` runs any ``rayal`` command (``run``, ``score``, ``tune``, ``train``,
``pool ...``) as a Ray job through the Jobs API, then follows it: status, the
driver's log streamed as it is written, and an exit code that mirrors the job
(0 exactly when it SUCCEEDED, 1 FAILED, 3 STOPPED, 2 when nothing was submitted).
The command is parsed and its config validated locally first, so a typo fails in
a second instead of after the upload. The two parsers are
built in :mod:`rayal.cli.parser`; ``rayal.cli.main`` dispatches ``submit`` / ``jobs`` through
:data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path

from rayal import __version__
from rayal.cli.parser import build_parser


def _note(message: str) -> None:
    print(f"[rayal] {message}", file=sys.stderr, flush=True)


def _client(args):
    import logging

    from rayal.pipeline.jobs_client import connect, resolve_token

    # Ray's client logs every package upload and websocket close at INFO; rayal says what matters
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
                 "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return connect(args.address, resolve_token(args.token, args.token_file))


# --- submit ------------------------------------------------------------------------------------
def _config_paths(ns) -> list[str]:
    """The config path(s) the command was given: one (``run``, ``score`` ...) or several (``compare``)."""
    if getattr(ns, "configs", None):
        return list(ns.configs)
    return [ns.config] if getattr(ns, "config", None) else []


def _check_command(argv: list[str], validate: bool):
    """Parse the forwarded command with rayal's own parser; load each config it names
    (with its ``--set`` overrides), so a typo fails here, before any upload."""
    from rayal.config import load_config

    if not argv:
        raise ValueError("no command to submit: rayal submit [options] -- score CONFIG [--set ...]")
    if argv[0] in ("submit", "jobs"):
        raise ValueError(f"'rayal {argv[0]}' runs on the submitting machine, not as a job")
    ns = build_parser().parse_args(argv)  # a usage error exits 2 here, before any upload
    configs = []
    if validate and hasattr(ns, "overrides"):
        configs = [load_config(path, ns.overrides) for path in _config_paths(ns) or [None]]
    return ns, configs


def _place_config(argv: list[str], ns, working_dir: Path | None) -> list[str]:
    """Rewrite the config path(s) relative to the uploaded working dir (where the job runs)."""
    if working_dir is None:
        return argv
    out = list(argv)
    for given in _config_paths(ns):
        path = Path(given).expanduser().resolve()
        try:
            rel = path.relative_to(working_dir)
        except ValueError:
            raise ValueError(f"config {given} is outside the working dir {working_dir} that is "
                             "uploaded to the cluster: move it there or pass --working-dir DIR "
                             "containing it") from None
        out[out.index(given, 1)] = rel.as_posix()
    return out


def _warn_local_paths(config, command: str) -> None:
    """Relative output locations end up in the job's temporary working dir on the cluster."""
    from rayal.data import has_scheme

    fields = [("output_dir", config.output_dir)]
    if command not in ("score", "train", "evaluate"):  # the commands that use the pool coordinator
        fields.append(("pool.state_dir", config.pool.state_dir))
    for field, value in fields:
        if not has_scheme(value) and not os.path.isabs(value):
            _note(f"warning: {field}={value!r} is relative: on the cluster it is written inside the "
                  "job's temporary working dir; use an s3:// / gs:// URI or a shared absolute path")


def _code_modules(working_dir: Path | None, args) -> list[str]:
    """The local rayal package to upload, if it is a source checkout not already in working_dir."""
    import rayal

    if args.pip or args.no_ship_code or args.no_working_dir:
        return []
    package = Path(rayal.__file__).resolve().parent
    if working_dir is not None and package.is_relative_to(working_dir):
        return []
    if {"site-packages", "dist-packages"} & set(package.parts):
        _note(f"the job uses the rayal installed on the cluster (the local rayal {__version__} "
              "is an installed release: not uploaded)")
        return []
    return [str(package)]


def cmd_submit(args: argparse.Namespace) -> int:
    from rayal.pipeline import jobs_client as jc

    argv = list(args.job_command)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    ns, configs = _check_command(argv, validate=not args.no_validate)
    working_dir = None if args.no_working_dir else Path(args.working_dir).expanduser().resolve()
    if working_dir is not None and not working_dir.is_dir():
        raise FileNotFoundError(f"--working-dir {args.working_dir} is not a directory")
    argv = _place_config(argv, ns, working_dir)
    for config in configs:
        _warn_local_paths(config, argv[0])
    runtime_env = jc.build_runtime_env(
        working_dir, py_modules=_code_modules(working_dir, args), pip=args.pip,
        env_vars=jc.forwarded_env(args.env), excludes=args.exclude)
    entry = jc.entrypoint(argv, args.python)
    job_id = args.submission_id or (f"rayal-{argv[0]}-{dt.datetime.now():%Y%m%d-%H%M%S}-"
                                    f"{uuid.uuid4().hex[:6]}")
    uploads = [runtime_env.get("working_dir")] + runtime_env.get("py_modules", [])
    if any(uploads):
        _note("uploading " + " and ".join(u for u in uploads if u))
    try:
        client = _client(args)
        job_id = client.submit_job(
            entrypoint=entry, submission_id=job_id, runtime_env=runtime_env,
            metadata={"rayal_command": argv[0], "rayal_version": __version__},
            entrypoint_num_cpus=args.num_cpus, entrypoint_num_gpus=args.num_gpus,
            entrypoint_memory=args.memory)
    except RuntimeError as err:  # JobsError, or the server refusing the submission
        print(f"rayal submit: error: {err}", file=sys.stderr)
        return 2
    address = jc.resolve_address(args.address)
    _note(f"submitted {job_id} to {address}: {entry}")
    if args.no_wait:
        _note(f"follow it with: rayal jobs logs {job_id} --follow --address {address}")
        return 0
    return _follow(client, job_id)


def _follow(client, job_id: str) -> int:
    from rayal.pipeline import jobs_client as jc

    try:
        jc.stream_logs(client, job_id)
        info = jc.wait(client, job_id)
    except KeyboardInterrupt:
        _note(f"detached from {job_id}; it keeps running (stop it: rayal jobs stop {job_id})")
        return 130
    _note(_status_line(info))
    return jc.exit_code(info.status)


def _status_line(info) -> str:
    line = f"job {info.submission_id or info.job_id} {info.status.value}"
    if info.driver_exit_code is not None and info.status.value != "SUCCEEDED":
        line += f" (driver exit code {info.driver_exit_code})"
    if info.message and info.status.value != "SUCCEEDED":
        line += ": " + info.message.split(", last available logs")[0].splitlines()[0]
    return line


# --- jobs ----------------------------------------------------------------------------------------
def _when(ms) -> str:
    return "-" if not ms else dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _duration(info) -> str:
    if not info.start_time:
        return "-"
    end = info.end_time or dt.datetime.now().timestamp() * 1000
    return f"{(end - info.start_time) / 1000:.1f} s"


def _list(client, args) -> int:
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    if args.limit:
        jobs = jobs[:args.limit]
    if args.json:
        print(json.dumps([{"submission_id": j.submission_id, "job_id": j.job_id,
                           "status": j.status.value, "start_time": j.start_time,
                           "end_time": j.end_time, "entrypoint": j.entrypoint,
                           "driver_exit_code": j.driver_exit_code} for j in jobs], indent=2))
        return 0
    print(f"{'SUBMISSION ID':<36}  {'STATUS':<10}  {'START':<19}  {'DURATION':>9}  ENTRYPOINT")
    for j in jobs:
        entry = j.entrypoint if len(j.entrypoint) <= 70 else j.entrypoint[:67] + "..."
        print(f"{j.submission_id or j.job_id:<36}  {j.status.value:<10}  {_when(j.start_time):<19}  "
              f"{_duration(j):>9}  {entry}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """``rayal jobs list | status | logs | stop``; returns the exit code."""
    from rayal.pipeline import jobs_client as jc

    try:
        client = _client(args)
        if args.jobs_command == "list":
            return _list(client, args)
        info = client.get_job_info(args.job_id)  # an unknown id fails here, naming it
        if args.jobs_command == "status":
            print(_status_line(info))
        elif args.jobs_command == "logs":
            if args.follow:
                return _follow(client, args.job_id)
            print(client.get_job_logs(args.job_id), end="")
        elif args.jobs_command == "stop":
            requested = client.stop_job(args.job_id)
            if not requested:
                print(f"job {args.job_id} had already ended: {info.status.value}")
            elif not args.no_wait:
                print(_status_line(jc.wait(client, args.job_id, timeout_s=120)))
            else:
                print(f"stop requested for job {args.job_id}")
    except RuntimeError as err:  # JobsError, unknown job (404), server errors
        print(f"rayal jobs {args.jobs_command}: error: {str(err).strip()}", file=sys.stderr)
        return 2
    return 0


# --- jobs/*.py entry points ------------------------------------------------------------------------
def job_argv(subcommand: str, config: str | None, overrides, rest=()) -> list[str]:
    """``rayal`` argv for ``jobs/<subcommand>.py --config C --set K=V ... [extra args]``."""
    return ([subcommand] + ([config] if config else [])
            + [x for o in overrides for x in ("--set", o)] + list(rest))


COMMANDS = {"submit": cmd_submit, "jobs": cmd_jobs}
