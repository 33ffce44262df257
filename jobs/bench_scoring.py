"""Scoring benchmarks, measured side by side in one run (ratios, not absolute targets).

1. MC-dropout cost: T-sample MC scoring / one deterministic forward of the same
   model on the same batch (target <= 1.5x), beside the naive T full passes.
2. ``rayal score`` end to end through Ray Data vs a bare PyTorch loop over the
   same frames (PNG files), model, scorer and threads: throughput ratio (target >= 0.85).
3. Scaling (full mode only): frames/s and peak memory at 1k / 10k / 100k synthetic
   frames streamed from a parquet manifest.
4. Superpixel maps through ``scoring.region_cache`` vs computed: per-frame CPU time of
   ``unit_region_map`` on the second visit of each frame (a later round) / computing SLIC
   (lower is better).
5. The driver in the data path: CPU seconds the driver spends in ``ScoreSink.write`` per frame
   (``time.process_time``, all its threads: Arrow splitting, parquet encoding, zstd) over a
   stream of real scored batches (default scoring: 7 measures, patch + superpixel regions, top
   16, frame embeddings), replayed under new frame ids; ``1000 / ms`` is the frames/s at which
   one driver core saturates.

6. ``--million``: 1,000,000 synthetic frames at 16x16 through a real ``rayal score`` process:
   frames/s, peak RSS of the driver and of the Ray workers, RSS at 10 / 50 / 100 % of the job
   (see ``jobs/bench_scoring_scale.py``; ``--frames`` / ``--size`` change the job).
7. ``--gpu``: frames/s per GPU of ``rayal score`` on CUDA and the MC-dropout cost ratio on CUDA
   (refuses without CUDA).

    python jobs/bench_scoring.py --quick      # < 1 minute
    python jobs/bench_scoring.py              # 1 - 5, ~15 minutes on 2 cores
    python jobs/bench_scoring.py --million    # 6 only
    python jobs/bench_scoring.py --gpu        # 7 only, on a CUDA machine
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from rayal.config import ModelConfig, config_from_dict
from rayal.data import SyntheticScenes, synthetic_uri, write_manifest
from rayal.models import build_model
from rayal.pipeline.score.batch import FrameBatchScorer
from rayal.pipeline.score.frames import decode_frames, frame_source
from rayal.pipeline.score.score_job import run_scoring
from rayal.pipeline.runtime import init_ray
from rayal.pipeline.score.sink import ScoreSink
from rayal.scoring import MCDropoutScorer
from rayal.scoring import measures as M

from bench_scoring_scale import bench_gpu, bench_million, print_million, require_cuda


def _interleaved_medians(fns: dict, repeats: int, cold: tuple = ()) -> dict[str, float]:
    """Median seconds of each function, timed round-robin so load drifts hit all alike.
    Functions named in ``cold`` need no warm-up of their own (they reuse warmed code)."""
    for name, fn in fns.items():
        if name not in cold:
            fn()  # warm-up (numba compile, allocator)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_mc_cost(batch: int, height: int, width: int, samples: int, repeats: int,
                  device: str = "cpu") -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="Unet", encoder="mobilenet_v2"), num_classes=12).eval()
    model = model.to(device)
    images = torch.rand(batch, 3, height, width, device=device)
    ids = [f"f{i}" for i in range(batch)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    @torch.no_grad()
    def one_pass():
        out = model(images)
        sync()
        return out

    generator = torch.Generator(device=device).manual_seed(0)

    @torch.no_grad()
    def naive():  # what peers do: T full passes with nn.Dropout-style masks, then the statistics
        probs = []
        for _ in range(samples):
            logits = model(images)
            keep = torch.rand(logits.shape, generator=generator, device=device) >= 0.2
            probs.append(torch.softmax(logits * keep / 0.8, 1))
        probs = torch.stack(probs)
        point = probs.mean(0)
        out = (M.entropy(point), M.bald(probs), M.vote_entropy(probs), M.variance(probs),
               M.area_disagreement(probs))
        sync()
        return out

    logits_scorer = MCDropoutScorer(model, mc_samples=samples, position="logits")
    head_scorer = MCDropoutScorer(model, mc_samples=samples, position="head_input")

    def synced(scorer):
        def run():
            out = scorer(images, ids)
            sync()
            return out
        return run

    out = _interleaved_medians({
        "one_pass_s": one_pass,
        "mc_logits_s": synced(logits_scorer),
        "mc_head_input_s": synced(head_scorer),
        "naive_s": naive,
    }, repeats, cold=("naive_s",))
    base = out["one_pass_s"]
    out["mc_cost_ratio"] = out["mc_logits_s"] / base
    out["head_input_ratio"] = out["mc_head_input_s"] / base
    out["naive_ratio"] = out["naive_s"] / base
    return out


def _score_config(root: str, out: str, frames: int, height: int, width: int, batch: int,
                  extra: dict | None = None) -> dict:
    cfg = {
        "seed": 0, "device": "cpu", "output_dir": out,
        "data": {"source": "folder", "root": root, "masks": None, "num_classes": 8,
                 "limit": frames},
        "scoring": {"measures": ["entropy", "margin", "bald", "area_disagreement"],
                    "mc_samples": 10, "units": ["patch"], "batch_size": batch},
        "ray": {"num_cpus": 4, "actors": 1, "cpus_per_actor": 1.0, "torch_threads": 2,
                "object_store_memory": 300 * 2**20},
    }
    for section, values in (extra or {}).items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


def bare_loop(config) -> float:
    """Same decode, scorer and sink in a plain Python loop: frames per second after the
    first batch (model load and kernel compile excluded, as for the Ray run)."""
    source = frame_source(config.data)
    scorer = FrameBatchScorer(config, torch_threads=config.ray.torch_threads)
    sink = ScoreSink(config.output_dir + "-bare", with_embeddings=False)
    table = source.table
    step = config.scoring.batch_size
    start = None
    for offset in range(0, table.num_rows, step):
        rows = table.slice(offset, step)
        batch = {"frame_id": np.asarray(rows["frame_id"]), "uri": np.asarray(rows["uri"])}
        sink.write(scorer(decode_frames(batch, config.data, config.scoring)))
        start = start or time.perf_counter()
    sink.close()
    return (table.num_rows - step) / (time.perf_counter() - start)


def bench_ray_vs_bare(frames: int, height: int, width: int, batch: int, workdir: Path) -> dict:
    root = SyntheticScenes(frames, height=height, width=width, seed=1).write_folder(workdir / "pool")
    config = config_from_dict(_score_config(str(root), str(workdir / "ray"), frames, height,
                                            width, batch))
    bare = bare_loop(config)
    init_ray(config.ray)  # cluster start-up is a one-off per cluster, not per job
    summary = run_scoring(config, progress=False)
    ray_fps = summary.steady_frames_per_second
    return {"bare_fps": bare, "ray_fps": ray_fps, "ray_startup_s": summary.startup_seconds,
            "ray_vs_bare_ratio": ray_fps / bare}


class PeakMemory:
    """Peak summed RSS of this process and its descendants (Ray workers), sampled every 0.2 s."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me] + me.children(recursive=True):
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench_scaling(sizes: list[int], workdir: Path) -> list[dict]:
    rows = []
    for n in sizes:
        manifest = workdir / f"manifest_{n}.parquet"
        write_manifest({"frame_id": [f"syn_{i:07d}" for i in range(n)],
                        "uri": [synthetic_uri(3, i) for i in range(n)]}, str(manifest))
        cfg = _score_config("", str(workdir / f"scale_{n}"), n, 32, 32, 64, extra={
            "data": {"source": "manifest", "manifest": str(manifest), "root": None, "limit": None,
                     "synthetic": {"height": 32, "width": 32}},
            "model": {"arch": "Unet", "encoder": "resnet18", "decoder_channels": [64, 32, 16, 16, 8]},
        })
        config = config_from_dict(cfg)
        init_ray(config.ray)
        with PeakMemory() as mem:
            summary = run_scoring(config, progress=True)
        rows.append({"frames": n, "seconds": summary.seconds, "fps": summary.frames_per_second,
                     "peak_mb": mem.peak / 2**20,
                     "region_bytes_per_frame": summary.region_bytes_per_frame})
    return rows


