"""What ``rayal compare`` writes from its runs: ``comparison.parquet`` (one row per strategy x
seed x round), ``comparison.md`` (the table also printed), ``environments.json`` (the numerical
environment of each run, :mod:`rayal.pipeline.environment`; a warning when they differ),
``verdicts.json`` (per strategy: the paired AuALC difference to random with its bootstrap 95 %
interval and the verdict read from it, the labelled fraction to reach 90 / 95 % of the
reference, and the labels saved to reach random's final mIoU;
:mod:`rayal.pipeline.study.statistics`) and ``comparison.png`` (mean +- std learning curve per
strategy). Pure reading and writing: nothing here runs a round.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pyarrow as pa

from rayal.config import RayalConfig
from rayal.errors import RayalWarning
from rayal.data import join_uri, write_bytes
from rayal.pipeline.environment import (environment_key, mixed_environments, mixed_note,
                                        pairs_match)
from rayal.pipeline.loop.reports import plot_learning_curves
from rayal.pipeline.storage import read_parquet, save_plot, write_parquet
from rayal.pipeline.study.statistics import (budget_interval, paired, paired_seeds,
                                             saving_interval, strategy_verdict)

TABLE_FILE, PARQUET_FILE, PLOT_FILE = "comparison.md", "comparison.parquet", "comparison.png"
VERDICTS_FILE, ENVIRONMENTS_FILE = "verdicts.json", "environments.json"


def comparison_rows(configs: list[RayalConfig], summaries: list[dict]) -> list[dict]:
    """One row per run x round: the round's metrics plus the run's summary values; ``strategy``
    is the run's comparison label (``summary["strategy"]``)."""
    from rayal.pipeline.loop.experiment import ROUNDS_FILE
    from rayal.pipeline.runtime import run_environment

    out = []
    for config, s in zip(configs, summaries):
        environment = environment_key(run_environment(config.output_dir))
        for row in read_parquet(join_uri(config.output_dir, ROUNDS_FILE)).to_pylist():
            row = dict(row, round_strategy=row["strategy"], strategy=s["strategy"],
                       seed=config.seed, draw=s.get("draw", 0), run_dir=config.output_dir)
            row.pop("checkpoint", None)
            out.append(dict(row, unit=s["unit"], units_total=s["units_total"], aualc=s["aualc"],
                            final_miou=s["final_miou"], full_miou=s["full_miou"],
                            budget_to_90=s["budget_to_90"], budget_to_95=s["budget_to_95"],
                            run_seconds=s["seconds"], environment=environment))
    return out


def check_environments(out: str, configs: list[RayalConfig], summaries: list[dict]) -> str | None:
    """Write ``environments.json`` (``{key: {"record", "runs"}}``; ``"unrecorded"``, record
    null: runs made before runs recorded one) and, when the runs were made in more than one
    numerical environment (or some recorded none beside others that did), warn
    (:class:`RayalWarning`) and return the note for the table."""
    from rayal.pipeline.runtime import run_environment

    records, by_run = {}, {}
    for config, s in zip(configs, summaries):
        run = f"{s['strategy']}/{config.output_dir.rstrip('/').rsplit('/', 1)[-1]}"
        record = run_environment(config.output_dir)
        if record and "segments" in record:
            run += " (resumed across environments)"
        by_run[run] = record
        if record:
            records.setdefault(environment_key(record), record)
    groups = mixed_environments(by_run)
    payload = {key: {"record": records.get(key), "runs": runs} for key, runs in groups.items()}
    write_bytes(join_uri(out, ENVIRONMENTS_FILE), json.dumps(payload, indent=2).encode())
    note = mixed_note(groups, records)
    if note:
        warnings.warn(f"{out}: {note}", RayalWarning, stacklevel=3)
    return note


def environments_by_seed(rows: list[dict]) -> dict[int, set]:
    """Round rows of one arm -> {seed: the environment keys of its runs} (None: a run without
    a record, or a table from before the column)."""
    out: dict[int, set] = {}
    for r in rows:
        out.setdefault(r["seed"], set()).add(r.get("environment"))
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _fmt(values: list, digits: int = 4) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    m, s = _mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


PAIRED_BASELINE = "random"
SEED_MEANS = ("aualc", "final_miou", "budget_to_90", "budget_to_95", "seconds")


