"""Paired AuALC verdict of one strategy's runs against a strategy of another ``rayal compare``.

    python jobs/paired_across.py docs/benchmarks/camvid_patch_draws4,docs/benchmarks/camvid_patch_seeds10:entropy \\
        docs/benchmarks/camvid_patch_draws4,docs/benchmarks/camvid_patch_seeds10:random

For ablations whose arms ran as separate comparisons (another training, another aggregation,
a baseline reused from an earlier run). Each argument is ``DIR:STRATEGY``, DIR holding a
``comparison.parquet`` (or naming the file). The runs are paired by seed: a seed draws the same
initial labelled set in both (given the same pool and unit), of which the tables let this check
that round 0's labelled fraction agrees. The first strategy's AuALC minus
the second's, per seed, is printed with the entry ``rayal compare`` writes to ``verdicts.json``
(:func:`rayal.pipeline.study.statistics.strategy_verdict`: the mean, its percentile-bootstrap
95 % interval, seeds above, verdict, the verdict naming the baseline strategy; plus
``against``, the baseline's DIR:STRATEGY), the final mIoU of both, and the labels the first
saves to reach the second's final mIoU (``match_baseline``:
:func:`rayal.pipeline.study.statistics.saving_interval`).
Seeds in one run only, or without an AuALC, are left out with a note on stderr. A comparison
run with ``compare.draws`` > 1 holds several training draws per seed: they are averaged per
seed (AuALC, final mIoU, the curve round by round) before pairing, as ``verdicts.json`` does.
``DIR:A+B`` reads the runs of labels A and B as training draws of one strategy, averaged the
same way (e.g. ``entropy+entropy_t1``: a variant that only changes ``train.seed_offset``).
``DIR1,DIR2:STRATEGY`` reads the strategy's runs from several tables, a comparison extended
with new seeds in another run directory (a seed in two of them, or one table named twice, is
refused; a DIR whose own name holds a comma is read as one path when it exists).

Refused, with the reason: a missing or unreadable file, a missing column or strategy, a
strategy compared with itself, different full-supervision references on any seed (AuALC is
normalised by it: the second run must reuse the first's with ``--set loop.full_miou=...``),
a different initial fraction for a seed, or no common seed.

Runs are deterministic within one numerical environment only (CPU kernels, threads, packages:
:mod:`rayal.pipeline.environment`). Tables that carry ``environment`` (``rayal compare`` since
runs record it) are checked seed by seed: a pair made in two environments is named in a warning
on stderr, and ``environments_match`` in the entry is false (null when a run recorded none).

``--rounds N`` judges the curves up to round N only (AuALC and final mIoU recomputed from
rounds 0..N of each run; a run with fewer rounds is left out with a note): a longer run's first
N rounds are the shorter protocol's run, so a baseline measured on the same machine in a longer
comparison can stand in for one measured elsewhere (training numerics differ across machines).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from rayal.pipeline.environment import pairs_match
from rayal.pipeline.study.report import environments_by_seed, run_curves, seed_summaries
from rayal.pipeline.study.statistics import (MIN_PAIRS, label_saving, saving_interval,
                                             strategy_verdict, usable_curve)
from rayal.train.metrics import aualc

COLUMNS = ["strategy", "seed", "round", "labelled_fraction", "miou", "aualc", "final_miou",
           "full_miou"]


class Arm(NamedTuple):
    """One side of the comparison: ``DIR:STRATEGY`` read into {seed: run}."""
    label: str       # DIR:STRATEGY as given
    tables: tuple    # the comparison.parquet files read (resolved)
    strategy: str
    runs: dict       # {seed: {"aualc", "final_miou", "full_miou", "start", "curve"}}
    environments: dict   # {seed: {environment key or None}} over the seed's runs


def _table(path: Path):
    """The comparison table's COLUMNS; SystemExit naming the file and what is wrong."""
    if not path.is_file():
        raise SystemExit(f"paired_across: error: {path} does not exist (run rayal compare first)")
    try:
        names = pq.read_schema(path).names
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise SystemExit(f"paired_across: error: {path} has no column {missing[0]!r} "
                             f"(not a rayal compare comparison.parquet)")
        return pq.read_table(path, columns=COLUMNS + [c for c in ("draw", "environment")
                                                      if c in names])
    except (pa.ArrowInvalid, OSError) as err:
        raise SystemExit(f"paired_across: error: cannot read {path}: {err}") from err


def _table_paths(folder: str) -> list[Path]:
    """DIR (or the parquet file) -> [comparison.parquet], resolved; ``DIR1,DIR2``: one per
    part, unless the whole string names an existing path (a folder with a comma in its name).
    SystemExit for an empty part or a table named twice."""
    parts = [folder] if Path(folder).exists() else folder.split(",")
    paths = []
    for part in parts:
        if not part:
            raise SystemExit(f"paired_across: error: {folder!r}: an empty path in a DIR1,DIR2 list")
        path = Path(part)
        path = (path if path.suffix == ".parquet" else path / "comparison.parquet").resolve()
        if path in paths:
            raise SystemExit(f"paired_across: error: {folder!r} names {path} twice")
        paths.append(path)
    return paths


