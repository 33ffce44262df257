"""Training throughput through Ray Train (1 real worker) vs a bare PyTorch loop, side by side.

Both run :func:`rayal.train.loop.train_loop` on the same labelled synthetic frames, model,
batch size and torch threads; throughput is the median per-epoch images/s over the epochs
after the first two (start-up and the per-process kernel warm-up excluded). The bare loop runs
before and after Ray Train and the two are averaged, so load drifts hit both sides alike.
Ray Train's start-up (worker group, process group, imports) is printed separately.

    python jobs/bench_training.py --quick     # < 1 minute
    python jobs/bench_training.py             # 176x240 frames, 8 epochs (~6 minutes)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rayal.config import config_from_dict
from rayal.data.splits import labelled_split
from rayal.pipeline.runtime import init_ray
from rayal.train.dataset import LabelSpec
from rayal.train.loop import train_loop
from rayal.train.trainer import build_training_set, fit


def bench_config(quick: bool, threads: int, out: str):
    h, w, frames, epochs = (48, 64, 12, 4) if quick else (176, 240, 32, 8)
    return config_from_dict({
        "name": "bench-train", "seed": 0, "device": "cpu", "output_dir": out,
        "data": {"num_classes": 8, "synthetic": {"num_frames": frames, "height": h, "width": w,
                                                 "eval_frames": 2}},
        "model": {"arch": "Unet", "encoder": "mobilenet_v2"},
        "train": {"epochs": epochs, "batch_size": 4, "patience": None, "val_limit": 2,
                  # the worker reserves as many CPUs as it runs threads: Ray sets
                  # OMP_NUM_THREADS from the reservation, and 1 slows oneDNN down
                  "torch_threads": threads, "cpus_per_worker": float(threads)},
        "ray": {"num_cpus": threads + 1},
    })


# The first few optimizer steps of a fresh process take seconds each (oneDNN creates its
# convolution primitives lazily), so the first two epochs count as start-up on both sides.
WARMUP_EPOCHS = 2


def steady_images_per_second(history: list[dict], batch_size: int) -> float:
    rows = history[WARMUP_EPOCHS:]
    return float(statistics.median(r["steps"] * batch_size / r["train_seconds"] for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        config = bench_config(args.quick, args.threads, tmp)
        specs = [LabelSpec(f) for f in labelled_split(config.data, "train").frame_ids]
        val = labelled_split(config.data, "val").head(2)
        bs = config.train.batch_size

        def bare_run(name: str) -> tuple[dict, float]:
            tic = time.perf_counter()
            state = train_loop(config, build_training_set(config, specs), val, Path(tmp) / name,
                               torch.device("cpu"))
            return state, time.perf_counter() - tic

        bare, bare_wall = bare_run("bare1")
        init_ray(config.ray)
        tic = time.perf_counter()
        ray_state = fit(config.model_copy(update={"train": config.train.model_copy(
            update={"num_workers": 1})}), specs, Path(tmp) / "ray", run_name="bench")
        ray_wall = time.perf_counter() - tic
        bare2, _ = bare_run("bare2")

    bare_ips = (steady_images_per_second(bare["history"], bs)
                + steady_images_per_second(bare2["history"], bs)) / 2
    ray_ips = steady_images_per_second(ray_state["history"], bs)
    busy = lambda h: sum(r["train_seconds"] for r in h)  # noqa: E731
    startup = ray_wall - bare_wall - (busy(ray_state["history"]) - busy(bare["history"]))
    h, w = config.data.synthetic.height, config.data.synthetic.width
    print(f"\ntraining: Unet/mobilenet_v2, {len(specs)} frames {h}x{w}, batch {bs}, "
          f"{config.train.epochs} epochs, {args.threads} torch threads")
    print(f"{'loop':<24}{'images/s':>10}{'wall s':>9}")
    print(f"{'bare PyTorch':<24}{bare_ips:>10.2f}{bare_wall:>9.1f}")
    print(f"{'Ray Train (1 worker)':<24}{ray_ips:>10.2f}{ray_wall:>9.1f}")
    print(f"ray_train_startup_seconds: {startup:.1f}")
    print(f"ray_train_vs_bare_ratio: {ray_ips / bare_ips:.3f}")


if __name__ == "__main__":
    main()
