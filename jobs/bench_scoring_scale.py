"""The fleet-scale parts of ``jobs/bench_scoring.py`` (``--million``, ``--gpu``).

``--million``: a real ``rayal score`` subprocess (its own local Ray: Ray Data read tasks over a
parquet manifest, decode tasks, the scoring actor pool, the driver sink committing part sets)
over an N-frame synthetic manifest (default 1,000,000) at a tiny frame size. While it runs, the
RSS of the driver (the ``rayal score`` process) and of every Ray worker process (``ray::*``
command lines among its descendants) is sampled every 0.5 s, and the job's progress is read
from its commit markers; the report gives frames/s, the peak RSS of the driver and of the
largest worker, and both RSS at 10 %, 50 % and 100 % of the frames (flat memory: the driver
holds neither the manifest nor the scores).

``--gpu``: frames/s per GPU of ``rayal score`` on CUDA (one actor per GPU) and the MC-dropout
cost ratio on CUDA (the torch path); refuses without CUDA.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from rayal.data import synthetic_uri

RAYAL = Path(sys.executable).parent / "rayal"
MANIFEST_ROW_GROUP = 65_536
NODE_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")   # per node, not job workers


def write_synthetic_manifest(path: Path, frames: int, seed: int = 3) -> None:
    """``frame_id, uri`` of ``frames`` synthetic scenes, written one row group at a time (never
    held whole)."""
    schema = pa.schema([("frame_id", pa.string()), ("uri", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, frames, MANIFEST_ROW_GROUP):
            idx = range(start, min(start + MANIFEST_ROW_GROUP, frames))
            writer.write_table(pa.table({"frame_id": [f"syn_{i:07d}" for i in idx],
                                         "uri": [synthetic_uri(seed, i) for i in idx]}, schema))


def million_config(manifest: Path, out: Path, size: int, batch: int, commit_frames: int) -> dict:
    """The smallest real scoring job: one measure, no MC, a 2x2 patch grid, a 3-level Unet."""
    return {
        "name": "bench-million", "seed": 0, "device": "cpu", "output_dir": str(out),
        "data": {"source": "manifest", "manifest": str(manifest), "num_classes": 8,
                 "synthetic": {"height": size, "width": size}},
        "model": {"arch": "Unet", "encoder": "mobilenet_v2", "encoder_depth": 3,
                  "decoder_channels": [16, 8, 8]},
        "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["patch"], "grid": [2, 2],
                    "aggregate": ["mean"], "top_k_regions": None, "batch_size": batch,
                    "commit_frames": commit_frames, "commit_seconds": 1e9},
        "ray": {"num_cpus": 2, "actors": 1, "cpus_per_actor": 0.5, "decode_cpus": 0.5,
                "torch_threads": 1, "object_store_memory": 200 * 2**20},
    }


class RssSampler:
    """Every ``interval`` s: RSS of ``pid`` (the driver), of each Ray worker process among its
    descendants (``ray::`` command lines but the node agents) and the job's committed frames (its commit markers)."""

    def __init__(self, pid: int, commits: Path, interval: float = 0.5):
        self.pid, self.commits, self.interval = pid, commits, interval
        self.samples: list[dict] = []   # {t, frames, driver, workers_sum, worker_max}
        self._seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _frames(self) -> int:
        if self.commits.is_dir():
            for entry in os.scandir(self.commits):
                if entry.name.endswith(".json") and entry.name not in self._seen:
                    try:
                        m = json.loads(Path(entry.path).read_text())
                    except ValueError:   # written by a rename: never partial, but be safe
                        continue
                    self._seen[entry.name] = m["frames"] + m["quarantined"]
        return sum(self._seen.values())

    def _workers(self, driver: psutil.Process) -> list[int]:
        rss = []
        for proc in driver.children(recursive=True):
            try:
                name = " ".join(proc.cmdline())
                if name.startswith("ray::") and not name.startswith(NODE_AGENTS):
                    rss.append(proc.memory_info().rss)
            except psutil.Error:
                pass
        return rss

    def _run(self):
        start = time.monotonic()
        try:
            driver = psutil.Process(self.pid)
            while not self._stop.is_set():
                own = driver.memory_info().rss
                workers = self._workers(driver)
                self.samples.append({"t": time.monotonic() - start, "frames": self._frames(),
                                     "driver": own, "workers_sum": sum(workers),
                                     "worker_max": max(workers, default=0)})
                self._stop.wait(self.interval)
        except psutil.NoSuchProcess:
            pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def at(self, frames: int) -> dict:
        """The first sample at or past ``frames`` committed frames (the last sample if none)."""
        for s in self.samples:
            if s["frames"] >= frames:
                return s
        return self.samples[-1]


