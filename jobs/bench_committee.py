"""Committees (issue 16), measured side by side in one run:

1. wall time of one round's training: one model vs a committee of K = 4 one after the other
   vs the same committee in parallel (one Ray task per member, ``cpus_per_member`` each);
2. scoring cost of a committee of 4 (K plain passes, members on the MC axis) vs MC-dropout
   T = 10 on one model (logits dropout, the trunk once), same frames, same statistics.

Every member reserves ``--cpus-per-member`` CPUs and runs one torch thread; the single model
and the sequential committee run in this process with one torch thread too, so the parallel
gain is what the cluster's cores give. Scoring: median of ``--repeats`` timed passes after one
warm-up, one torch and numba thread.

    python jobs/bench_committee.py --quick    # < 3 minutes on 2 cores
    python jobs/bench_committee.py            # 96x128 frames, 3 epochs
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numba
import torch

from rayal.config import RayalConfig, config_from_dict
from rayal.data.splits import labelled_split
from rayal.models import model_from_config
from rayal.pipeline.loop.committee_job import train_committee
from rayal.scoring import CommitteeScorer, MCDropoutScorer
from rayal.train.dataset import LabelSpec
from rayal.train.trainer import fit


def bench_config(quick: bool, out: str, members: int, parallel: bool, cpus: float) -> RayalConfig:
    h, w, frames, epochs = (48, 64, 12, 2) if quick else (96, 128, 24, 3)
    return config_from_dict({
        "name": "bench-committee", "seed": 0, "device": "cpu", "output_dir": out,
        "data": {"num_classes": 8, "synthetic": {"num_frames": frames, "height": h, "width": w,
                                                 "eval_frames": 2}},
        "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3,
                  "decoder_channels": [32, 16, 16]},
        "scoring": {"mode": "committee" if members > 1 else "mc_dropout", "mc_samples": 0,
                    "measures": ["entropy"]},
        "train": {"epochs": epochs, "batch_size": 4, "patience": None, "val_limit": 2,
                  "torch_threads": 1, "warm_start": False,
                  "committee": {"members": members, "parallel": parallel,
                                "cpus_per_member": cpus}},
    })


def time_training(args, tmp: str) -> dict:
    import ray

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    out = {}
    single = bench_config(args.quick, os.path.join(tmp, "one"), 1, False, args.cpus_per_member)
    specs = [LabelSpec(f) for f in labelled_split(single.data, "train").frame_ids]
    torch.set_num_threads(1)
    tic = time.perf_counter()
    fit(single, specs, os.path.join(tmp, "one", "ck"), run_name="one")
    out["one model"] = time.perf_counter() - tic
    for name, parallel in (("K=4 one after the other", False), ("K=4 in parallel (Ray tasks)", True)):
        cfg = bench_config(args.quick, os.path.join(tmp, name[:8].replace(" ", "_") + str(parallel)),
                           4, parallel, args.cpus_per_member)
        tic = time.perf_counter()
        train_committee(cfg, specs, os.path.join(cfg.output_dir, "train"), run_name=f"k4-{parallel}")
        out[name] = time.perf_counter() - tic
    ray.shutdown()
    return out


def time_scoring(args) -> dict:
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    cfg = bench_config(args.quick, "unused", 1, False, 0.5)
    h, w = (48, 64) if args.quick else (96, 128)
    images = torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    ids = [f"f{i}" for i in range(args.batch)]
    models = [model_from_config(cfg.model, 8, seed=s).eval() for s in range(4)]
    kw = dict(point_estimate="deterministic")
    scorers = {"one model, no MC (1 pass)": MCDropoutScorer(models[0], mc_samples=0, **kw),
               "MC-dropout T=10 on one model": MCDropoutScorer(models[0], mc_samples=10, **kw),
               "committee K=4 (4 passes)": CommitteeScorer(models, mc_samples=0, **kw)}
    out = {}
    for name, scorer in scorers.items():
        scorer(images, ids)   # warm-up (numba compile, allocator)
        times = []
        for _ in range(args.repeats):
            tic = time.perf_counter()
            scorer(images, ids)
            times.append(time.perf_counter() - tic)
        out[name] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=4, help="CPUs of the local Ray")
    parser.add_argument("--cpus-per-member", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, local Ray num_cpus={args.num_cpus}, "
          f"cpus_per_member={args.cpus_per_member}, quick={args.quick}")
    with tempfile.TemporaryDirectory() as tmp:
        train = time_training(args, tmp)
    base = train["one model"]
    print("\nround training wall time")
    for name, seconds in train.items():
        print(f"  {name:<32}{seconds:8.1f} s   {seconds / base:5.2f}x one model")
    seq, par = train["K=4 one after the other"], train["K=4 in parallel (Ray tasks)"]
    print(f"  parallel / one after the other: {par / seq:.2f}")
    score = time_scoring(args)
    base = score["MC-dropout T=10 on one model"]
    print(f"\nscoring a batch of {args.batch} frames (median of {args.repeats})")
    for name, seconds in score.items():
        print(f"  {name:<32}{seconds * 1000:8.1f} ms  {seconds / base:5.2f}x MC-dropout T=10")


if __name__ == "__main__":
    main()
