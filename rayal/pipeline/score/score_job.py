"""``rayal score``: stream the pool through a scoring actor pool into parquet tables.

    source (folder / manifest / synthetic), minus the frames already committed (--resume)
      -> map_batches(DecodeFrames)            CPU tasks: read, decode, regions
      -> map_batches(FrameBatchScorer, ActorPoolStrategy)  model once per actor
      -> driver: ScoreSink (frames / regions / embeddings / quarantine parquet, committed
         in part sets: see :mod:`rayal.pipeline.score.sink`)

Faults (what is retried, what is not):

- a node lost, a worker process killed or OOM-killed: Ray Data retries the read and decode
  tasks (system errors, without limit); a scoring actor restarts on any node with room
  (``max_restarts=-1``) and the batch it held is retried up to ``BATCH_RETRIES`` times
  (``max_task_retries``); an actor that dies while loading its model is replaced up to
  ``ACTOR_INIT_DEATHS`` times in a row (``DataContext.max_consecutive_actor_init_deaths``).
  No frame is quarantined for these: its batch is scored again.
- a frame that cannot be read or decoded: quarantined (its row goes to ``quarantine/``),
  never retried.
- not retried, the job fails: an exception in the model or scorer code (a bug, or a checkpoint
  that does not fit), a store refusing the read (:class:`rayal.data.io.StorageError`), a batch
  that kills its actor more than ``BATCH_RETRIES`` times, and the driver or the whole Ray going
  away. The committed part sets stay: ``rayal score CONFIG --resume`` scores only the rest.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
from tqdm.auto import tqdm

from rayal.config import RayalConfig
from rayal.data import join_uri, write_bytes
from rayal.pipeline.score.batch import FrameBatchScorer
from rayal.pipeline.score.frames import (FrameSource, check_frame_store, check_unique_frame_ids,
                                   decode_frames, frame_source)
from rayal.pipeline.score.manifest_source import ManifestDatasource
from rayal.pipeline.score.ray_log_filter import ray_data_false_alarm_filtered
from rayal.pipeline.score.self_supervised import with_self_supervised_encoder
from rayal.pipeline.runtime import init_ray, quiet_ray_data, write_run_metadata
from rayal.pipeline.score.sink import ScoreSink, clear_outputs, open_resume
from rayal.pipeline.storage import remove_tree

BATCH_RETRIES = 3        # max_task_retries of a scoring batch whose actor died
ACTOR_INIT_DEATHS = 3    # actors dying in a row while loading the model before the job fails


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
    frames_already_done: int = 0   # committed by an earlier run of this job (--resume)

    def table(self) -> str:
        rows = [("frames in pool", f"{self.frames_total}"),
                ("frames done before", f"{self.frames_already_done}"),   # skipped by --resume
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


def score_config_hash(config: RayalConfig) -> str:
    """What a score directory's rows depend on (model, scoring, data but its ``limit``, seed):
    committed parts are resumed only under the same hash."""
    skip = {"commit_frames", "commit_seconds"}
    if config.scoring.embedding_model == "model":   # hashes of directories scored before it existed
        skip |= {"embedding_model", "self_supervised"}
    scoring = config.scoring.model_dump(mode="json", exclude=skip)
    data = config.data.model_dump(mode="json", exclude={"limit"})
    key = json.dumps([config.model.model_dump(mode="json"), scoring, data, config.seed],
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def can_resume(config: RayalConfig) -> bool:
    """True unless ``config.output_dir`` holds committed parts of another config (resuming them
    would mix scores of two models or settings)."""
    from rayal.pipeline.score.sink import read_markers

    want = score_config_hash(_with_num_classes(config))
    return all(m["config"] == want for m in read_markers(config.output_dir))


def configure_retries() -> None:
    """The Ray Data settings of the fault handling described in the module docstring."""
    from ray.data import DataContext

    DataContext.get_current().max_consecutive_actor_init_deaths = ACTOR_INIT_DEATHS


def build_dataset(config: RayalConfig, source: FrameSource, skip: pa.Array | None = None):
    """The lazy Ray Dataset of scored frame rows (one Arrow row per frame).

    skip: frame ids (string) left out of the source (already committed); a table source is
    filtered here, a manifest inside its read tasks."""
    # One block per scoring batch: results then stream back batch by batch (progress,
    # bounded memory) instead of one block per manifest row group.
    batch = config.scoring.batch_size
    if source.table is not None:
        table = source.table
        if skip is not None and len(skip):
            table = table.filter(pc.invert(pc.is_in(table.column("frame_id"), value_set=skip)))
        ds = ray.data.from_arrow([table.slice(i, batch) for i in range(0, table.num_rows, batch)])
    else:
        ds = ray.data.read_datasource(ManifestDatasource(
            source.manifest_uri, batch_size=batch, limit=source.num_frames,
            skip=skip if skip is not None and len(skip) else None))
    ds = ds.map_batches(decode_frames, fn_kwargs=dict(
        data=config.data, scoring=config.scoring),
        batch_size=batch, batch_format="numpy", num_cpus=config.ray.decode_cpus)
    gpus = _gpus_per_actor(config)
    with warnings.catch_warnings():   # Ray 2.60 has no named parameter for actor restarts
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(
            FrameBatchScorer,
            fn_constructor_kwargs=dict(config=config.model_dump(mode="json"),
                                       torch_threads=config.ray.torch_threads),
            compute=ray.data.ActorPoolStrategy(size=config.ray.actors),
            num_cpus=config.ray.cpus_per_actor if not gpus else min(config.ray.cpus_per_actor, 1.0),
            num_gpus=gpus, batch_size=batch, batch_format="numpy",
            max_restarts=-1, max_task_retries=BATCH_RETRIES)


def _already_done(config: RayalConfig, source: FrameSource, done: pa.Array) -> int:
    """How many frames of the pool split are among the committed ids ``done``."""
    if len(done) == 0:
        return 0
    if source.table is not None:
        return pc.sum(pc.is_in(source.table.column("frame_id"), value_set=done)).as_py() or 0
    from rayal.pipeline.score.frames import pool_frame_batches

    return sum(pc.sum(pc.is_in(b.column("frame_id"), value_set=done)).as_py() or 0
               for b in pool_frame_batches(config.data, batch_rows=65_536))   # never the whole manifest


def _with_num_classes(config: RayalConfig) -> RayalConfig:
    if config.data.num_classes is None and not config.model.checkpoint:
        if config.data.source == "synthetic":
            from rayal.data import SYNTHETIC_CLASSES
            return config.model_copy(update={"data": config.data.model_copy(
                update={"num_classes": len(SYNTHETIC_CLASSES)})})
        raise ValueError("data.num_classes is required unless model.checkpoint is given")
    return config


def run_scoring(config: RayalConfig, *, progress: bool = True, pool=None,
                resume: bool = False) -> ScoreSummary:
    """Score the pool described by ``config`` and write the tables under ``config.output_dir``.

    resume: keep the part sets an earlier run of this job committed and score only the other
    frames (uncommitted part files are deleted); without it, tables left in ``output_dir`` are
    replaced. Either way the finished tables hold each frame of the pool once.
    pool: a :class:`rayal.pipeline.score.scoring_pool.ScoringPool` whose long-lived actors score
    instead of a new Ray Data actor pool (an AL run keeps one for all its rounds).

    Raises:
        ValueError: ``resume`` and the committed parts were scored with another config.
    """
    config = _with_num_classes(config)
    source = frame_source(config.data)
    check_unique_frame_ids(config.data)   # refused as `rayal pool init` refuses them
    check_frame_store(source)   # a refusing store fails here, naming the URI
    config = with_self_supervised_encoder(config, join_uri(config.output_dir, "ssl_cache"),
                                          progress=progress)
    output_dir = config.output_dir
    config_hash = score_config_hash(config)
    remove_tree(join_uri(output_dir, "score_summary.json"))   # written again when finished
    if resume:
        state = open_resume(output_dir, config_hash)
    else:
        clear_outputs(output_dir)
        state = None
    done = state.done if state is not None else pa.array([], pa.string())
    already = _already_done(config, source, done)
    write_run_metadata(config, output_dir)
    sc = config.scoring
    sink = ScoreSink(output_dir, with_embeddings=bool(sc.embeddings), frames_per_part=sc.commit_frames,
                     commit_seconds=sc.commit_seconds, resume=state, config_hash=config_hash)
    todo = source.num_frames - already
    started_ray = False
    scored = quarantined = 0
    first_at, first_rows = None, 0
    start = time.perf_counter()
    try:
        if todo > 0:
            started_ray = init_ray(config.ray)
            quiet_ray_data()
            configure_retries()
            skip = done if len(done) else None
            batches = (pool.stream(config, skip=skip) if pool is not None
                       else build_dataset(config, source, skip).iter_batches(
                           batch_format="pyarrow", batch_size=None, prefetch_batches=2))
            bar = tqdm(total=todo, desc="scoring", unit="frame", disable=not progress)
            # Ray Data's pool actors make Ray core log a false alarm (see ray_log_filter)
            with (ray_data_false_alarm_filtered() if pool is None else contextlib.nullcontext()):
                for batch in batches:
                    good, bad = sink.write(batch)
                    scored += good
                    quarantined += bad
                    bar.update(good + bad)
                    if first_at is None:
                        first_at, first_rows = time.perf_counter(), good + bad
                    bar.set_postfix(quarantined=quarantined)
            bar.close()
        outputs = sink.close()   # only a job that ran to the end commits its last part set
    finally:
        if started_ray:
            ray.shutdown()
    end = time.perf_counter()
    seconds = end - start
    n = max(outputs["frames"]["rows"], 1)
    first_at = first_at or end
    steady = (scored + quarantined - first_rows) / (end - first_at) if end > first_at else 0.0
    summary = ScoreSummary(
        frames_total=source.num_frames, frames_scored=scored, frames_quarantined=quarantined,
        seconds=seconds, frames_per_second=(scored + quarantined) / max(seconds, 1e-9),
        outputs=outputs, region_bytes_per_frame=outputs["regions"]["bytes"] / n,
        frame_bytes_per_frame=outputs["frames"]["bytes"] / n,
        startup_seconds=first_at - start, steady_frames_per_second=steady,
        frames_already_done=already)
    write_bytes(join_uri(output_dir, "score_summary.json"),
                json.dumps(asdict(summary), indent=2).encode())
    return summary
