"""``rayal tune``: a Ray Tune sweep in which every trial is one whole simulated AL run.

A trial is a function trainable (Ray 2.60: ``Tuner(trainer)`` is gone; Train runs inside
the trial): it applies its sampled values (dotted config keys) to the base config and runs
:func:`rayal.pipeline.loop.experiment.run_experiment`, whose per-round retraining is Ray Train's
``TorchTrainer`` and whose scoring is a Ray Data actor pool. With ``train.num_workers >= 1``
the run goes in the trial process (the Train workers are actors of their own); with local
mode (0) it goes in a child task of the trial, because Ray 2.60 refuses ``ray.train.report``
in a process holding a Tune session (see :func:`run_beside`). After every round the trial
reports ``round`` (ASHA's time attribute), ``miou`` and the running ``aualc``; the
objective is the final AuALC (max). The full-supervision reference is trained once in the
driver, so every trial is normalised by the same mIoU. How many trials run at once, and the
up-front check and watchdog that keep a sweep from starving its own nested work, live in
:mod:`rayal.pipeline.study.tune_resources`.

Layout: ``<output_dir>/config.yaml``, ``tune_results.parquet`` (one row per trial, ranked),
``best_config.yaml`` (loadable by ``load_config``), ``tune.png``; Tune's experiment in
``<storage_path>/<name>`` with each trial's run directory in ``runs/<trial_id>``.
Rerunning with the same output_dir restores the experiment (``Tuner.restore``): finished
trials are kept and unfinished or errored ones resume from their run directories.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from rayal.config import ConfigError, RayalConfig, dump_config
from rayal.config.loader import config_from_dict, set_path
from rayal.data import exists, join_uri, read_bytes, write_bytes
from rayal.data.io import parent_uri
from rayal.errors import RayalError
from rayal.pipeline.runtime import check_same_config
from rayal.pipeline.study.compare import strategy_raw
from rayal.selection.registry import inert_params
from rayal.pipeline.storage import absolute, read_json, read_parquet, save_plot, write_parquet
from rayal.pipeline.loop.selection_params import (check_initial, check_strategy_params, selection_params,
                                                  strategy_takes)
from rayal.pipeline.study.tune_resources import StallWatchdog, check_trial_fits, plan_concurrency

RESULTS_FILE, BEST_FILE, PLOT_FILE = "tune_results.parquet", "best_config.yaml", "tune.png"
STRATEGY_KEY, PARAMS_PREFIX = "selection.strategy", "selection.params."
# set by the sweep itself; sampling them would break the shared reference or the layout
RESERVED = ("output_dir", "name", "loop.full_miou", "loop.reference_dir", "loop.baseline")
RESERVED_SECTIONS = ("tune", "compare", "ray")
STATUS_ORDER = {"completed": 0, "stopped": 1, "error": 2}


# --- trial configs --------------------------------------------------------------------------
def trial_config(base: RayalConfig, params: dict) -> tuple[RayalConfig, list[str]]:
    """The base config with one trial's sampled ``params`` (dotted key -> value) applied.

    Returns it and the ``selection.params.*`` keys left out because the trial's strategy does
    not take them (a conditional search space: ``aggregate`` means nothing to ``random``) or
    because the trial's other values leave them inert (``n_clusters`` without ``diversity:
    cluster_budget``: :func:`rayal.selection.registry.inert_params`)."""
    tc = base.tune
    strategy = params.get(STRATEGY_KEY, base.selection.strategy)
    raw = strategy_raw(base, strategy, tc.params, tc.overrides, "tune")
    inactive = []
    for key, value in params.items():
        if key == STRATEGY_KEY:
            continue
        if key.startswith(PARAMS_PREFIX) and key[len(PARAMS_PREFIX):] not in strategy_takes(strategy):
            inactive.append(key)
            continue
        set_path(raw, key.split("."), value.item() if isinstance(value, np.generic) else value,
                 f"tune.search_space[{key!r}]")   # YAML-safe
    for name, _ in inert_params(raw["selection"]["strategy"], raw["selection"]["params"]):
        if PARAMS_PREFIX + name in params:   # sampled, but inert with this trial's other values
            del raw["selection"]["params"][name]
            inactive.append(PARAMS_PREFIX + name)
    config = config_from_dict(raw, source=f"tune trial {params}")
    check_strategy_params(strategy, selection_params(config), f"tune trial {params}", config)
    return config, inactive


def _candidates(spec: dict) -> list:
    (kind, args), = spec.items()
    if kind in ("choice", "grid"):
        return list(args)
    return [args[0], args[1] - 1] if kind == "randint" else [args[0], args[1]]


def validate_search_space(config: RayalConfig) -> None:
    """Every key must be a config key the sweep may set and every value a valid one for it;
    ``selection.params.*`` keys must be taken by at least one strategy of the sweep."""
    space = config.tune.search_space
    for key in space:
        if key in RESERVED or key.split(".")[0] in RESERVED_SECTIONS:
            raise ConfigError(f"tune.search_space[{key!r}]: this key is set by the sweep itself "
                              f"and cannot be sampled")
    strategies = _candidates(space[STRATEGY_KEY]) if STRATEGY_KEY in space else [config.selection.strategy]
    for strategy in strategies:
        if not isinstance(strategy, str):
            raise ConfigError(f"tune.search_space[{STRATEGY_KEY!r}]: {strategy!r} is not a strategy name")
        _checked(config, {STRATEGY_KEY: strategy}, STRATEGY_KEY, strategy)
    for key, spec in space.items():
        if key == STRATEGY_KEY:
            continue
        takers = strategies
        if key.startswith(PARAMS_PREFIX):
            name = key[len(PARAMS_PREFIX):]
            takers = [s for s in strategies if name in strategy_takes(s)]
            if not takers:
                raise ConfigError(f"tune.search_space[{key!r}]: no strategy of the sweep "
                                  f"({strategies}) takes a parameter {name!r}")
        for value in _candidates(spec):
            for strategy in takers:
                _checked(config, {STRATEGY_KEY: strategy, key: value}, key, value)


def _checked(config: RayalConfig, params: dict, key: str, value) -> None:
    try:
        trial_config(config, params)
    except ConfigError as err:
        raise ConfigError(f"tune.search_space[{key!r}] = {value!r}: {err}") from None


def param_space(config: RayalConfig) -> dict:
    """``tune.search_space`` -> Tune's sampling objects (dotted keys kept as they are)."""
    from ray import tune

    make = {"choice": tune.choice, "grid": tune.grid_search,
            "uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
            "randint": lambda a: tune.randint(*a)}
    return {key: make[kind](args) for key, spec in config.tune.search_space.items()
            for kind, args in spec.items()}