def seed_summaries(summaries: list[dict], keys: tuple[str, ...] = SEED_MEANS) -> list[dict]:
    """One summary per strategy x seed: the seed's training draws (``compare.draws``) averaged
    in ``keys`` (a value is None unless every draw has one: a budget every draw reached), with
    ``draws`` the number averaged. Summaries without a ``draw`` are one draw each."""
    groups: dict[tuple, list[dict]] = {}
    for s in summaries:
        groups.setdefault((s["strategy"], s["seed"]), []).append(s)
    out = []
    for runs in groups.values():
        merged = dict(runs[0], draws=len(runs))
        for key in keys:
            values = [r[key] for r in runs]
            merged[key] = None if any(v is None for v in values) else float(np.mean(values))
        out.append(merged)
    return out


def training_noise(summaries: list[dict], strategy: str) -> float | None:
    """Training noise of a strategy's AuALC: the pooled within-seed sample std over its training
    draws, sqrt(mean over seeds of the draws' variance); None without a seed of >= 2 draws."""
    by_seed: dict[int, list[float]] = {}
    for s in summaries:
        if s["strategy"] == strategy and s["aualc"] is not None:
            by_seed.setdefault(s["seed"], []).append(s["aualc"])
    variances = [np.var(v, ddof=1) for v in by_seed.values() if len(v) > 1]
    return float(np.sqrt(np.mean(variances))) if variances else None


def paired_differences(summaries: list[dict], strategy: str, baseline: str = PAIRED_BASELINE) -> list[float]:
    """AuALC(strategy) - AuALC(baseline) per seed both ran (same seed: same initial set and
    reference), in seed order (:func:`~rayal.pipeline.study.statistics.paired`); [] for the
    baseline itself or when it was not run."""
    if strategy == baseline:
        return []
    by = lambda name: {s["seed"]: s["aualc"] for s in summaries if s["strategy"] == name}  # noqa: E731
    return paired(by(strategy), by(baseline))[1]


def strategy_stats(config: RayalConfig, summaries: list[dict]) -> list[dict]:
    """Per strategy (``compare.strategies`` order): AuALC / final mIoU mean and sample std over
    seeds (a seed's training draws averaged first: :func:`seed_summaries`), mean labelled
    fraction to reach 90 / 95 % of full supervision and how often it did, and the paired AuALC
    difference to random per seed (``vs_random``); ``runs`` counts every draw."""
    stats = []
    per_seed = seed_summaries(summaries)
    for strategy in config.compare.strategies:
        runs = [s for s in per_seed if s["strategy"] == strategy]
        aualcs = [s["aualc"] for s in runs if s["aualc"] is not None]
        entry = {"strategy": strategy, "runs": sum(s["draws"] for s in runs), "seeds": len(runs),
                 "aualc": aualcs,
                 "final_miou": [s["final_miou"] for s in runs],
                 "minutes": float(np.mean([s["seconds"] for s in runs])) / 60}
        for pct in (90, 95):
            reached = [s[f"budget_to_{pct}"] for s in runs if s[f"budget_to_{pct}"] is not None]
            entry[f"to_{pct}"] = reached
        entry["vs_random"] = paired_differences(per_seed, strategy)
        stats.append(entry)
    return stats


