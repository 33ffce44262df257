"""``rayal score``: stream the pool through a scoring actor pool into parquet tables.

    source (folder / manifest / synthetic)
      -> map_batches(DecodeFrames)            CPU tasks: read, decode, regions
      -> map_batches(FrameBatchScorer, ActorPoolStrategy)  model once per actor
      -> driver: ScoreSink (frames / regions / embeddings / quarantine parquet)
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import ray
import torch
from tqdm.auto import tqdm

from rayal.config import RayalConfig
from rayal.data import join_uri, write_bytes
from rayal.pipeline.batch import FrameBatchScorer
from rayal.pipeline.frames import (FrameSource, check_frame_store, check_unique_frame_ids,
                                   decode_frames, frame_source)
from rayal.pipeline.manifest_source import ManifestDatasource
from rayal.pipeline.runtime import init_ray, quiet_ray_data, write_run_metadata
from rayal.pipeline.sink import ScoreSink


@dataclass
class ScoreSummary:
    frames_total: int
    frames_scored: int
    frames_quarantined: int
    seconds: float
    frames_per_second: float
    outputs: dict = field(default_factory=dict)
    region_bytes_per_frame: float = 0.0
    frame_bytes_per_frame: float = 0.0
    startup_seconds: float = 0.0  # job start -> first scored batch at the driver
    steady_frames_per_second: float = 0.0  # after the first batch

    def table(self) -> str:
        rows = [("frames in pool", f"{self.frames_total}"),
                ("frames scored", f"{self.frames_scored}"),
                ("frames quarantined", f"{self.frames_quarantined}"),
                ("wall time", f"{self.seconds:.1f} s"),
                ("throughput", f"{self.frames_per_second:.2f} frames/s"),
                ("after start-up", (f"{self.steady_frames_per_second:.2f} frames/s"
                                    if self.steady_frames_per_second else "n/a (one batch)")
                 + f" (start-up {self.startup_seconds:.1f} s)"),
                ("frames table", f"{self.frame_bytes_per_frame:.0f} B/frame"),
                ("regions table", f"{self.region_bytes_per_frame:.0f} B/frame")]
        rows += [(f"{name}/", f"{info['rows']} rows -> {info['path']}")
                 for name, info in self.outputs.items()]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _gpus_per_actor(config: RayalConfig) -> float:
    if config.ray.gpus_per_actor is not None:
        return config.ray.gpus_per_actor
    if config.device == "cpu":
        return 0.0
    return 1.0 if torch.cuda.is_available() or ray.cluster_resources().get("GPU", 0) else 0.0


def build_dataset(config: RayalConfig, source: FrameSource):
    """The lazy Ray Dataset of scored frame rows (one Arrow row per frame)."""
    # One block per scoring batch: results then stream back batch by batch (progress,
    # bounded memory) instead of one block per manifest row group.
    batch = config.scoring.batch_size
    if source.table is not None:
        table = source.table
        ds = ray.data.from_arrow([table.slice(i, batch) for i in range(0, table.num_rows, batch)])
    else:
        ds = ray.data.read_datasource(ManifestDatasource(
            source.manifest_uri, batch_size=batch, limit=source.num_frames))
    ds = ds.map_batches(decode_frames, fn_kwargs=dict(
        data=config.data, scoring=config.scoring),
        batch_size=batch, batch_format="numpy", num_cpus=config.ray.decode_cpus)
    gpus = _gpus_per_actor(config)
    return ds.map_batches(
        FrameBatchScorer,
        fn_constructor_kwargs=dict(config=config.model_dump(mode="json"),
                                   torch_threads=config.ray.torch_threads),
        compute=ray.data.ActorPoolStrategy(size=config.ray.actors),
        num_cpus=config.ray.cpus_per_actor if not gpus else min(config.ray.cpus_per_actor, 1.0),
        num_gpus=gpus, batch_size=batch, batch_format="numpy")


def run_scoring(config: RayalConfig, *, progress: bool = True, pool=None) -> ScoreSummary:
    """Score the pool described by ``config`` and write the tables under ``config.output_dir``.

    pool: a :class:`rayal.pipeline.scoring_pool.ScoringPool` whose long-lived actors score
    instead of a new Ray Data actor pool (an AL run keeps one for all its rounds)."""
    if config.data.num_classes is None and not config.model.checkpoint:
        if config.data.source == "synthetic":
            from rayal.data import SYNTHETIC_CLASSES
            config = config.model_copy(update={"data": config.data.model_copy(
                update={"num_classes": len(SYNTHETIC_CLASSES)})})
        else:
            raise ValueError("data.num_classes is required unless model.checkpoint is given")
    source = frame_source(config.data)
    check_unique_frame_ids(config.data)   # refused as `rayal pool init` refuses them
    check_frame_store(source)   # a refusing store fails here, naming the URI
    output_dir = config.output_dir
    write_run_metadata(config, output_dir)
    started_ray = init_ray(config.ray)
    quiet_ray_data()
    sink = ScoreSink(output_dir, with_embeddings=bool(config.scoring.embeddings))
    scored = quarantined = 0
    first_at, first_rows = None, 0
    start = time.perf_counter()
    try:
        batches = (pool.stream(config) if pool is not None else build_dataset(config, source).iter_batches(
            batch_format="pyarrow", batch_size=None, prefetch_batches=2))
        bar = tqdm(total=source.num_frames, desc="scoring", unit="frame", disable=not progress)
        for batch in batches:
            good, bad = sink.write(batch)
            scored += good
            quarantined += bad
            bar.update(good + bad)
            if first_at is None:
                first_at, first_rows = time.perf_counter(), good + bad
            bar.set_postfix(quarantined=quarantined)
        bar.close()
    finally:
        outputs = sink.close()
        if started_ray:
            ray.shutdown()
    end = time.perf_counter()
    seconds = end - start
    n = max(scored, 1)
    first_at = first_at or end
    steady = (scored + quarantined - first_rows) / (end - first_at) if end > first_at else 0.0
    summary = ScoreSummary(
        frames_total=source.num_frames, frames_scored=scored, frames_quarantined=quarantined,
        seconds=seconds, frames_per_second=(scored + quarantined) / max(seconds, 1e-9),
        outputs=outputs, region_bytes_per_frame=outputs["regions"]["bytes"] / n,
        frame_bytes_per_frame=outputs["frames"]["bytes"] / n,
        startup_seconds=first_at - start, steady_frames_per_second=steady)
    write_bytes(join_uri(output_dir, "score_summary.json"),
                json.dumps(asdict(summary), indent=2).encode())
    return summary
