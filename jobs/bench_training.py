"""Training throughput through Ray Train (1 real worker) vs a bare PyTorch loop, side by side.

Both run :func:`rayal.train.loop.train_loop` on the same labelled synthetic frames, model,
batch size and torch threads; throughput is images/s over the epochs after the first
(start-up, first-epoch allocation and warm-up excluded). Ray Train's start-up (worker
group, process group, imports) is printed separately.

    python jobs/bench_training.py --quick     # < 1 minute
    python jobs/bench_training.py             # larger frames, more epochs (~4 minutes)
"""
from __future__ import annotations

import argparse
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
    h, w, frames, epochs = (64, 96, 16, 4) if quick else (176, 240, 32, 5)
    return config_from_dict({
        "name": "bench-train", "seed": 0, "device": "cpu", "output_dir": out,
        "data": {"num_classes": 8, "synthetic": {"num_frames": frames, "height": h, "width": w,
                                                 "eval_frames": 2}},
        "model": {"arch": "Unet", "encoder": "mobilenet_v2"},
        "train": {"epochs": epochs, "batch_size": 4, "patience": None, "val_limit": 2,
                  "torch_threads": threads, "cpus_per_worker": 1.0},
        "ray": {"num_cpus": 2},
    })


def steady_images_per_second(history: list[dict], batch_size: int) -> float:
    rows = history[1:]   # epoch 0: warm-up
    return sum(r["steps"] * batch_size for r in rows) / sum(r["train_seconds"] for r in rows)


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

        tic = time.perf_counter()
        bare = train_loop(config, build_training_set(config, specs), val, Path(tmp) / "bare",
                          torch.device("cpu"))
        bare_wall = time.perf_counter() - tic
        init_ray(config.ray)
        tic = time.perf_counter()
        ray_state = fit(config.model_copy(update={"train": config.train.model_copy(
            update={"num_workers": 1})}), specs, Path(tmp) / "ray", run_name="bench")
        ray_wall = time.perf_counter() - tic

    bare_ips = steady_images_per_second(bare["history"], bs)
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
