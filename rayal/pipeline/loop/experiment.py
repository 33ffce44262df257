"""``rayal run``: one simulated active-learning experiment, resumable round by round.

Round 0 labels ``loop.initial`` units drawn at random; every later round runs
score -> select -> simulated annotation -> retrain -> evaluate until ``loop.rounds`` or
``loop.max_labelled`` is reached. The annotator reveals the ground truth of exactly the
selected units through the pool's own ingest path (label summaries -> ``PoolCoordinator``).

Run directory (``output_dir``): ``config.yaml``, ``versions.json``, ``pool/`` (journal +
snapshots), ``round_NNN/`` (scores, training checkpoints), ``rounds.parquet`` (one row per
finished round), ``summary.json`` and PNG plots. A stopped run resumes with ``--resume``:
finished rounds are kept, the interrupted one is redone phase by phase (selection and
ingest are idempotent, training resumes from its last checkpoint), so the results equal an
uninterrupted run with the same seed.

``output_dir`` is a local path or an ``s3://`` / ``gs://`` URI: every file of the run directory
(pool state, score tables, checkpoints, tables, plots) is written through :mod:`rayal.data.io`,
so a run on a cluster keeps nothing on the driver's disk and resumes from the bucket.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable

import numpy as np
import pyarrow as pa

from rayal.config.sections import PoolConfig, RayalConfig
from rayal.core.units import get_unit
from rayal.data import exists, join_uri
from rayal.data.io import parent_uri
from rayal.pipeline.score.frames import pool_frame_batches
from rayal.pipeline.loop.annotate import annotate_round, pool_units_total
from rayal.pipeline.loop.reference import full_supervision_miou
from rayal.pipeline.loop.reports import curve_table, write_plots
from rayal.pipeline.runtime import check_same_config, init_ray, write_run_metadata
from rayal.pipeline.loop.selection_params import selection_params
from rayal.pipeline.storage import read_parquet, remove_tree, write_json, write_parquet
from rayal.train.committee import lead_checkpoint
from rayal.train.metrics import aualc, budget_to_reach

ROUNDS_FILE, SUMMARY_FILE = "rounds.parquet", "summary.json"


def _round_dir(run_dir: str, r: int) -> str:
    return join_uri(run_dir, f"round_{r:03d}")


def _finished_rounds(run_dir: str) -> list[dict]:
    path = join_uri(run_dir, ROUNDS_FILE)
    return read_parquet(path).to_pylist() if exists(path) else []


def _write_rounds(run_dir: str, rows: list[dict]) -> None:
    # a finished round is recorded atomically (temp file + rename locally, one PUT in a bucket)
    write_parquet(pa.Table.from_pylist(rows), join_uri(run_dir, ROUNDS_FILE))


def _budget_units(value: float, total: int) -> int:
    return int(math.ceil(value * total)) if value <= 1 else int(value)


def _vaal_scores(config: RayalConfig, round_dir: str, labelled_ids: list[str]) -> str:
    from rayal.pipeline.loop.vaal_job import run_vaal_scoring

    vaal = join_uri(round_dir, "vaal")
    remove_tree(vaal)
    run_vaal_scoring(config, labelled_ids, vaal, progress=False)
    return vaal


# extra scorers a strategy may select from (``Strategy.score_source``): name ->
# (config, round_dir, labelled frame ids) -> score directory; run after the model's scoring
SCORE_SOURCES: dict[str, Callable[[RayalConfig, str, list], str]] = {"vaal": _vaal_scores}


def _score(config: RayalConfig, round_dir: str, checkpoint: str | None, labelled_ids: list[str],
           scorers=None, source: str = "model") -> str:
    """Score the pool with the current model into ``round_dir/scores``; an incomplete scoring
    (a killed run) is resumed: only frames without committed rows are scored again.
    ``scorers``: the run's long-lived :class:`~rayal.pipeline.score.scoring_pool.ScoringPool`.
    ``source``: the round's strategy's ``score_source``; another than ``"model"`` runs that
    extra scorer (:data:`SCORE_SOURCES`) once frames are labelled and returns its tables."""
    from rayal.pipeline.score.score_job import can_resume, run_scoring

    scores = join_uri(round_dir, "scores")
    if exists(join_uri(scores, "score_summary.json")):
        return scores
    model = config.model.model_copy(update={"checkpoint": checkpoint})
    score_config = config.model_copy(update={"output_dir": scores, "model": model})
    run_scoring(score_config, progress=False, pool=scorers, resume=can_resume(score_config))
    if source != "model" and labelled_ids:
        if source not in SCORE_SOURCES:
            raise ValueError(f"score source {source!r} is unknown; known: {sorted(SCORE_SOURCES)}")
        return SCORE_SOURCES[source](config, round_dir, labelled_ids)
    return scores


def _select(config, pool, r: int, score_dir: str, budget: dict, strategy: str, params: dict):
    from rayal.data import exists, join_uri
    from rayal.selection.base import ScoreTables

    quarantine = join_uri(score_dir, "quarantine")
    if exists(quarantine):   # unreadable frames are never selected
        bad = ScoreTables(frames=quarantine).read("frames", ["frame_id", "reason"])
        if bad.num_rows:
            pool.quarantine(bad.column("frame_id").to_pylist(), -1, bad.column("reason").to_pylist())
    return pool.select(strategy, params, budget, r, score_dir, seed=config.seed * 1000 + r)


def _train(config: RayalConfig, pool, round_dir: str, prev: str | None, r: int,
           extras: dict) -> str:
    """Retrain on the labelled units; ``extras``: the round strategy's ``training_extras``
    (``pseudo_label_threshold`` turns on CEAL-style pseudo-labels with train.pseudo_labels)."""
    from rayal.pipeline.loop.pseudo import ceal_pseudo_labels
    from rayal.train.dataset import specs_from_units
    from rayal.train.trainer import fit

    one_pixel = ()
    if config.loop.annotation == "one_pixel":
        from rayal.pipeline.loop.one_pixel import point_specs

        run_dir = parent_uri(round_dir)
        one_pixel = point_specs([_round_dir(run_dir, i) for i in range(r + 1)], config.data.ignore_index)
    specs = specs_from_units(pool.units("labeled"), config.pool.unit, one_pixel)
    pseudo = None
    threshold = extras.get("pseudo_label_threshold")
    if threshold and config.train.pseudo_labels and prev:
        pseudo = ceal_pseudo_labels(config, lead_checkpoint(prev), {s.frame_id for s in specs},
                                    float(threshold), max_frames=max(len(specs), 1))
    if config.scoring.mode == "committee":   # K members; the round's checkpoint is the manifest
        from rayal.pipeline.loop.committee_job import train_committee
        return train_committee(config, specs, join_uri(round_dir, "train"), previous=prev,
                               pseudo=pseudo, run_name=f"{config.name}-round{r}")[0]
    state = fit(config, specs, join_uri(round_dir, "train"),
                init_checkpoint=prev if config.train.warm_start else None,
                pseudo=pseudo, run_name=f"{config.name}-round{r}")
    return state["best_checkpoint"]


def with_region_cache(config: RayalConfig) -> RayalConfig:
    """``config`` with ``scoring.region_cache`` defaulted, for runs that use superpixels, to
    ``region_cache`` beside the reference directory: every run of a comparison (and its
    reference) shares one cache of the pool's superpixel maps."""
    from rayal.data.io import has_scheme
    from rayal.pipeline.loop.reference import reference_dir

    uses = config.pool.unit == "superpixel" or "superpixel" in config.scoring.units  # its cache
    if config.scoring.region_cache or not uses:
        return config
    cache = join_uri(parent_uri(reference_dir(config)), "region_cache")
    cache = cache if has_scheme(cache) else os.path.abspath(cache)
    scoring = config.scoring.model_copy(update={"region_cache": cache})
    return config.model_copy(update={"scoring": scoring})


