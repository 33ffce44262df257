"""``rayal compare``: strategies x seeds side by side, each a whole simulated AL run.

Every run goes to ``<output_dir>/<strategy>/seed<k>``; all of them normalise their learning
curve by one full-supervision reference, trained once into ``<output_dir>/full`` (or
``loop.reference_dir``). The comparison is resumable: a run with ``summary.json`` is read
back, an interrupted one is resumed round by round, so rerunning the command after a crash
redoes only what was lost.

Runs go one after the other in this driver on purpose: each run already spreads its work
over the Ray cluster (the scoring actor pool, Ray Data decoding, Ray Train workers), so
running them side by side would only make them compete for the same CPUs / GPUs. Sweeps
whose trials should share a large cluster go through ``rayal tune``.

Outputs in ``output_dir`` (written by :mod:`rayal.pipeline.study.report`):
``comparison.parquet`` (one row per strategy x seed x round, with the run's AuALC etc. on every
row), ``comparison.md`` (the table also printed), ``verdicts.json`` (per strategy: paired AuALC
difference to random with its bootstrap 95 % interval and the verdict read from it, labels
saved to reach random's final mIoU) and ``comparison.png`` (mean +- std learning curve per
strategy). ``compare.variants`` runs one strategy under several labels (e.g. entropy with and
without the diversity stage). ``compare.draws`` trains every strategy x seed several times
(``train.seed_offset`` + 1000 d): runs are deterministic on one machine, so training noise is
only measured, and averaged out of the paired differences, that way.
"""
from __future__ import annotations

import math

from rayal.config import ConfigError, RayalConfig
from rayal.config.loader import config_from_dict
from rayal.data import exists, join_uri
from rayal.pipeline.loop.selection_params import check_initial, check_strategy_params
from rayal.pipeline.runtime import check_same_config
from rayal.pipeline.storage import absolute, read_json, read_parquet
from rayal.pipeline.study.report import write_comparison


# --- run configs --------------------------------------------------------------------------
def strategy_raw(base: RayalConfig, strategy: str, params: dict[str, dict],
                 overrides: dict[str, list[str]], where: str, variants: dict | None = None) -> dict:
    """The base config (as a dict) switched to ``strategy`` (a label of ``variants`` runs the
    strategy it names): its ``params`` entry (or the base params when it is the base strategy)
    and its ``overrides`` applied; validated."""
    raw = base.model_dump(mode="json")
    registered = (variants or {}).get(strategy, strategy)
    if strategy in params:
        chosen = dict(params[strategy])
    else:
        chosen = dict(base.selection.params) if strategy == base.selection.strategy else {}
    raw["selection"] = dict(raw["selection"], strategy=registered, params=chosen)
    raw["loop"] = dict(raw["loop"], baseline=None)   # a comparison holds its own baselines
    extra = overrides.get(strategy, [])
    inert = [o for o in extra if o.split("=", 1)[0].strip().split(".", 1)[0] in ("compare", "tune")]
    if inert:
        raise ConfigError(f"{where}.overrides[{strategy!r}]: {inert} set the study, not a run; "
                          f"set them at the top level (--set {inert[0]})")
    config = config_from_dict(raw, extra, source=f"{where}.overrides[{strategy!r}] {extra}")
    check_strategy_params(registered, config.selection.params, f"{where}.params[{strategy!r}]",
                          config)
    return config.model_dump(mode="json")


# draw d trains with train.seed_offset + d * DRAW_STRIDE: far from the seeds a comparison runs
# (seed k, draw d must not train as seed k + d, draw 0) and from committee members' offsets
DRAW_STRIDE = 1000


def run_folder(seed: int, draw: int) -> str:
    """A run's folder name under its strategy's: ``seed<k>``, ``seed<k>_draw<d>`` for d >= 1
    (so a one-draw comparison's runs are draw 0 of a longer one)."""
    return f"seed{seed}" if draw == 0 else f"seed{seed}_draw{draw}"


