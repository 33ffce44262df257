"""Paired AuALC verdict of one strategy's runs against a strategy of another ``rayal compare``.

    python jobs/paired_across.py docs/benchmarks/camvid_superpixel:entropy_kcenter \\
        docs/benchmarks/camvid_superpixel_noaug:random

For ablations whose arms ran as separate comparisons (another training, another aggregation,
a baseline reused from an earlier run). Each argument is ``DIR:STRATEGY``, DIR holding a
``comparison.parquet``. The runs are paired by seed: a seed draws the same initial labelled
set in both, which this checks (round 0's labelled fraction). The first strategy's AuALC minus
the second's, per seed, is printed with the entry ``rayal compare`` writes to ``verdicts.json``
(:func:`rayal.pipeline.study.statistics.strategy_verdict`: the mean, its percentile-bootstrap
95 % interval, seeds above, verdict) and the final mIoU of both.

Refused, with the reason: a missing file or strategy, two different full-supervision
references (AuALC is normalised by it: the second run must reuse the first's with
``--set loop.full_miou=...``), a different initial fraction for a seed, or no common seed.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pyarrow.parquet as pq

from rayal.pipeline.study.statistics import strategy_verdict

COLUMNS = ["strategy", "seed", "round", "labelled_fraction", "aualc", "final_miou", "full_miou"]


def runs(arg: str) -> tuple[str, dict[int, dict]]:
    """``DIR:STRATEGY`` -> (label, {seed: {"aualc", "final_miou", "full_miou", "start"}})."""
    folder, sep, strategy = arg.rpartition(":")
    if not sep or not folder or not strategy:
        raise SystemExit(f"paired_across: error: {arg!r} is not DIR:STRATEGY")
    path = Path(folder) / "comparison.parquet"
    if not path.is_file():
        raise SystemExit(f"paired_across: error: {path} does not exist (run rayal compare first)")
    rows = [r for r in pq.read_table(path, columns=COLUMNS).to_pylist() if r["strategy"] == strategy]
    if not rows:
        names = sorted(set(pq.read_table(path, columns=["strategy"]).column(0).to_pylist()))
        raise SystemExit(f"paired_across: error: {path} has no strategy {strategy!r}; it has {names}")
    out: dict[int, dict] = {}
    for r in sorted(rows, key=lambda r: (r["seed"], r["round"])):   # round 0 first: the start
        out.setdefault(r["seed"], {"aualc": r["aualc"], "final_miou": r["final_miou"],
                                   "full_miou": r["full_miou"], "start": r["labelled_fraction"]})
    return f"{folder}:{strategy}", out


def check_pairable(a: tuple[str, dict], b: tuple[str, dict]) -> list[int]:
    """The seeds both hold; SystemExit when the two cannot be paired (module docstring)."""
    (name_a, ra), (name_b, rb) = a, b
    seeds = sorted(set(ra) & set(rb))
    if not seeds:
        raise SystemExit(f"paired_across: error: {name_a} and {name_b} share no seed "
                         f"({sorted(ra)} vs {sorted(rb)})")
    fa, fb = ra[seeds[0]]["full_miou"], rb[seeds[0]]["full_miou"]
    if not math.isclose(fa, fb, rel_tol=1e-6):
        raise SystemExit(f"paired_across: error: different full-supervision references "
                         f"({name_a}: {fa}, {name_b}: {fb}); rerun the second with "
                         f"--set loop.full_miou={fa!r}")
    for s in seeds:
        if not math.isclose(ra[s]["start"], rb[s]["start"], rel_tol=1e-9):
            raise SystemExit(f"paired_across: error: seed {s} starts from {ra[s]['start']} labelled "
                             f"in {name_a} and {rb[s]['start']} in {name_b}: not the same initial set")
    return seeds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("own", help="DIR:STRATEGY, the strategy judged")
    parser.add_argument("base", help="DIR:STRATEGY, the baseline (random, usually)")
    args = parser.parse_args(argv)
    own, base = runs(args.own), runs(args.base)
    seeds = check_pairable(own, base)
    entry = strategy_verdict({s: own[1][s]["aualc"] for s in seeds},
                             {s: base[1][s]["aualc"] for s in seeds})
    print(f"{own[0]} - {base[0]}, AuALC per seed:")
    for s in seeds:
        a, b = own[1][s], base[1][s]
        print(f"  seed {s}: {a['aualc'] - b['aualc']:+.4f}   final mIoU {a['final_miou']:.3f} "
              f"vs {b['final_miou']:.3f}")
    print(json.dumps(entry, indent=2))
    return entry


if __name__ == "__main__":
    main()