def with_ssl_encoder(config: RayalConfig, progress: bool = False) -> RayalConfig:
    """``config`` with its self-supervised encoder trained or found (``embedding_model:
    self_supervised``), cached in ``ssl_cache`` beside the reference directory: every run of a
    comparison, whatever its strategy or seed, embeds with that one encoder."""
    from rayal.pipeline.loop.reference import reference_dir
    from rayal.pipeline.score.self_supervised import with_self_supervised_encoder

    return with_self_supervised_encoder(
        config, join_uri(parent_uri(reference_dir(config)), "ssl_cache"), progress=progress)


def run_experiment(config: RayalConfig, *, resume: bool = False, progress: bool = True,
                   report: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) one AL experiment; returns the summary written to ``summary.json``."""
    from rayal.core.plugins import load_plugins
    from rayal.core.strategy import RoundContext, round_params
    from rayal.pipeline.loop.train_job import evaluate_model
    from rayal.pool.coordinator import PoolCoordinator
    from rayal.selection.registry import get_strategy_info
    from rayal.train.checkpoint import read_checkpoint

    load_plugins(config.selection.plugins)   # also in Ray workers (compare, tune)

    run_dir = os.fspath(config.output_dir)
    rows = _finished_rounds(run_dir)
    if rows and not resume:
        raise ValueError(f"{run_dir} already holds a run ({len(rows)} round(s)); pass --resume "
                         "to continue it or choose another output_dir")
    if resume:   # rounds measured with another setting (another eval split...) are not mixed in
        check_same_config(config)
    write_run_metadata(config, run_dir, computes=not exists(join_uri(run_dir, SUMMARY_FILE)))
    config = with_region_cache(config)
    config = with_ssl_encoder(config, progress)
    init_ray(config.ray)
    started = time.perf_counter()
    full_miou = full_supervision_miou(config, progress=progress)
    pool = PoolCoordinator(PoolConfig(project="run", unit=config.pool.unit,
                                      state_dir=join_uri(run_dir, "pool"), snapshot_every=1000))
    for batch in pool_frame_batches(config.data):
        pool.register(pa.Table.from_batches([batch]))
    from rayal.pipeline.score.scoring_pool import ScoringPool

    scorers = (ScoringPool(config)
               if config.loop.persistent_scoring and ScoringPool.fits_beside_training(config) else None)
    tic = time.perf_counter()
    round0 = (_score(config, _round_dir(run_dir, 0), None, [], scorers)   # counts the real
              if not get_unit(config.pool.unit).exact_count else None)   # superpixels
    round0_seconds = time.perf_counter() - tic   # round 0's scoring, done here, is timed here
    total = pool_units_total(config, pool.state.num_frames, round0)
    lp = config.loop
    cap = _budget_units(lp.max_labelled, total) if lp.max_labelled else total
    last_round = lp.rounds if lp.rounds is not None else 10**9
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc=f"{config.name} [{config.selection.strategy}]", unit="round", initial=len(rows))
    r = len(rows)
    while r <= last_round:
        labelled = sum(row["selected_units"] for row in rows)
        want = _budget_units(lp.initial, total) if r == 0 else (config.selection.budget or 0)
        budget_units = min(want, cap - labelled)
        if r > 0 and budget_units <= 0:
            break
        round_dir = _round_dir(run_dir, r)
        prev = rows[-1]["checkpoint"] if rows else None
        times = {}
        tic = time.perf_counter()
        labelled_ids = pool.units("labeled").column("frame_id").unique().to_pylist()
        strategy = lp.initial_strategy if r == 0 else config.selection.strategy
        info = get_strategy_info(strategy)   # what the strategy needs this round (its contract)
        score_dir = _score(config, round_dir, prev, labelled_ids if r else [], scorers,
                           info.score_source)
        times["score"], tic = time.perf_counter() - tic, time.perf_counter()
        if r == 0:
            times["score"] += round0_seconds
        params = dict(lp.initial_params if r == 0 else config.selection.params)
        params = selection_params(config, strategy, params)   # unit: pool.unit, as pool select
        context = RoundContext(   # round 0's scores: for what is fitted once per run (MEAL's UMAP)
            round_index=r - 1, seed=config.seed, labelled_frames=labelled_ids,
            initial_scores=lambda: _score(config, _round_dir(run_dir, 0), None, [], scorers))
        params = round_params(strategy, params, context)
        budget = ({"units": budget_units} if r == 0 or config.selection.budget_cost is None
                  else {"cost": config.selection.budget_cost})
        _select(config, pool, r, score_dir, budget, strategy, params)
        times["select"], tic = time.perf_counter() - tic, time.perf_counter()
        cost = annotate_round(config, pool, r, round_dir, lead_checkpoint(prev))
        times["annotate"], tic = time.perf_counter() - tic, time.perf_counter()
        checkpoint = _train(config, pool, round_dir, prev, r,
                            info.cls.training_extras({**info.defaults, **params}))
        times["train"], tic = time.perf_counter() - tic, time.perf_counter()
        metrics = evaluate_model(read_checkpoint(lead_checkpoint(checkpoint))[0], config)
        times["eval"] = time.perf_counter() - tic
        if not lp.keep_scores and r > 0:
            remove_tree(join_uri(round_dir, "scores"))
        labelled_units = labelled + cost["units"]
        rows.append({
            "round": r, "strategy": strategy, "seed": config.seed,
            "selected_units": cost["units"], "labelled_units": labelled_units,
            "labelled_fraction": labelled_units / total, "clicks": cost["clicks"],
            "cum_clicks": (rows[-1]["cum_clicks"] if rows else 0) + cost["clicks"],
            "miou": metrics["miou"],
            "per_class_iou": [np.nan if v is None else v for v in metrics["per_class_iou"].values()],
            "selected_class_hist": cost["class_hist"], "quarantined": cost["quarantined"],
            **{f"seconds_{k}": v for k, v in times.items()}, "checkpoint": checkpoint,
        })
        _write_rounds(run_dir, rows)
        if report is not None:
            report(dict(rows[-1], full_miou=full_miou))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(miou=f"{metrics['miou']:.3f}", labelled=labelled_units)
        if cost["units"] == 0:
            break   # nothing left to select
        r += 1
    if bar is not None:
        bar.close()
    if scorers is not None:
        scorers.close()
    summary = summarize(rows, full_miou, total, config, time.perf_counter() - started)
    write_json(join_uri(run_dir, SUMMARY_FILE), summary)
    write_plots(config, run_dir, rows, full_miou, pool)
    pool.close()
    return summary


def summarize(rows: list[dict], full_miou: float, total: int, config: RayalConfig,
              seconds: float) -> dict:
    """AuALC over the labelled fraction, final mIoU, budget to 90 / 95 % of full supervision."""
    return {
        "strategy": config.selection.strategy, "seed": config.seed, "rounds": len(rows),
        "unit": config.pool.unit, "units_total": total,
        "labelled_units": rows[-1]["labelled_units"] if rows else 0,
        **curve_metrics(rows, full_miou),
        "clicks": rows[-1]["cum_clicks"] if rows else 0, "seconds": seconds,
    }


def curve_metrics(rows: list[dict], full_miou: float) -> dict:
    """The learning curve's figures against one reference: ``aualc`` (None under two rounds),
    ``final_miou``, ``full_miou``, ``budget_to_90`` / ``budget_to_95`` (labelled fraction of the
    first round reaching 90 / 95 % of ``full_miou``; None: never)."""
    x = [row["labelled_fraction"] for row in rows]
    y = [row["miou"] for row in rows]
    return {"aualc": aualc(x, y, full_miou) if len(rows) > 1 else None,
            "final_miou": y[-1] if y else None, "full_miou": full_miou,
            "budget_to_90": budget_to_reach(x, y, full_miou, 0.90),
            "budget_to_95": budget_to_reach(x, y, full_miou, 0.95)}


def run_with_baseline(config: RayalConfig, *, resume: bool = False, progress: bool = True) -> list[dict]:
    """The configured run plus, with ``loop.baseline``, the baseline strategy beside it."""
    summaries = [run_experiment(config, resume=resume, progress=progress)]
    if config.loop.baseline:
        base = config.model_copy(deep=True)
        base.output_dir = join_uri(config.output_dir, f"baseline_{config.loop.baseline}")
        base.selection.strategy = config.loop.baseline
        base.selection.params = {}
        base.loop.baseline = None
        base.loop.reference_dir = config.loop.reference_dir or join_uri(config.output_dir, "full")
        summaries.append(run_experiment(base, resume=resume, progress=progress))
    print(curve_table(_dirs(config)))
    return summaries


def _dirs(config: RayalConfig) -> list[str]:
    out = [config.output_dir]
    if config.loop.baseline:
        out.append(join_uri(config.output_dir, f"baseline_{config.loop.baseline}"))
    return out