# --- the trial ------------------------------------------------------------------------------
def running_aualc(history: list[tuple[float, float]], full_miou: float) -> float:
    """AuALC of the curve so far; one point (the initial round): its mIoU / full mIoU."""
    from rayal.train.metrics import aualc

    if len(history) < 2:
        return history[0][1] / full_miou
    x, y = zip(*history)
    return aualc(x, y, full_miou)


def run_beside(config: RayalConfig, seen: int, report, poll_s: float = 2.0) -> None:
    """Run the AL run in a child Ray task on this node and ``report`` each round it finishes
    (read back from its ``rounds.parquet``, written atomically per round).

    Why a child: Ray Train's local mode (``train.num_workers: 0``) runs the training loop in
    the calling process, and Ray 2.60 refuses ``ray.train.report`` in a process that holds a
    Tune session; a worker group of one would work but starts two actors every round. The
    child asks for no resources of its own (the trial's CPUs pay for it) and dies with the
    trial when ASHA stops it (Ray kills the tasks of a dead owner)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rayal.pipeline.loop.experiment import ROUNDS_FILE

    rounds_file = join_uri(config.output_dir, ROUNDS_FILE)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    task = ray.remote(_run_task).options(num_cpus=0, max_retries=1, scheduling_strategy=here)
    ref = task.remote(config.model_dump(mode="json"))
    while True:
        finished = bool(ray.wait([ref], timeout=poll_s)[0])
        rows = read_parquet(rounds_file).to_pylist() if exists(rounds_file) else []
        for row in rows[seen:]:
            report(row)
        seen = max(seen, len(rows))
        if finished:
            ray.get(ref)   # the run's own error, if any, fails the trial
            return


def _run_task(config: dict) -> dict:
    from rayal.pipeline.loop.experiment import run_experiment

    return run_experiment(RayalConfig.model_validate(config), resume=True, progress=False)


def trial(params: dict, *, base: dict, full_miou: float, runs_dir: str) -> None:
    """Tune function trainable: one resumable AL run into ``runs_dir/<trial_id>``; reports
    ``round``, ``miou`` and the running ``aualc`` after every round."""
    from ray import tune

    from rayal.pipeline.loop.experiment import ROUNDS_FILE, run_experiment

    trial_id = tune.get_context().get_trial_id()
    config, inactive = trial_config(RayalConfig.model_validate(base), params)
    run_dir = join_uri(runs_dir, trial_id)
    config.output_dir = run_dir
    config.name = f"{config.name}-{trial_id}"
    config.loop.full_miou = full_miou
    rounds_file = join_uri(run_dir, ROUNDS_FILE)
    done = read_parquet(rounds_file).to_pylist() if exists(rounds_file) else []
    history = [(r["labelled_fraction"], r["miou"]) for r in done]
    reported = []

    def send(row: dict) -> None:
        reported.append(row["round"])
        tune.report({"round": row["round"], "miou": row["miou"], "aualc": running_aualc(history, full_miou),
                     "labelled_fraction": row["labelled_fraction"], "labelled_units": row["labelled_units"],
                     "strategy": config.selection.strategy, "inactive": ",".join(inactive)})

    def report(row: dict) -> None:
        history.append((row["labelled_fraction"], row["miou"]))
        send(row)

    if config.train.num_workers > 0:   # Train's workers are their own processes: run here
        run_experiment(config, resume=True, progress=False, report=report)
    else:
        run_beside(config, len(done), report)
    if not reported and done:   # resumed after its last round: report the final state once
        send(done[-1])


# --- results --------------------------------------------------------------------------------
def _run_config(run_dir: str) -> RayalConfig:
    return config_from_dict(yaml.safe_load(read_bytes(join_uri(run_dir, "config.yaml"))), source=run_dir)


def reached_end(config: RayalConfig, rows: list[dict]) -> bool:
    """Whether a run's finished rounds already meet its stop rule (``loop.rounds`` or
    ``loop.max_labelled``), as ``run_experiment`` applies it."""
    last = rows[-1]
    if config.loop.rounds is not None and last["round"] >= config.loop.rounds:
        return True
    if config.loop.max_labelled is None or not last["labelled_fraction"] > 0:
        return False
    total = round(last["labelled_units"] / last["labelled_fraction"])
    cap = config.loop.max_labelled
    cap = math.ceil(cap * total) if cap <= 1 else int(cap)
    return last["labelled_units"] >= cap


def _trial_row(result, runs_dir: str, keys: list[str]) -> dict:
    from rayal.pipeline.loop.experiment import ROUNDS_FILE, SUMMARY_FILE

    metrics = result.metrics or {}
    trial_id = metrics.get("trial_id") or result.path.rstrip("/").rsplit("/", 1)[-1]
    run_dir = join_uri(runs_dir, trial_id)
    row = {"trial_id": trial_id, **{k: result.config.get(k) for k in keys},
           "strategy": metrics.get("strategy"), "aualc": metrics.get("aualc"),
           "final_miou": metrics.get("miou"), "rounds": None, "labelled_fraction": None,
           "status": "error" if result.error else "stopped", "inactive": metrics.get("inactive", ""),
           "error": str(result.error).splitlines()[0][:300] if result.error else None,
           "run_dir": run_dir}
    if exists(join_uri(run_dir, ROUNDS_FILE)):
        rows = read_parquet(join_uri(run_dir, ROUNDS_FILE)).to_pylist()
        row.update(rounds=len(rows), labelled_fraction=rows[-1]["labelled_fraction"],
                   final_miou=rows[-1]["miou"])
        if not result.error and reached_end(_run_config(run_dir), rows):
            row["status"] = "completed"   # ASHA stopped it at its last round: the curve is whole
    if exists(join_uri(run_dir, SUMMARY_FILE)) and not result.error:
        summary = read_json(join_uri(run_dir, SUMMARY_FILE))
        row.update(status="completed", aualc=summary["aualc"], strategy=summary["strategy"],
                   final_miou=summary["final_miou"], budget_to_95=summary["budget_to_95"])
    row.setdefault("budget_to_95", None)
    return row


def rank_trials(rows: list[dict]) -> list[dict]:
    """Completed trials by final AuALC (max first), then early-stopped ones by their running
    AuALC at the round they were stopped, then errored ones; adds ``rank`` (1 = best)."""
    def key(r):
        a = r["aualc"]
        return STATUS_ORDER[r["status"]], -(a if a is not None and not math.isnan(a) else -np.inf)
    ranked = sorted(rows, key=key)
    return [dict(r, rank=i) for i, r in enumerate(ranked, 1)]


def results_table(rows: list[dict], keys: list[str]) -> str:
    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    head = ["rank", "trial_id", "status", *keys, "aualc", "final_miou", "rounds"]
    body = [[fmt(r.get(h)) for h in head] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def plot_trials(rows: list[dict], full_miou: float, path: Path) -> None:
    """Left: AuALC per trial (best first), coloured by strategy; right: every trial's
    mIoU-vs-labelled-fraction curve in its strategy's colour."""
    from rayal.pipeline.loop.experiment import ROUNDS_FILE
    from rayal.pipeline.loop.reports import _plt

    plt = _plt()
    strategies = sorted({r["strategy"] or "?" for r in rows})
    colour = {s: plt.cm.tab10(i % 10) for i, s in enumerate(strategies)}
    fig, (bar, curve) = plt.subplots(1, 2, figsize=(11, 4))
    shown = [r for r in rows if r["aualc"] is not None]
    bar.bar(range(len(shown)), [r["aualc"] for r in shown], color=[colour[r["strategy"] or "?"] for r in shown],
            hatch=None)
    bar.set_xticks(range(len(shown)), [f"{r['trial_id'][-5:]}\n{r['status'][:4]}" for r in shown], fontsize=7)
    bar.set_ylabel("AuALC (running AuALC for stopped trials)")
    for r in rows:
        f = join_uri(r["run_dir"], ROUNDS_FILE)
        if exists(f):
            rr = read_parquet(f, columns=["labelled_fraction", "miou"]).to_pydict()
            curve.plot(rr["labelled_fraction"], rr["miou"], "o-", ms=3, alpha=0.7,
                       color=colour[r["strategy"] or "?"])
    curve.axhline(full_miou, ls="--", color="grey")
    curve.set_xlabel("labelled fraction of pool units")
    curve.set_ylabel("mIoU (eval split)")
    handles = [plt.Line2D([], [], color=colour[s], lw=4) for s in strategies]
    curve.legend(handles, strategies, fontsize=8)
    for ax in (bar, curve):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_best_config(config: RayalConfig, best: dict, keys: list[str], uri: str) -> None:
    """The base config with the best trial's values; ``rayal run`` on it reuses the reference."""
    params = {k: best[k] for k in keys if best.get(k) is not None}
    chosen, inactive = trial_config(config, params)
    params = {k: v for k, v in params.items() if k not in inactive}
    chosen.output_dir = join_uri(config.output_dir, "best")
    chosen.loop.reference_dir = config.loop.reference_dir
    header = (f"# best trial {best['trial_id']} of rayal tune {config.tune.name}: AuALC "
              f"{best['aualc']:.4f}, final mIoU {best['final_miou']:.4f}\n# sampled: {params}\n")
    write_bytes(uri, (header + dump_config(chosen)).encode())


