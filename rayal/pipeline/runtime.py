"""Connecting to Ray, what every run directory records, and the check that a directory is
resumed or read back with the setting that started it."""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
from importlib import metadata

import ray
import yaml

from rayal.config import ConfigError, RayalConfig, dump_config
from rayal.config.loader import config_from_dict
from rayal.config.sections import RayConfig
from rayal.data import exists, join_uri, makedirs, read_bytes, write_bytes


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


VERSIONS_FILE = "versions.json"


def write_run_metadata(config: RayalConfig, output_dir: str, *, computes: bool = True) -> None:
    """Resolved config, versions, seed and the numerical environment
    (:func:`rayal.pipeline.environment.environment_record`, with ``train.torch_threads``) into
    the run directory. A run resumed in another environment (another key) keeps the earlier
    ones, oldest first (``earlier_environments``); ``computes=False`` (a finished run read back or resumed
    with nothing left to run) keeps the recorded environment as it is."""
    from rayal.pipeline.environment import environment_key, environment_record

    makedirs(output_dir)
    write_bytes(join_uri(output_dir, "config.yaml"), dump_config(config).encode())
    before = _read_versions(output_dir)
    meta = {"seed": config.seed, "versions": versions()}
    if not computes and before.get("environment"):
        meta.update({k: before[k] for k in ("environment", "earlier_environments") if k in before})
    else:
        meta["environment"] = environment_record(config.train.torch_threads)
        earlier, previous = list(before.get("earlier_environments", [])), before.get("environment")
        if previous and environment_key(previous) != environment_key(meta["environment"]):
            earlier.append(previous)
        if earlier:
            meta["earlier_environments"] = earlier
    write_bytes(join_uri(output_dir, VERSIONS_FILE), json.dumps(meta, indent=2).encode())


def _read_versions(output_dir: str) -> dict:
    path = join_uri(output_dir, VERSIONS_FILE)
    return json.loads(read_bytes(path)) if exists(path) else {}


def run_environment(output_dir: str) -> dict | None:
    """The numerical environment a run directory recorded (None: none recorded, e.g. a run
    made before runs recorded one); a run resumed across environments gives
    ``{"segments": [each environment, oldest first]}``, which matches none of them."""
    meta = _read_versions(output_dir)
    if not meta.get("environment"):
        return None
    if meta.get("earlier_environments"):
        return {"segments": meta["earlier_environments"] + [meta["environment"]]}
    return meta["environment"]


# sections that may differ between the run that started a directory and the one resuming it
_RUNTIME_SECTIONS = ("ray", "compare", "tune", "name")


def _flat(raw: dict, prefix: str = "") -> dict:
    """Config dict -> {"section.key": value} (sub-sections and dicts stay whole values)."""
    out = {}
    for key, value in raw.items():
        if prefix == "" and isinstance(value, dict):
            for sub_key, sub in _flat(value, f"{key}.").items():
                out[sub_key] = sub
        else:
            out[prefix + key] = value
    return out


# how a run is normalised, not what it does: a reference retrained since (e.g. longer) is
# applied to finished runs by :func:`against_reference`
_REFERENCE_KEYS = ("loop.full_miou", "loop.reference_dir", "loop.reference_epochs",
                   "loop.reference_factor")


def _comparable(raw: dict, ignore: tuple[str, ...]) -> dict:
    """What must match to resume or read back a run: everything but the sections in ``ignore``,
    the reference keys and ``output_dir`` (a folder copied or moved elsewhere is still the run)."""
    return {k: v for k, v in _flat(raw).items()
            if k.split(".")[0] not in ignore and k not in _REFERENCE_KEYS and k != "output_dir"}


def check_same_config(config: RayalConfig, ignore: tuple[str, ...] = _RUNTIME_SECTIONS) -> None:
    """A directory started with another setting must not be mixed with this one: compares
    ``<output_dir>/config.yaml`` with ``config``, except the top-level keys in ``ignore``."""
    path = join_uri(config.output_dir, "config.yaml")
    if not exists(path):
        return
    raw = yaml.safe_load(read_bytes(path)) or {}
    try:   # through today's config model: a field added since gets its default on both sides
        raw = yaml.safe_load(dump_config(config_from_dict(raw)))
    except (ConfigError, ValueError):
        pass   # a field since removed or renamed: compare as written, it shows up as changed
    before = _comparable(raw, ignore)
    now = _comparable(yaml.safe_load(dump_config(config)), ignore)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        raise ConfigError(f"{config.output_dir} holds a run made with a different config "
                          f"(differs in {changed}); remove it or choose another output_dir")