def bench_superpixel_cache(frames: int, height: int, width: int, workdir: Path) -> dict:
    """Per-frame CPU seconds of superpixel maps: computed vs read back from the region cache."""
    from rayal.config.sections import ScoringConfig
    from rayal.data import unit_region_map

    scenes = SyntheticScenes(frames, height=height, width=width, seed=0)
    images = [scenes[i][0] for i in range(frames)]
    plain = ScoringConfig(superpixel={"n_segments": 150})
    cached = ScoringConfig(superpixel={"n_segments": 150}, region_cache=str(workdir / "region_cache"))
    for image in images:                      # first visit: computed and stored
        unit_region_map(image, "superpixel", cached)

    def cpu(scoring) -> float:
        start = time.process_time()
        for image in images:
            unit_region_map(image, "superpixel", scoring)
        return (time.process_time() - start) / frames

    times = {"uncached": [], "cached": []}
    for _ in range(3):                        # interleaved: load drifts hit both alike
        times["uncached"].append(cpu(plain))
        times["cached"].append(cpu(cached))
    un, ca = statistics.median(times["uncached"]), statistics.median(times["cached"])
    return {"uncached_ms": un * 1e3, "cached_ms": ca * 1e3, "superpixel_cached_vs_uncached": ca / un}


def bench_driver_sink(frames: int, height: int, width: int, batch: int, workdir: Path) -> dict:
    """Driver CPU per frame in ScoreSink.write (see item 5 of the module docstring)."""
    import pyarrow as pa

    config = config_from_dict({
        "seed": 0, "device": "cpu", "output_dir": str(workdir / "sink"),
        "data": {"source": "synthetic", "num_classes": 12,
                 "synthetic": {"num_frames": 2 * batch, "height": height, "width": width}},
        "model": {"arch": "Unet", "encoder": "mobilenet_v2"},
        "scoring": {"units": ["patch", "superpixel"], "embeddings": ["frame"], "mc_samples": 2,
                    "batch_size": batch}})   # T changes no column: 2 keeps the set-up short
    scorer = FrameBatchScorer(config, torch_threads=2)
    table = frame_source(config.data).table
    scored = []
    for offset in range(0, table.num_rows, batch):
        rows = table.slice(offset, batch)
        decoded = decode_frames({"frame_id": np.asarray(rows["frame_id"]), "uri": np.asarray(rows["uri"])},
                                config.data, config.scoring)
        scored.append(scorer(decoded))
    sink = ScoreSink(config.output_dir, with_embeddings=True)
    cpu, written = 0.0, 0
    while written < frames:
        template = scored[(written // batch) % len(scored)]
        ids = pa.array([f"f{written + i:09d}" for i in range(template.num_rows)])
        out = template.set_column(0, "frame_id", ids)
        start = time.process_time()
        sink.write(out)
        cpu += time.process_time() - start
        written += out.num_rows
    start = time.process_time()
    sink.close()
    cpu += time.process_time() - start
    ms = cpu / written * 1e3
    return {"driver_cpu_ms_per_frame": ms, "driver_saturates_fps": 1e3 / ms, "frames": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--million", action="store_true",
                        help="only the end-to-end scale run (item 6 of the docstring)")
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames of --million")
    parser.add_argument("--size", type=int, default=16, help="frame side of --million (pixels)")
    parser.add_argument("--batch", type=int, default=512, help="scoring batch of --million")
    parser.add_argument("--gpu", action="store_true", help="only the CUDA measures (item 7)")
    args = parser.parse_args()
    if args.million + args.gpu + args.quick > 1:
        parser.error("give at most one of --quick, --million, --gpu")
    if args.million:
        if args.frames < 10 or args.size < 8 or args.size % 8:
            parser.error("--frames must be >= 10 and --size a multiple of 8 (>= 8)")
        with tempfile.TemporaryDirectory() as tmp:
            print_million(bench_million(args.frames, args.size, args.batch, Path(tmp)))
        return
    if args.gpu:
        gpu_main()
        return
    torch.set_num_threads(2)
    if args.quick:
        mc = bench_mc_cost(batch=4, height=176, width=240, samples=10, repeats=2)
    else:
        mc = bench_mc_cost(batch=8, height=176, width=240, samples=10, repeats=5)
    print(f"MC-dropout T=10, Unet/mobilenet_v2, 176x240, CPU x{torch.get_num_threads()} threads")
    print(f"  one deterministic pass     {mc['one_pass_s'] * 1e3:8.1f} ms   1.00x")
    print(f"  rayal MC (logits dropout)  {mc['mc_logits_s'] * 1e3:8.1f} ms   {mc['mc_cost_ratio']:.2f}x")
    print(f"  rayal MC (head_input)      {mc['mc_head_input_s'] * 1e3:8.1f} ms   {mc['head_input_ratio']:.2f}x")
    print(f"  naive T full passes        {mc['naive_s'] * 1e3:8.1f} ms   {mc['naive_ratio']:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        frames = 128 if args.quick else 768
        rb = bench_ray_vs_bare(frames, 96, 128, 16, Path(tmp))
        print(f"rayal score vs bare loop, {frames} PNG frames 96x128, T=10")
        print(f"  bare PyTorch loop  {rb['bare_fps']:7.1f} frames/s")
        print(f"  rayal score (Ray)  {rb['ray_fps']:7.1f} frames/s "
              f"(after {rb['ray_startup_s']:.1f} s start-up: actor, model, first batch)")
        if not args.quick:
            print("scaling (32x32 synthetic frames from a parquet manifest)")
            print(f"  {'frames':>8} {'seconds':>8} {'frames/s':>9} {'peak MB':>8} {'region B/frame':>15}")
            for row in bench_scaling([1_000, 10_000, 100_000], Path(tmp)):
                print(f"  {row['frames']:>8} {row['seconds']:>8.1f} {row['fps']:>9.1f} "
                      f"{row['peak_mb']:>8.0f} {row['region_bytes_per_frame']:>15.0f}")
        sp = bench_superpixel_cache(8 if args.quick else 32, 360, 480, Path(tmp))
        print("superpixel maps (SLIC, 150 segments, 360x480), CPU per frame")
        print(f"  computed            {sp['uncached_ms']:8.1f} ms")
        print(f"  from region_cache   {sp['cached_ms']:8.1f} ms")
        drv = bench_driver_sink(800 if args.quick else 8000, 360, 480, 8, Path(tmp))
        print(f"driver ScoreSink.write, {drv['frames']} frames 360x480 (default scoring, "
              "patch + superpixel, frame embeddings)")
        print(f"  driver CPU          {drv['driver_cpu_ms_per_frame']:8.3f} ms/frame "
              f"(one core saturates at {drv['driver_saturates_fps']:.0f} frames/s)")
    print(f"mc_naive_ratio: {mc['naive_ratio']:.3f}")
    print(f"mc_cost_ratio: {mc['mc_cost_ratio']:.3f}")
    print(f"ray_vs_bare_ratio: {rb['ray_vs_bare_ratio']:.3f}")
    print(f"superpixel_cached_vs_uncached: {sp['superpixel_cached_vs_uncached']:.3f}")
    print(f"driver_cpu_ms_per_frame: {drv['driver_cpu_ms_per_frame']:.3f}")
    print(f"driver_saturates_frames_per_second: {drv['driver_saturates_fps']:.0f}")


def gpu_main() -> None:
    require_cuda()
    mc = bench_mc_cost(batch=16, height=352, width=480, samples=10, repeats=10, device="cuda")
    print(f"MC-dropout T=10, Unet/mobilenet_v2, 352x480, batch 16, {torch.cuda.get_device_name(0)}")
    print(f"  one deterministic pass     {mc['one_pass_s'] * 1e3:8.2f} ms   1.00x")
    print(f"  rayal MC (logits dropout)  {mc['mc_logits_s'] * 1e3:8.2f} ms   {mc['mc_cost_ratio']:.2f}x")
    print(f"  naive T full passes        {mc['naive_s'] * 1e3:8.2f} ms   {mc['naive_ratio']:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        g = bench_gpu(Path(tmp))
    print(f"rayal score on CUDA, {g['frames']} synthetic frames 360x480, T=10, patch units, "
          f"{g['gpus']} x {g['name']}")
    print(f"  {g['fps']:.1f} frames/s after start-up, {g['fps_per_gpu']:.1f} per GPU")
    print(f"gpu_mc_cost_ratio: {mc['mc_cost_ratio']:.3f}")
    print(f"gpu_frames_per_second_per_gpu: {g['fps_per_gpu']:.1f}")


if __name__ == "__main__":
    main()