def read_arm(arg: str, rounds: int | None = None) -> Arm:
    """``DIR:STRATEGY`` (DIR may be the ``comparison.parquet`` itself) -> :class:`Arm`; seeds
    without an AuALC are left out with a note on stderr. ``rounds``: see ``--rounds``."""
    folder, sep, strategy = arg.rpartition(":")
    if not sep or not folder or not strategy or "/" in strategy or "\\" in strategy:
        raise SystemExit(f"paired_across: error: {arg!r} is not DIR:STRATEGY")
    labels = strategy.split("+")   # several labels: training draws of one strategy
    if len(set(labels)) != len(labels):
        raise SystemExit(f"paired_across: error: {arg!r} names a strategy twice")
    paths, rows, owner = [], [], {}
    for path in _table_paths(folder):
        table_rows = _table(path).to_pylist()
        for name in labels:
            if not any(r["strategy"] == name for r in table_rows):
                names = sorted({r["strategy"] for r in table_rows})
                raise SystemExit(f"paired_across: error: {path} has no strategy {name!r}; it "
                                 f"has {names}")
        mine = [r for r in table_rows if r["strategy"] in labels]
        for seed in sorted({r["seed"] for r in mine}):
            if owner.setdefault(seed, path) != path:   # resolved paths: one table, one owner
                raise SystemExit(f"paired_across: error: seed {seed} of {strategy} is in both "
                                 f"{owner[seed]} and {path}: extend a comparison with new "
                                 "seeds only")
        paths.append(path)
        rows += mine
    label = f"{folder}:{strategy}"
    by_run: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["seed"], r["round"])):   # round order within a run
        draw = (labels.index(r["strategy"]), r.get("draw") or 0)
        by_run.setdefault((r["seed"], draw), []).append(r)
    draws: dict[int, list[dict]] = {}
    several = {seed for seed, draw in by_run if any(draw)}   # seeds with more than one run
    for (seed, draw), runs in by_run.items():
        run = _one_run(runs, rounds)
        name = f"{label} seed {seed}" + (
            f" ({labels[draw[0]]} draw {draw[1]})" if seed in several else "")
        if run is None:
            print(f"paired_across: note: {name} ends at round {runs[-1]['round']}, before "
                  f"--rounds {rounds} (left out)", file=sys.stderr)
        elif run["aualc"] is None or math.isnan(run["aualc"]):
            print(f"paired_across: note: {name} has no AuALC (left out)", file=sys.stderr)
        else:
            draws.setdefault(seed, []).append(dict(run, strategy=strategy, seed=seed))
    for seed in [s for s, runs in draws.items() if len({len(r["curve"][0]) for r in runs}) > 1]:
        print(f"paired_across: note: {label} seed {seed}: its training draws have curves of "
              f"different lengths (left out)", file=sys.stderr)
        del draws[seed]
    return Arm(label, tuple(paths), strategy,
               _seed_means([r for runs in draws.values() for r in runs]), environments_by_seed(rows))


def _one_run(runs: list[dict], rounds: int | None) -> dict | None:
    """One run's rows (round order) -> its figures; ``rounds``: rounds 0..N only, AuALC and
    final mIoU recomputed (None when the run is shorter)."""
    curve = runs if rounds is None else [r for r in runs if r["round"] <= rounds]
    x, y = [r["labelled_fraction"] for r in curve], [r["miou"] for r in curve]
    run = {"aualc": runs[0]["aualc"], "final_miou": runs[0]["final_miou"],
           "full_miou": runs[0]["full_miou"], "start": runs[0]["labelled_fraction"], "curve": (x, y)}
    if rounds is None:
        return run
    if len(curve) != rounds + 1:
        return None
    return dict(run, aualc=aualc(x, y, runs[0]["full_miou"]), final_miou=y[-1])


def _seed_means(runs: list[dict]) -> dict[int, dict]:
    """Runs (one strategy; a seed's training draws with curves of one length) -> {seed: run}, a
    seed's draws averaged as ``verdicts.json`` averages them (:func:`seed_summaries`: AuALC and
    final mIoU; :func:`run_curves`: the curve round by round); ``draws`` counts them."""
    if not runs:
        return {}
    points = [{"strategy": r["strategy"], "seed": r["seed"], "round": i, "labelled_fraction": x,
               "miou": y} for r in runs for i, (x, y) in enumerate(zip(*r["curve"]))]
    curves = run_curves(points, runs[0]["strategy"])
    return {m["seed"]: dict(m, curve=curves[m["seed"]])
            for m in seed_summaries(runs, keys=("aualc", "final_miou"))}