def run_configs(config: RayalConfig) -> list[RayalConfig]:
    """One config per strategy x seed x training draw, in ``compare.strategies``, then
    ``compare.seeds``, then draw order; draw d adds d x :data:`DRAW_STRIDE` to
    ``train.seed_offset``."""
    cc, out = config.compare, config.output_dir
    ref = config.loop.reference_dir or join_uri(out, "full")
    configs = []
    for strategy in cc.strategies:
        raw = strategy_raw(config, strategy, cc.params, cc.overrides, "compare", cc.variants)
        for seed in cc.seeds:
            for draw in range(cc.draws):
                folder = run_folder(seed, draw)
                run = dict(raw, seed=seed, name=f"{config.name}-{strategy}-{folder}",
                           output_dir=join_uri(out, strategy, folder))
                run["loop"] = dict(raw["loop"], reference_dir=ref)
                run["train"] = dict(raw["train"],
                                    seed_offset=raw["train"]["seed_offset"] + draw * DRAW_STRIDE)
                configs.append(config_from_dict(run, source=f"compare run {strategy}/{folder}"))
    return configs


def run_one(config: RayalConfig, *, progress: bool = True) -> tuple[dict, bool]:
    """Run (or resume, or read back) one run; returns its summary and whether it was skipped.
    A run read back is measured against today's reference (:func:`against_reference`)."""
    from rayal.pipeline.loop.experiment import SUMMARY_FILE, run_experiment
    from rayal.pipeline.loop.reference import full_supervision_miou

    check_same_config(config)
    done = join_uri(config.output_dir, SUMMARY_FILE)
    if exists(done):
        return against_reference(config, read_json(done), full_supervision_miou(config)), True
    return run_experiment(config, resume=True, progress=progress), False


def against_reference(config: RayalConfig, summary: dict, full_miou: float) -> dict:
    """``summary`` with its curve figures (AuALC, budgets to 90 / 95 %) recomputed from the
    run's ``rounds.parquet`` against ``full_miou`` when the run was normalised by another
    reference (one retrained since, e.g. longer): every run of a comparison is measured
    against one ceiling."""
    from rayal.pipeline.loop.experiment import ROUNDS_FILE, curve_metrics

    if summary.get("full_miou") is not None and math.isclose(summary["full_miou"], full_miou):
        return summary
    rows = read_parquet(join_uri(config.output_dir, ROUNDS_FILE)).to_pylist()
    return dict(summary, **curve_metrics(rows, full_miou))


def run_keys(config: RayalConfig) -> list[tuple[str, int]]:
    """The comparison label and training draw of each of :func:`run_configs`' runs, in the
    same order."""
    cc = config.compare
    return [(s, d) for s in cc.strategies for _ in cc.seeds for d in range(cc.draws)]


def finished_runs(config: RayalConfig) -> tuple[list[RayalConfig], list[dict]]:
    """The runs of ``config.compare`` that have a ``summary.json`` (same setting checked), and
    their summaries labelled with the comparison label; nothing is run."""
    from rayal.pipeline.loop.experiment import SUMMARY_FILE
    from rayal.pipeline.loop.reference import cached_reference_miou

    done, summaries = [], []
    runs = run_configs(config)
    check_folders(config, [r for r in runs if exists(join_uri(r.output_dir, SUMMARY_FILE))])
    for run, (label, draw) in zip(runs, run_keys(config)):
        path = join_uri(run.output_dir, SUMMARY_FILE)
        if exists(path):
            done.append(run)
            summary, full = read_json(path), cached_reference_miou(run)
            if full is not None:
                summary = against_reference(run, summary, full)
            summaries.append(dict(summary, strategy=label, draw=draw))
    if not done:
        raise ConfigError(f"{config.output_dir} holds no finished run of this comparison")
    return done, summaries


def check_folders(reference: RayalConfig, configs: list[RayalConfig]) -> None:
    """Every folder of a comparison that was started with another setting (the cached
    reference and each run), named in one ConfigError before anything is trained."""
    from rayal.pipeline.loop.reference import cached_reference_miou

    problems = []
    for check, config in [(cached_reference_miou, reference)] + [(check_same_config, c) for c in configs]:
        try:
            check(config)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(f"{len(problems)} folder(s) of this comparison were made with another "
                          f"setting:\n- " + "\n- ".join(problems))


