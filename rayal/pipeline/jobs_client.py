"""Ray Jobs API glue for ``rayal submit`` / ``rayal jobs``: address, token, runtime_env, following.

A job is a ``rayal`` command (``python -m rayal.cli.main score CONFIG ...``) run
as the driver of a Ray job on the cluster. Code and configs travel in the job's
``runtime_env``: ``working_dir`` (the local project directory, uploaded;
``.gitignore`` / ``.rayignore`` are honoured) plus, when rayal runs from a source
checkout outside it, the ``rayal`` package as a ``py_modules`` entry; or a
``pip`` list (e.g. ``rayal==0.1.0``) for clusters that install it per job.

Authentication: Ray's token auth (``RAY_AUTH_MODE=token`` on the cluster) wants
``Authorization: Bearer <token>`` on every Jobs API request. The token is taken,
in Ray's own order, from ``--token``, ``--token-file``, ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``; it is sent as a header,
so it works whatever ``RAY_AUTH_MODE`` the submitting machine has.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

from rayal.errors import RayalError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
# Storage settings that are not secrets: forwarded to the job so its workers reach the
# same object store as the submitting machine (credentials are forwarded only when asked).
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")
DEFAULT_EXCLUDES = [".git", ".venv", "__pycache__", ".pytest_cache", "runs", "*.egg-info"]
EXIT_CODES = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.STOPPED: 3}


class JobsError(RayalError, RuntimeError):
    """The Jobs API cannot be reached, refused the token, or does not know the job."""


@dataclass
class Token:
    value: str
    source: str  # where it came from, for error messages (never the token itself)


def resolve_address(address: str | None = None) -> str:
    """``address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS``, else the local default."""
    return (address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
            or DEFAULT_ADDRESS)


def _read_token_file(path: str, what: str) -> Token:
    try:
        value = Path(path).expanduser().read_text().strip()
    except OSError as err:
        raise JobsError(f"cannot read the Ray auth token file {path} ({what}): {err.strerror}") from None
    if not value:
        raise JobsError(f"the Ray auth token file {path} ({what}) is empty")
    return Token(value, f"{what} {path}")


def resolve_token(token: str | None = None, token_file: str | None = None) -> Token | None:
    """The cluster's auth token, or None when none is configured anywhere."""
    if token:
        return Token(token.strip(), "--token")
    if token_file:
        return _read_token_file(token_file, "--token-file")
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return Token(os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return _read_token_file(os.environ["RAY_AUTH_TOKEN_PATH"], "RAY_AUTH_TOKEN_PATH")
    default = Path.home() / ".ray" / "auth_token"
    return _read_token_file(str(default), "default token file") if default.is_file() else None


@contextlib.contextmanager
def _pinned_address(address: str):
    """Ray lets RAY_ADDRESS / RAY_API_SERVER_ADDRESS override an explicit address; pin ours."""
    old = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = address
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        else:
            os.environ["RAY_API_SERVER_ADDRESS"] = old


def connect(address: str | None = None, token: Token | None = None) -> JobSubmissionClient:
    """A Jobs API client for ``address`` (see :func:`resolve_address`) sending ``token``."""
    from ray.exceptions import AuthenticationError

    address = resolve_address(address)
    headers = {"Authorization": f"Bearer {token.value}"} if token else None
    try:
        with _pinned_address(address):
            return JobSubmissionClient(address, headers=headers)
    except AuthenticationError as err:
        if token is None:
            raise JobsError(f"the Ray cluster at {address} requires a token: pass --token / "
                            "--token-file or set RAY_AUTH_TOKEN (`ray get-auth-token` on the head "
                            "node prints it)") from None
        raise JobsError(f"the Ray cluster at {address} rejected the token from {token.source}: "
                        f"{str(err).splitlines()[0]}") from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise JobsError(f"cannot reach the Ray Jobs API at {address}: {err}") from None


def build_runtime_env(working_dir: str | None, *, py_modules=(), pip=(), env_vars=None,
                      excludes=()) -> dict:
    """The job's ``runtime_env`` (only the keys that are set)."""
    env: dict = {}
    if working_dir:
        env["working_dir"] = str(working_dir)
        env["excludes"] = DEFAULT_EXCLUDES + list(excludes)
    if py_modules:
        env["py_modules"] = [str(m) for m in py_modules]
    if pip:
        env["pip"] = list(pip)
    if env_vars:
        env["env_vars"] = {str(k): str(v) for k, v in env_vars.items()}
    return env


def forwarded_env(names=(), environ=None) -> dict[str, str]:
    """:data:`FORWARDED_ENV` that are set, plus ``names`` (``NAME`` copies the local value,
    ``NAME=VALUE`` sets it). A ``NAME`` that is not set locally is an error naming it."""
    environ = os.environ if environ is None else environ
    out = {k: environ[k] for k in FORWARDED_ENV if environ.get(k)}
    for item in names:
        name, eq, value = item.partition("=")
        if not name:
            raise ValueError(f"--env {item!r}: expected NAME or NAME=VALUE")
        if not eq:
            if name not in environ:
                raise ValueError(f"--env {name}: not set in the local environment")
            value = environ[name]
        out[name] = value
    return out


def entrypoint(argv: list[str], python: str = "python") -> str:
    """The shell command a job runs: ``python -m rayal.cli.main <argv>`` (quoted)."""
    return shlex.join([python, "-m", "rayal.cli.main", *argv])


def exit_code(status) -> int:
    """0 exactly for SUCCEEDED; 1 FAILED; 3 STOPPED; 4 anything else (not finished)."""
    return EXIT_CODES.get(JobStatus(status), 4)


def _print_new(text: str, printed: int, out) -> int:
    if len(text) > printed:
        out.write(text[printed:])
        out.flush()
    return max(printed, len(text))


def stream_logs(client: JobSubmissionClient, job_id: str, out=None, poll_s: float = 1.0) -> None:
    """Write the job's logs to ``out`` as they come, until the job ends.

    Follows the log websocket (``tail_job_logs``); if it drops, falls back to polling
    ``get_job_logs`` and prints only what was not printed yet.
    """
    out = out or sys.stdout
    printed = 0

    async def tail() -> None:
        nonlocal printed
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            printed += len(chunk)

    try:
        asyncio.run(tail())
        return
    except (RuntimeError, OSError) as err:  # websocket refused or dropped: poll instead
        print(f"[rayal] log stream interrupted ({err}); polling", file=sys.stderr)
    while True:
        status = client.get_job_status(job_id)
        printed = _print_new(client.get_job_logs(job_id), printed, out)
        if status in TERMINAL:
            return
        time.sleep(poll_s)


def wait(client: JobSubmissionClient, job_id: str, timeout_s: float | None = None,
         poll_s: float = 0.5):
    """Poll until the job is terminal (or ``timeout_s`` passes); returns its JobInfo."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = client.get_job_info(job_id)
        if info.status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return info
        time.sleep(poll_s)