def check_pairable(a: Arm, b: Arm) -> list[int]:
    """The seeds both hold; SystemExit when the two cannot be paired (module docstring)."""
    (name_a, ra), (name_b, rb) = (a.label, a.runs), (b.label, b.runs)
    shared = set(a.strategy.split("+")) & set(b.strategy.split("+"))
    if set(a.tables) & set(b.tables) and shared:
        raise SystemExit(f"paired_across: error: {name_a} and {name_b} share the runs of "
                         f"{sorted(shared)}: a strategy compared with itself")
    seeds = sorted(set(ra) & set(rb))
    for arm in (a, b):
        if not arm.runs:
            raise SystemExit(f"paired_across: error: {arm.label} has no run to pair (every one "
                             f"was left out: see the notes above)")
    if not seeds:
        raise SystemExit(f"paired_across: error: {name_a} and {name_b} share no seed "
                         f"({sorted(ra)} vs {sorted(rb)})")
    for s in seeds:
        fa, fb = ra[s]["full_miou"], rb[s]["full_miou"]
        if fa is None or fb is None or not math.isclose(fa, fb, rel_tol=1e-6):
            raise SystemExit(f"paired_across: error: seed {s}: different full-supervision "
                             f"references ({name_a}: {fa}, {name_b}: {fb}); rerun the second "
                             f"with --set loop.full_miou={fa!r}")
        if not math.isclose(ra[s]["start"], rb[s]["start"], rel_tol=1e-9):
            raise SystemExit(f"paired_across: error: seed {s} starts from {ra[s]['start']:.4f} "
                             f"labelled in {name_a} and {rb[s]['start']:.4f} in {name_b}: not the "
                             f"same initial set")
    only = sorted(set(ra) ^ set(rb))
    if only:
        print(f"paired_across: note: seeds {only} are in one run only (left out)", file=sys.stderr)
    if len(seeds) < MIN_PAIRS:
        print(f"paired_across: note: {len(seeds)} common seed(s), fewer than {MIN_PAIRS}: no "
              "interval to read, the verdict is 'not distinguishable'", file=sys.stderr)
    draws_a, draws_b = ({r["draws"] for r in arm.runs.values()} for arm in (a, b))
    if draws_a != draws_b:
        print(f"paired_across: note: {name_a} averages {sorted(draws_a)} training draw(s) per "
              f"seed, {name_b} {sorted(draws_b)}: their training noise differs", file=sys.stderr)
    return seeds


def environments_match(a: Arm, b: Arm, seeds: list[int]) -> bool | None:
    """:func:`rayal.pipeline.environment.pairs_match` over the two arms, with a warning on
    stderr naming the seeds whose runs were made in different environments, and a note for
    those with a run that recorded none."""
    match, mixed, unknown = pairs_match(a.environments, b.environments, seeds)
    if mixed:
        print(f"paired_across: warning: seeds {mixed}: the two arms' runs were made in different "
              "numerical environments (the tables' environment column; the record in each run's "
              "versions.json). Runs are deterministic within one environment only, so these "
              "differences mix numerical drift into the comparison: re-run one arm in the "
              "other's environment to pair them", file=sys.stderr)
    if unknown:
        print(f"paired_across: note: seeds {unknown}: a run recorded no numerical environment "
              "(made before rayal recorded it): whether the pairs share one is unknown",
              file=sys.stderr)
    return match


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("own", help="DIR:STRATEGY, the strategy judged")
    parser.add_argument("base", help="DIR:STRATEGY, the baseline (random, usually)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="judge rounds 0..N only (AuALC recomputed); see the docstring")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: a curve needs rounds 0..N with N >= 1")
    own, base = read_arm(args.own, args.rounds), read_arm(args.base, args.rounds)
    seeds = check_pairable(own, base)
    entry = strategy_verdict({s: own.runs[s]["aualc"] for s in seeds},
                             {s: base.runs[s]["aualc"] for s in seeds}, against=base.strategy)
    entry["match_baseline"] = saving_interval({s: own.runs[s]["curve"] for s in seeds},
                                              {s: base.runs[s]["curve"] for s in seeds})
    entry["against"] = base.label
    entry["environments_match"] = environments_match(own, base, seeds)
    upto = "" if args.rounds is None else f" (rounds 0-{args.rounds})"
    print(f"{own.label} - {base.label}, AuALC{upto} per seed:")
    for s in seeds:
        a, b = own.runs[s], base.runs[s]
        saved = "no curve to read (left out)"
        if usable_curve(a["curve"]) and usable_curve(b["curve"]):
            saved, reached = label_saving(a["curve"], b["curve"])
            saved = f"{saved:+.0%}" if reached else f"never reached (at most {saved:+.0%})"
        print(f"  seed {s}: {a['aualc'] - b['aualc']:+.4f}   final mIoU {a['final_miou']:.3f} "
              f"vs {b['final_miou']:.3f}   labels saved to the baseline's final mIoU: {saved}")
    print(json.dumps(entry, indent=2))
    return entry


if __name__ == "__main__":
    main()