def check_reference_overrides(reference: RayalConfig, configs: list[RayalConfig],
                              labels: list[str]) -> None:
    """One full-supervision reference normalises every run of a comparison: a strategy whose
    ``compare.overrides`` change how it is trained or evaluated (epochs, splits,
    ``train.select_epoch``) is refused, one line per strategy, before anything runs."""
    from rayal.pipeline.loop.reference import reference_record

    shared, problems = reference_record(reference), {}
    for run, label in zip(configs, labels):
        own = reference_record(run)
        changed = [k for k in shared if own[k] != shared[k]]
        if changed and label not in problems:
            problems[label] = (f"compare.overrides[{label!r}] changes "
                               + ", ".join(f"{k} ({shared[k]!r} -> {own[k]!r})" for k in changed))
    if problems:
        raise ConfigError("the one full-supervision reference of a comparison is trained and "
                          "evaluated with the base setting, which these overrides change "
                          "(compare such settings in separate comparisons): "
                          + "; ".join(problems.values()))


def run_comparison(config: RayalConfig, *, progress: bool = True, finished_only: bool = False) -> dict:
    """Run every strategy x seed of ``config.compare`` (resumable) and write the comparison;
    ``finished_only``: run nothing, write it from the runs that have finished (an interim table
    of a long comparison): the strategies with a finished run, on the seeds all of them finished.

    Returns ``{"table": str, "summaries": [run summary, ...], "skipped": int, "output_dir": str}``.
    """
    from rayal.pipeline.loop.experiment import with_ssl_encoder
    from rayal.pipeline.loop.reference import full_supervision_miou
    from rayal.pipeline.runtime import init_ray, write_run_metadata

    if finished_only:
        done, summaries = finished_runs(config)
        config = config.model_copy(deep=True)   # the strategies with a finished run, on the
        draws = config.compare.draws   # a seed counts once every draw of it finished
        complete = {s: {k for k in config.compare.seeds if sum(
            r["strategy"] == s and r["seed"] == k for r in summaries) == draws}
            for s in config.compare.strategies}
        labels = [s for s in config.compare.strategies if complete[s]]   # on the seeds every
        seeds = sorted(set.intersection(*(complete[s] for s in labels))) if labels else []
        if not seeds:
            raise ConfigError(f"{config.output_dir}: no seed has finished runs of all of "
                              f"{labels or config.compare.strategies}"
                              + (f" in all {draws} training draws (compare.draws)" if draws > 1 else ""))
        keep = [i for i, r in enumerate(summaries) if r["seed"] in seeds]
        done, summaries = [done[i] for i in keep], [summaries[i] for i in keep]
        config.compare.strategies, config.compare.seeds = labels, seeds
        return {"table": write_comparison(config, done, summaries), "summaries": summaries,
                "skipped": len(done), "output_dir": config.output_dir}
    configs = run_configs(config)   # validates every strategy's params and overrides up front
    per_strategy = len(config.compare.seeds) * config.compare.draws
    for run in configs[::per_strategy]:   # and each strategy's cold start
        check_initial(run)
    reference = config.model_copy(deep=True)   # the base setting, not a strategy's overrides
    reference.loop.reference_dir = configs[0].loop.reference_dir
    check_reference_overrides(reference, configs, [label for label, _ in run_keys(config)])
    check_folders(reference, configs)   # before anything is trained or written
    write_run_metadata(config, config.output_dir)
    init_ray(config.ray)
    full_supervision_miou(reference, progress=progress)   # trained once, shared by every run
    with_ssl_encoder(reference, progress)   # the self-supervised encoder too, if one is used
    summaries, skipped = [], 0
    for i, (run, (label, draw)) in enumerate(zip(configs, run_keys(config)), 1):
        if progress:
            print(f"[{config.name}] run {i}/{len(configs)}: {label} seed {run.seed}"
                  + (f" draw {draw}" if config.compare.draws > 1 else ""), flush=True)
        summary, was_done = run_one(run, progress=progress)
        summaries.append(dict(summary, strategy=label, draw=draw))
        skipped += was_done
    table = write_comparison(config, configs, summaries)
    return {"table": table, "summaries": summaries, "skipped": skipped,
            "output_dir": config.output_dir}


def compare_all(configs: list[RayalConfig], *, progress: bool = True,
                finished_only: bool = False) -> list[dict]:
    """Several settings, each compared into its own ``output_dir`` (which must differ)."""
    dirs = [absolute(c.output_dir) for c in configs]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(f"each config given to rayal compare needs its own output_dir, got {dirs}")
    results = []
    for config in configs:
        result = run_comparison(config, progress=progress, finished_only=finished_only)
        print(f"\n{result['table']}\n(written to {result['output_dir']})\n", flush=True)
        results.append(result)
    return results
