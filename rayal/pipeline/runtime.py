"""Connecting to Ray, and what every run directory records."""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
from importlib import metadata

import ray

from rayal.config import RayalConfig, dump_config
from rayal.config.sections import RayConfig
from rayal.data import join_uri, makedirs, write_bytes


def init_ray(config: RayConfig, *, quiet: bool = True) -> bool:
    """Connect to ``ray.address`` / ``RAY_ADDRESS``, or start a local Ray in-process.

    Connecting to a cluster, the storage settings of :func:`worker_env_vars` go to its workers
    in the job's ``runtime_env`` (a local Ray's workers inherit this process's environment).
    Returns True when this call started Ray (the caller may shut it down).
    """
    if ray.is_initialized():
        return False
    address = config.address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(log_to_driver=not quiet, configure_logging=True,
                  logging_level="ERROR" if quiet else "INFO")
    if address and address != "local":
        env_vars = worker_env_vars()
        if env_vars:
            kwargs["runtime_env"] = {"env_vars": env_vars}
        ray.init(address=address, **kwargs)
        return True
    ray.init(address="local", num_cpus=config.num_cpus,
             object_store_memory=config.object_store_memory, include_dashboard=False, **kwargs)
    return True


def worker_env_vars(environ=None) -> dict[str, str]:
    """The non-secret object-store settings of this process (``AWS_ENDPOINT_URL``,
    ``AWS_ENDPOINT_URL_S3``, region) that a cluster's workers need to reach the same store, as
    ``rayal submit`` forwards them, and ``$RAYAL_PLUGINS`` (the plugins this process imported);
    credentials are never forwarded. Inside a Ray job, the keys
    its ``runtime_env`` already sets are left out (Ray refuses a key set twice)."""
    from rayal.pipeline.jobs_client import forwarded_env

    from rayal.core.plugins import ENV_VAR

    environ = os.environ if environ is None else environ
    env = forwarded_env(environ=environ)
    if environ.get(ENV_VAR):   # selection.plugins: the workers import them on first lookup
        env[ENV_VAR] = environ[ENV_VAR]
    job = environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job:
        try:
            taken = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        except (ValueError, AttributeError):
            taken = {}
        env = {k: v for k, v in env.items() if k not in taken}
    return env


def quiet_ray_data() -> None:
    """rayal draws its own progress bar; Ray Data's per-operator bars would interleave."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def source_revision() -> str | None:
    """The git commit of the rayal source tree in use, with ``+dirty`` for uncommitted changes
    (None: not a git checkout, or git missing): results are tied to the code that made them."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no",
                                "--", "rayal"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    revision = source_revision()
    if revision:
        out["rayal_source"] = revision
    for pkg in ("rayal", "ray", "torch", "torchvision", "segmentation-models-pytorch", "numba",
                "pyarrow", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_run_metadata(config: RayalConfig, output_dir: str) -> None:
    """Resolved config + versions + seed into the run directory."""
    makedirs(output_dir)
    write_bytes(join_uri(output_dir, "config.yaml"), dump_config(config).encode())
    meta = {"seed": config.seed, "versions": versions()}
    write_bytes(join_uri(output_dir, "versions.json"), json.dumps(meta, indent=2).encode())