def comparison_table(config: RayalConfig, summaries: list[dict], rows: list[dict] | None = None) -> str:
    """Markdown table (also printed): one line per strategy, ranked by mean AuALC below it;
    ``rows`` (:func:`comparison_rows`) add the labels saved to reach random's final mIoU."""
    s0, draws = summaries[0], config.compare.draws
    verdicts = strategy_verdicts(config, summaries, rows)
    per_draw = (f" x {draws} training draws (averaged per seed before pairing; training noise: "
                "pooled within-seed std of AuALC)" if draws > 1 else "")
    lines = [f"# {config.name}: {len(config.compare.strategies)} strategies x "
             f"{len(config.compare.seeds)} seed(s){per_draw}, unit {s0['unit']} "
             f"({s0['units_total']} in the pool)",
             "", f"full-supervision mIoU {s0['full_miou']:.4f}; AuALC and mIoU: mean ± sample std "
             "over seeds; 'to 95%': mean labelled fraction of pool units at the first round "
             "reaching 95% of full supervision, over the seeds that reached it; 'AuALC - random': "
             "paired difference per seed (same initial set), mean ± std, and the seeds it is > 0; "
             "'95% CI': percentile bootstrap over seeds of the mean paired difference, which the "
             "verdict is read from; 'labels saved': 1 - the labelled fraction at which the strategy "
             "first reaches random's final mIoU / the one at which random does (same seed, "
             "interpolated between rounds), mean [95% CI] over the paired seeds; 'at most' when a "
             "seed never reached it: that seed enters at the most it could have saved, so the "
             "mean and the interval's upper end are upper bounds and there is no lower end", "",
             "| strategy | runs | AuALC | AuALC - random | above random | final mIoU | to 90% | "
             "reached | to 95% | reached | min/run | 95% CI | verdict | labels saved |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    stats = strategy_stats(config, summaries)
    for e in stats:
        n, diffs = e["seeds"], e["vs_random"]
        above = f"{sum(d > 0 for d in diffs)}/{len(diffs)}" if diffs else "-"
        lines.append(f"| {e['strategy']} | {e['runs']} | {_fmt(e['aualc'])} | {_fmt(diffs)} | {above} | "
                     f"{_fmt(e['final_miou'])} | {_fmt(e['to_90'], 3)} | {len(e['to_90'])}/{n} | "
                     f"{_fmt(e['to_95'], 3)} | {len(e['to_95'])}/{n} | {e['minutes']:.1f} | "
                     f"{_ci(verdicts.get(e['strategy']))} | {_verdict(verdicts.get(e['strategy']))} | "
                     f"{_saving(verdicts.get(e['strategy']))} |")
    if draws > 1:
        noise = {k: v.get("training_noise_sd") for k, v in verdicts.items()}
        lines += ["", "training noise (AuALC std between draws of one seed): " + ", ".join(
            f"{s} {noise[s]:.4f}" if noise.get(s) is not None else f"{s} -"
            for s in config.compare.strategies)]
    ranked = sorted((e for e in stats if e["aualc"]), key=lambda e: -np.mean(e["aualc"]))
    if ranked:
        lines += ["", "ranking by mean AuALC: " + " > ".join(e["strategy"] for e in ranked)]
    return "\n".join(lines + ceiling_warning(summaries))


def ceiling_warning(summaries: list[dict]) -> list[str]:
    """A warning line when runs end above the full-supervision reference (then it is no
    ceiling: AuALC above 1 and '95 % of full supervision' say little); [] otherwise."""
    above = [s for s in summaries if s["final_miou"] is not None and s["final_miou"] > s["full_miou"]]
    if not above:
        return []
    best = max(s["final_miou"] for s in above)
    return ["", f"WARNING: {len(above)} of {len(summaries)} runs end above the full-supervision "
            f"reference ({best:.4f} > {above[0]['full_miou']:.4f}): it is not a ceiling; train it "
            f"longer (loop.reference_factor or loop.reference_epochs, with a new loop.reference_dir "
            f"or the old reference folder removed) and rerun the comparison "
            f"(finished runs are read back and measured against the new reference)"]


def _ci(v: dict | None) -> str:
    return "-" if not v or v.get("ci_low") is None else f"[{v['ci_low']:+.4f}, {v['ci_high']:+.4f}]"


def _verdict(v: dict | None) -> str:
    return (v or {}).get("verdict", "-")


def _saving(v: dict | None) -> str:
    m = (v or {}).get("match_random")
    if not m or not m["seeds"]:
        return "-"
    if m["upper_bound"]:
        return (f"at most {m['mean']:+.0%} (upper 95% bound {m['ci_high']:+.0%}), "
                f"reached {m['reached']}/{m['seeds']}")
    return (f"{m['mean']:+.0%} [{m['ci_low']:+.0%}, {m['ci_high']:+.0%}], "
            f"reached {m['reached']}/{m['seeds']}")


def seed_points(rows: list[dict], strategy: str) -> dict[tuple[int, int], tuple[float, float]]:
    """``{(seed, round): (labelled fraction, mIoU)}`` of one strategy, a seed's training draws
    averaged, sorted by seed then round."""
    points: dict[tuple[int, int], list[dict]] = {}
    for r in rows:
        if r["strategy"] == strategy:
            points.setdefault((r["seed"], r["round"]), []).append(r)
    return {key: (float(np.mean([r["labelled_fraction"] for r in at])),
                  float(np.mean([r["miou"] for r in at]))) for key, at in sorted(points.items())}


def run_curves(rows: list[dict], strategy: str) -> dict[int, tuple[list[float], list[float]]]:
    """``{seed: (labelled fractions, mIoUs)}`` of one strategy's runs, in round order; a seed's
    training draws averaged round by round."""
    curves: dict[int, tuple[list[float], list[float]]] = {}
    for (seed, _), (fraction, miou) in seed_points(rows, strategy).items():
        x, y = curves.setdefault(seed, ([], []))
        x.append(fraction)
        y.append(miou)
    return curves


def strategy_verdicts(config: RayalConfig, summaries: list[dict],
                      rows: list[dict] | None = None) -> dict[str, dict]:
    """``verdicts.json``: per strategy other than random, the paired AuALC difference to random
    with its bootstrap 95 % interval, seeds above, and the verdict read from the interval
    (:mod:`rayal.pipeline.study.statistics`); plus the labelled fraction to reach 90 / 95 % of the
    reference with intervals (``to_90`` / ``to_95``, random's too) and, given the round ``rows``
    (:func:`comparison_rows`), the labels saved to reach random's final mIoU (``match_random``:
    :func:`~rayal.pipeline.study.statistics.saving_interval`) and whether each pair was made in
    one numerical environment (``environments_match``: true, false, or null when a run recorded
    none; :func:`rayal.pipeline.environment.pairs_match`). A seed's training draws are
    averaged before it is paired; with ``compare.draws`` > 1 every entry adds ``draws`` and
    ``training_noise_sd`` (:func:`training_noise`)."""
    per_seed = seed_summaries(summaries)
    by = lambda name, key: {s["seed"]: s[key] for s in per_seed if s["strategy"] == name}  # noqa: E731
    out = {}
    for strategy in config.compare.strategies:
        entry = (strategy_verdict(by(strategy, "aualc"), by(PAIRED_BASELINE, "aualc"), seed=config.seed)
                 if strategy != PAIRED_BASELINE else {})
        if config.compare.draws > 1:
            entry.update(draws=config.compare.draws,
                         training_noise_sd=training_noise(summaries, strategy))
        for pct in (90, 95):
            entry[f"to_{pct}"] = budget_interval(list(by(strategy, f"budget_to_{pct}").values()),
                                                 seed=config.seed)
        if rows is not None and strategy != PAIRED_BASELINE:   # on the seeds AuALC pairs
            paired = paired_seeds(by(strategy, "aualc"), by(PAIRED_BASELINE, "aualc"))
            entry["match_random"] = saving_interval(run_curves(rows, strategy),
                                                    run_curves(rows, PAIRED_BASELINE),
                                                    seed=config.seed, seeds=paired)
            own, base = (environments_by_seed([r for r in rows if r["strategy"] == name])
                         for name in (strategy, PAIRED_BASELINE))
            entry["environments_match"] = pairs_match(own, base, paired)[0]
        out[strategy] = entry
    if PAIRED_BASELINE not in config.compare.strategies:
        return {k: v for k, v in out.items() if "verdict" in v}
    return {k: v for k, v in out.items() if k != PAIRED_BASELINE or v}


def mean_curves(rows: list[dict], strategies: list[str]) -> dict[str, tuple]:
    """strategy -> (mean labelled fraction, mean mIoU, std mIoU) per round over its seeds (a
    seed's training draws averaged first, :func:`seed_points`)."""
    curves = {}
    for strategy in strategies:
        points = seed_points(rows, strategy)
        x, y, sd = [], [], []
        for rnd in sorted({r for _, r in points}):
            at = [p for (_, r), p in points.items() if r == rnd]
            x.append(float(np.mean([f for f, _ in at])))
            m, s = _mean_std([v for _, v in at])
            y.append(m)
            sd.append(s)
        n = len({k for k, _ in points})
        curves[f"{strategy} (n={n})"] = (x, y, np.asarray(sd))
    return curves


def write_comparison(config: RayalConfig, configs: list[RayalConfig], summaries: list[dict]) -> str:
    """comparison.parquet, comparison.md and comparison.png; returns the table."""
    out = config.output_dir
    rows = comparison_rows(configs, summaries)
    write_parquet(pa.Table.from_pylist(rows), join_uri(out, PARQUET_FILE))
    table = comparison_table(config, summaries, rows)
    note = check_environments(out, configs, summaries)
    if note:
        table += f"\n\n**Warning:** {note}"
    write_bytes(join_uri(out, TABLE_FILE), (table + "\n").encode())
    write_bytes(join_uri(out, VERDICTS_FILE),
                json.dumps(strategy_verdicts(config, summaries, rows), indent=2).encode())
    curves = mean_curves(rows, config.compare.strategies)
    save_plot(lambda path: plot_learning_curves(curves, summaries[0]["full_miou"], path),
                join_uri(out, PLOT_FILE))
    return table