# --- the sweep ------------------------------------------------------------------------------
def _tuner(config: RayalConfig, trainable, exp_path: str, progress: bool):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    import ray

    tc = config.tune
    if tune.Tuner.can_restore(exp_path):
        return tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True), True
    max_t = (config.loop.rounds + 1) if config.loop.rounds is not None else 10_000
    scheduler = (ASHAScheduler(time_attr="round", grace_period=tc.grace_period,
                               reduction_factor=tc.reduction_factor, max_t=max(max_t, tc.grace_period + 1))
                 if tc.scheduler == "asha" else FIFOScheduler())
    avail = ray.available_resources()
    concurrent, warning = plan_concurrency(config, avail.get("CPU", 0.0), avail.get("GPU", 0.0))
    if warning:
        print(f"rayal tune: warning: {warning}", file=sys.stderr)
    # the limit goes into the search algorithm: Ray Tune drops TuneConfig.max_concurrent_trials
    # whenever a search_alg is passed (it only wraps Searchers in a ConcurrencyLimiter)
    search = BasicVariantGenerator(max_concurrent=concurrent, random_state=config.seed)
    callbacks = [StallWatchdog(tc.stall_timeout_s)] if tc.stall_timeout_s else []
    return tune.Tuner(
        trainable, param_space=param_space(config),
        # reuse_actors: the next trial runs in the finished trial's process (torch & co. are
        # imported once); a trial still winding down after ASHA stopped it gets a fresh one
        tune_config=tune.TuneConfig(metric="aualc", mode="max", scheduler=scheduler,
                                    num_samples=tc.num_samples, search_alg=search, reuse_actors=True),
        run_config=tune.RunConfig(name=tc.name, storage_path=parent_uri(exp_path), verbose=1 if progress else 0,
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  callbacks=callbacks)), False


