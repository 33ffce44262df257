"""Copy a finished ``rayal compare`` directory's results into ``docs/benchmarks/<suite>/``.

    rayal compare configs/camvid_image.yaml                 # runs (resumable), writes the results
    python jobs/publish_suite.py runs/camvid_image docs/benchmarks/camvid_image

Copies ``comparison.parquet`` (one row per strategy x seed x round), ``verdicts.json`` (paired
AuALC difference to random with its bootstrap 95 % interval and verdict, per strategy),
``comparison.md`` (the table), ``comparison.png`` (learning curves) and, when the comparison
wrote one, ``environments.json`` (the numerical environment of each run), adds
``suite_seconds.json`` (the summed wall time of the runs, the reference's training time) and
prints the table. Nothing is recomputed: the figures are the comparison's own.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

FILES = ("comparison.parquet", "verdicts.json", "comparison.md", "comparison.png")
OPTIONAL = ("environments.json",)   # written by rayal compare since runs record it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the compare output_dir")
    parser.add_argument("dest", type=Path, help="docs/benchmarks/<suite>")
    args = parser.parse_args()
    missing = [f for f in FILES if not (args.run_dir / f).is_file()]
    if missing:
        raise SystemExit(f"publish_suite: error: {args.run_dir} has no {missing[0]} (run rayal compare first)")
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in FILES + tuple(f for f in OPTIONAL if (args.run_dir / f).is_file()):
        shutil.copyfile(args.run_dir / name, args.dest / name)
    rows = pq.read_table(args.run_dir / "comparison.parquet", columns=["run_dir", "run_seconds"]).to_pylist()
    runs = {r["run_dir"]: r["run_seconds"] for r in rows}   # one per run (and training draw)
    reference = args.run_dir / "full" / "history.parquet"
    ref_seconds = (sum(pq.read_table(reference, columns=["train_seconds"]).column(0).to_pylist())
                   if reference.is_file() else None)
    (args.dest / "suite_seconds.json").write_text(json.dumps(
        {"runs": len(runs), "runs_seconds": sum(runs.values()), "reference_train_seconds": ref_seconds}, indent=2))
    print((args.dest / "comparison.md").read_text())
    print(f"{len(runs)} runs, {sum(runs.values()) / 60:.1f} min in all (+ reference "
          f"{(ref_seconds or 0) / 60:.1f} min) -> {args.dest}")


if __name__ == "__main__":
    main()