def bench_million(frames: int, size: int, batch: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / f"manifest_{frames}.parquet"
    write_synthetic_manifest(manifest, frames)
    out = workdir / "million"
    cfg_path = workdir / "million.yaml"
    commit = max(batch, frames // 50)   # 50 part sets: the progress read from the markers
    cfg_path.write_text(yaml.safe_dump(million_config(manifest, out, size, batch, commit)))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    log = workdir / "million.log"
    start = time.perf_counter()
    with open(log, "w") as stream:
        proc = subprocess.Popen([str(RAYAL), "score", str(cfg_path), "--no-progress"], env=env,
                                stdout=stream, stderr=subprocess.STDOUT)
        with RssSampler(proc.pid, out / "_commits") as rss:
            code = proc.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"rayal score exited with {code}; the end of its output:\n{tail}")
    summary = json.loads((out / "score_summary.json").read_text())
    if summary["outputs"]["frames"]["rows"] != frames:
        raise RuntimeError(f"frames table holds {summary['outputs']['frames']['rows']} rows, "
                           f"expected {frames}")
    marks = {pct: rss.at(frames * pct // 100) for pct in (10, 50, 100)}
    mb = 2**20
    return {
        "frames": frames, "size": size, "batch": batch, "process_seconds": seconds,
        "job_seconds": summary["seconds"], "fps": summary["frames_per_second"],
        "steady_fps": summary["steady_frames_per_second"],
        "driver_peak_mb": max(s["driver"] for s in rss.samples) / mb,
        "worker_peak_mb": max(s["worker_max"] for s in rss.samples) / mb,
        "workers_sum_peak_mb": max(s["workers_sum"] for s in rss.samples) / mb,
        "driver_mb_at": {p: s["driver"] / mb for p, s in marks.items()},
        "workers_sum_mb_at": {p: s["workers_sum"] / mb for p, s in marks.items()},
        "worker_max_mb_at": {p: s["worker_max"] / mb for p, s in marks.items()},
        "samples": len(rss.samples), "frames_table_mb": summary["outputs"]["frames"]["bytes"] / mb,
    }


def print_million(r: dict) -> None:
    print(f"rayal score end to end, {r['frames']} synthetic frames {r['size']}x{r['size']} from a "
          f"parquet manifest (batch {r['batch']}, 1 actor, local Ray on 2 CPUs)")
    print(f"  wall time          {r['job_seconds']:9.1f} s   ({r['process_seconds']:.1f} s "
          "with the process and Ray start-up)")
    print(f"  throughput         {r['fps']:9.1f} frames/s   ({r['steady_fps']:.1f} after start-up)")
    print(f"  peak RSS driver    {r['driver_peak_mb']:9.0f} MB")
    print(f"  peak RSS worker    {r['worker_peak_mb']:9.0f} MB   (largest one Ray worker; all "
          f"workers together {r['workers_sum_peak_mb']:.0f} MB)")
    print(f"  RSS at  10% / 50% / 100% of the frames ({r['samples']} samples)")
    for name, key in (("driver", "driver_mb_at"), ("largest worker", "worker_max_mb_at"),
                      ("all workers", "workers_sum_mb_at")):
        at = r[key]
        print(f"    {name:<16} {at[10]:7.0f} / {at[50]:7.0f} / {at[100]:7.0f} MB")
    growth = r["driver_mb_at"][100] - r["driver_mb_at"][10]
    print(f"million_frames_per_second: {r['fps']:.1f}")
    print(f"million_driver_peak_mb: {r['driver_peak_mb']:.0f}")
    print(f"million_worker_peak_mb: {r['worker_peak_mb']:.0f}")
    print(f"million_driver_growth_10_to_100_mb: {growth:.0f}")


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench_scoring.py --gpu: CUDA is not available on this machine (torch.cuda."
                 "is_available() is False): run it on a GPU node")


def bench_gpu(workdir: Path, frames: int = 4096, size: int = 360) -> dict:
    """frames/s per GPU of ``rayal score`` (one actor per GPU, default scoring measures, T=10,
    patch units) over synthetic frames, and the MC-dropout cost ratio on CUDA."""
    import torch

    from rayal.config import config_from_dict
    from rayal.pipeline.runtime import init_ray
    from rayal.pipeline.score.score_job import run_scoring

    require_cuda()
    gpus = torch.cuda.device_count()
    cpus = os.cpu_count() or 2
    cfg = {
        "seed": 0, "device": "cuda", "output_dir": str(workdir / "gpu"),
        "data": {"source": "synthetic", "num_classes": 8,
                 "synthetic": {"num_frames": frames, "height": size, "width": size * 4 // 3}},
        "model": {"arch": "Unet", "encoder": "mobilenet_v2"},
        "scoring": {"mc_samples": 10, "units": ["patch"], "batch_size": 32},
        "ray": {"num_cpus": cpus, "actors": gpus, "cpus_per_actor": 1.0, "gpus_per_actor": 1.0,
                "decode_cpus": max(0.5, (cpus - gpus) / (4 * gpus)), "torch_threads": 1},
    }
    config = config_from_dict(cfg)
    init_ray(config.ray)
    summary = run_scoring(config, progress=False)
    return {"gpus": gpus, "frames": frames, "fps": summary.steady_frames_per_second,
            "fps_per_gpu": summary.steady_frames_per_second / gpus,
            "name": torch.cuda.get_device_name(0)}