def run_tune(config: RayalConfig, *, progress: bool = True) -> dict:
    """Run (or restore and finish) the sweep; write the results table, best config and plot.

    Returns ``{"rows": ranked trial rows, "table": str, "best": row, "restored": bool,
    "output_dir": str}``."""
    from ray import tune

    from rayal.pipeline.loop.experiment import with_ssl_encoder
    from rayal.pipeline.loop.reference import full_supervision_miou
    from rayal.pipeline.runtime import init_ray, write_run_metadata

    tc, out = config.tune, absolute(config.output_dir)
    exp_path = join_uri(absolute(tc.storage_path or join_uri(out, "ray_tune")), tc.name)
    config = config.model_copy(deep=True)
    config.output_dir = out
    config.loop.reference_dir = absolute(config.loop.reference_dir or join_uri(out, "full"))
    validate_search_space(config)
    check_initial(config)   # the cold start every trial shares
    check_same_config(config, ignore=("ray",))   # a restored sweep must be the same sweep
    write_run_metadata(config, out)
    init_ray(config.ray)
    import ray

    cluster = ray.cluster_resources()   # one trial and its nested work must fit, or no trial ever ends
    check_trial_fits(config, cluster.get("CPU", 0.0), cluster.get("GPU", 0.0))
    full = full_supervision_miou(config, progress=progress)   # once, before any trial
    with_ssl_encoder(config, progress)   # the self-supervised encoder too, if one is used
    # trials run in this process's working directory, like the scoring actors, so relative
    # data paths mean the same thing everywhere
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    runs_dir = join_uri(exp_path, "runs")
    trainable = tune.with_resources(
        tune.with_parameters(trial, base=config.model_dump(mode="json"), full_miou=full,
                             runs_dir=runs_dir),
        {"cpu": tc.cpus_per_trial, "gpu": tc.gpus_per_trial})
    tuner, restored = _tuner(config, trainable, exp_path, progress)
    grid = tuner.fit()
    keys = list(tc.search_space)
    rows = rank_trials([_trial_row(result, runs_dir, keys) for result in grid])
    write_parquet(pa.Table.from_pylist(rows), join_uri(out, RESULTS_FILE))
    table = results_table(rows, keys)
    best = next((r for r in rows if r["status"] == "completed"), None)
    if best is None:
        first = next((f"; first error: {r['error']}" for r in rows if r["error"]), "")
        raise RayalError(f"no trial of {exp_path} completed; see {join_uri(out, RESULTS_FILE)}{first}")
    write_best_config(config, best, keys, join_uri(out, BEST_FILE))
    save_plot(lambda path: plot_trials(rows, full, path), join_uri(out, PLOT_FILE))
    return {"rows": rows, "table": table, "best": best, "restored": restored, "output_dir": str(out)}
