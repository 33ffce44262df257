"""Seconds per active-learning round, before and after the faster loop, side by side in one run.

Before: every round scores the pool with a fresh ``rayal score`` job (a new Ray Data actor
pool: worker processes, model build, planning) and, at superpixel level, recomputes SLIC for
every frame (``loop.persistent_scoring: false``, no ``scoring.region_cache``). After: the
run's scoring actors live for the whole run and superpixel maps are computed once per frame
(the defaults). Each side is one ``rayal run`` of the same CamVid suite config with training
cut to a single step per round (training is not what changed), so the difference is the
score / annotate / select phases; the figure is the mean seconds of rounds >= 1 (round 0
pays one-off start-up on both sides).

    python jobs/bench_loop.py                 # image and superpixel suites, 3 rounds each
    python jobs/bench_loop.py --quick         # image suite, 2 rounds

Prints ``<suite> seconds_per_round before/after`` and ``loop_speedup_<suite>: <before/after>``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from rayal.config import load_config
from rayal.pipeline.loop.experiment import run_experiment

REPO = Path(__file__).resolve().parents[1]
PHASES = ("seconds_score", "seconds_select", "seconds_annotate", "seconds_train", "seconds_eval")


def one_side(config_path: Path, workdir: Path, rounds: int, fast: bool) -> dict:
    """Mean seconds per phase of rounds >= 1 of one short run (before: fast=False)."""
    import rayal.pipeline.loop.experiment as experiment

    config = load_config(config_path, [
        f"output_dir={workdir}", f"loop.rounds={rounds}", "train.epochs=1", "train.steps_per_epoch=1",
        "train.val_limit=4", "loop.full_miou=0.5", "loop.plot_frames=0",
        f"loop.persistent_scoring={'true' if fast else 'false'}"])
    default_cache = experiment.with_region_cache
    if not fast:
        experiment.with_region_cache = lambda c: c   # the loop before: no region-map cache
    try:
        run_experiment(config, progress=False)
    finally:
        experiment.with_region_cache = default_cache
    rows = pq.read_table(workdir / "rounds.parquet").to_pylist()[1:]
    return {p: sum(r[p] for r in rows) / len(rows) for p in PHASES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="image suite only, 2 rounds")
    args = parser.parse_args()
    suites = ["camvid_image"] if args.quick else ["camvid_image", "camvid_superpixel"]
    rounds = 2 if args.quick else 3
    results = {}
    for suite in suites:
        path = REPO / "configs" / f"{suite}.yaml"
        with tempfile.TemporaryDirectory() as tmp:
            before = one_side(path, Path(tmp) / "before", rounds, fast=False)
            after = one_side(path, Path(tmp) / "after", rounds, fast=True)
        results[suite] = (before, after)
        print(f"{suite}: mean seconds per round (rounds 1..{rounds}), training cut to one step")
        print(f"  {'phase':<18} {'before':>8} {'after':>8}")
        for phase in PHASES:
            print(f"  {phase:<18} {before[phase]:>8.1f} {after[phase]:>8.1f}")
        print(f"  {'total':<18} {sum(before.values()):>8.1f} {sum(after.values()):>8.1f}")
    for suite, (before, after) in results.items():
        print(f"loop_speedup_{suite}: {sum(before.values()) / sum(after.values()):.2f}")


if __name__ == "__main__":
    main()
