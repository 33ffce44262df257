"""What one ``rayal tune`` trial holds and needs, how many may run at once, and a watchdog.

A trial process holds ``tune.cpus_per_trial`` for its whole life, and the work it starts
asks for CPUs of its own: ``ray.actors`` scoring actors (``ray.cpus_per_actor``, plus
``ray.decode_cpus`` for decoding) and, with ``train.num_workers >= 1``, Ray Train workers
(``train.cpus_per_worker`` each); see :func:`trial_cpus`.
Trials that took every CPU would leave none for that nested work and the sweep would wait
forever (ray-project/ray#25239). So the sweep

* refuses up front, naming the fields, when one trial with its nested work does not fit the
  cluster at all (:func:`check_trial_fits`);
* runs at most as many trials at once as leave room for their nested work, and never more
  than ``tune.max_concurrent_trials`` (:func:`plan_concurrency`); the limit goes into the
  search algorithm itself (``BasicVariantGenerator(max_concurrent=...)``), because Ray Tune
  ignores ``TuneConfig.max_concurrent_trials`` when a search algorithm is given;
* fails with a message when no trial starts, reports a round or ends for
  ``tune.stall_timeout_s`` seconds (:class:`StallWatchdog`) instead of hanging.
"""
from __future__ import annotations

import math
import time

from rayal.config import RayalConfig
from rayal.errors import ResourceError

try:   # a Tune callback when Ray Tune is installed; the planning functions need no Ray
    from ray.tune import Callback as _Callback
except ImportError:  # pragma: no cover - ray is a dependency of rayal.pipeline
    _Callback = object


def trial_cpus(config: RayalConfig) -> tuple[float, float]:
    """``(held, nested)``: CPUs the trial process holds, and the most its nested work asks for
    at once. With ``loop.persistent_scoring`` the run's scoring actors (``ray.cpus_per_actor +
    ray.decode_cpus`` each) live through training, so Train workers come on top of them;
    without it scoring (actors + one decode task) and training take turns. Training of a
    parallel committee reserves its members' CPUs at once (:func:`rayal.train.committee.training_cpus`)."""
    from rayal.train.committee import training_cpus

    rc = config.ray
    workers = training_cpus(config.train)
    if config.loop.persistent_scoring:
        return config.tune.cpus_per_trial, rc.actors * (rc.cpus_per_actor + rc.decode_cpus) + workers
    return config.tune.cpus_per_trial, max(rc.actors * rc.cpus_per_actor + rc.decode_cpus, workers)


def _need_text(config: RayalConfig) -> str:
    held, nested = trial_cpus(config)
    rc, train = config.ray, config.train
    persistent = config.loop.persistent_scoring
    scoring = (f"ray.actors {rc.actors} x (ray.cpus_per_actor {rc.cpus_per_actor:g} + ray.decode_cpus "
               f"{rc.decode_cpus:g})" if persistent else
               f"ray.actors {rc.actors} x ray.cpus_per_actor {rc.cpus_per_actor:g} + ray.decode_cpus "
               f"{rc.decode_cpus:g}")
    parts = [f"tune.cpus_per_trial {held:g}", scoring]
    if train.num_workers:
        parts.append(f"{'+' if persistent else 'or'} train.num_workers {train.num_workers} x "
                     f"train.cpus_per_worker {train.cpus_per_worker:g}")
    cc = train.committee
    if cc.members > 1 and cc.parallel:
        parts.append(f"x train.committee.members {cc.members}" if train.num_workers else
                     f"{'+' if persistent else 'or'} train.committee.members {cc.members} x "
                     f"cpus_per_member {cc.cpus_per_member:g}")
    return f"{held + nested:g} CPUs ({', '.join(parts)})"


def check_trial_fits(config: RayalConfig, cluster_cpus: float, cluster_gpus: float = 0.0) -> None:
    """Raise :class:`ResourceError` naming the fields when one trial and its nested work need
    more CPUs (or the trial more GPUs) than the whole cluster has."""
    held, nested = trial_cpus(config)
    if held + nested > cluster_cpus + 1e-9:
        raise ResourceError(
            f"one tune trial needs {_need_text(config)} but the Ray cluster has {cluster_cpus:g} "
            f"CPUs (ray.num_cpus for a local Ray): lower tune.cpus_per_trial, ray.actors, "
            f"ray.cpus_per_actor or ray.decode_cpus, or use a larger cluster")
    if config.tune.gpus_per_trial > cluster_gpus + 1e-9:
        raise ResourceError(f"tune.gpus_per_trial {config.tune.gpus_per_trial:g} but the Ray cluster "
                            f"has {cluster_gpus:g} GPUs")


def default_concurrency(config: RayalConfig, cpus: float, gpus: float) -> int:
    """Trials at once on ``cpus`` free CPUs / ``gpus`` free GPUs: each needs its own CPUs
    plus the largest phase of its nested work (see :func:`trial_cpus`); at least 1."""
    held, nested = trial_cpus(config)
    n = max(1, int(math.floor(cpus / (held + nested) + 1e-9)))
    if config.tune.gpus_per_trial > 0:
        n = min(n, max(1, int(gpus // config.tune.gpus_per_trial)))
    return n


def plan_concurrency(config: RayalConfig, cpus: float, gpus: float) -> tuple[int, str | None]:
    """``(trials at once, warning or None)``: :func:`default_concurrency`, lowered to
    ``tune.max_concurrent_trials``; a larger ``max_concurrent_trials`` than fits is capped
    (more trials would starve their own nested work) and the warning says so."""
    fits = default_concurrency(config, cpus, gpus)
    wanted = config.tune.max_concurrent_trials
    if wanted is None or wanted <= fits:
        return (fits if wanted is None else wanted), None
    return fits, (f"tune.max_concurrent_trials {wanted} capped at {fits}: each trial needs "
                  f"{_need_text(config)} and {cpus:g} CPUs are free")


class StallWatchdog(_Callback):
    """Tune callback: raise :class:`ResourceError` when no trial has started, reported a
    result or ended for ``timeout_s`` seconds while trials are pending or running.

    Its clock starts at the first step of ``fit`` (also after a restore)."""

    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._last = None

    def _progress(self, **info) -> None:
        self._last = time.monotonic()

    on_trial_start = on_trial_result = on_trial_complete = on_trial_error = _progress

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if self._last is None:
            self._last = now
        waiting = [t for t in trials if t.status in ("PENDING", "RUNNING")]
        if not waiting or now - self._last <= self.timeout_s:
            return
        running = sum(t.status == "RUNNING" for t in trials)
        free = _free_cpus()
        raise ResourceError(
            f"tune sweep made no progress for {self.timeout_s:g} s (tune.stall_timeout_s): "
            f"{running} trial(s) RUNNING, {len(waiting) - running} PENDING, {free} CPUs free; "
            f"their nested scoring/training may be starved of CPUs (lower "
            f"tune.max_concurrent_trials or tune.cpus_per_trial), or raise tune.stall_timeout_s "
            f"if one round takes longer; rerun the command to resume")

    def __getstate__(self):   # pickled with the experiment: the clock restarts on restore
        return {"timeout_s": self.timeout_s, "_last": None}


def _free_cpus() -> str:
    try:
        import ray

        return f"{ray.available_resources().get('CPU', 0.0):g}"
    except Exception:   # the message must not fail because Ray is going away
        return "?"
