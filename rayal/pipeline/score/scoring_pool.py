"""Scoring actors that live as long as an active-learning run, not one scoring job.

``rayal score`` runs a Ray Data pipeline whose actor pool is built for that one job; a
simulated AL run scores the same pool every round, and on a small pool most of a round's
scoring time was that start-up (new worker processes importing torch, building the model,
Ray Data planning the job): ~15 of ~18 s a round on CamVid at 64x96. A :class:`ScoringPool`
starts ``ray.actors`` long-lived actors once per run; each round sends them the pool's frames
in scoring batches (batch ``i`` always to actor ``i mod N``), and an actor decodes, computes
region maps, loads the round's checkpoint (only when it changed) and scores with the same
:class:`~rayal.pipeline.score.frames.DecodeFrames` and :class:`~rayal.pipeline.score.batch.FrameBatchScorer`
the Ray Data path uses, so the rows are the same. Results return to the driver's
:class:`~rayal.pipeline.score.sink.ScoreSink` as in ``rayal score``.

Faults: actors restart (``max_restarts=3``) and a batch whose actor died is retried
(``max_task_retries=3``); a bad frame is quarantined by the decode stage as in ``rayal score``.
"""
from __future__ import annotations

import json
from typing import Iterator

import pyarrow as pa
import ray

from rayal.config import RayalConfig


class _ScoringActor:
    """One long-lived scorer: decode + score a batch with the config it is sent."""

    def __init__(self, torch_threads: int | None):
        self.torch_threads = torch_threads
        self.model_key, self.scorer = None, None

    def score(self, config_json: str, batch: dict) -> pa.Table:
        from rayal.pipeline.score.batch import FrameBatchScorer
        from rayal.pipeline.score.frames import DecodeFrames

        config = RayalConfig.model_validate_json(config_json)
        key = json.dumps([config.model.model_dump(mode="json"), config.scoring.model_dump(mode="json"),
                          config.seed, config.device, config.data.num_classes], sort_keys=True)
        if key != self.model_key:   # a new round's checkpoint (or setting): load it once
            self.scorer, self.model_key = FrameBatchScorer(config, self.torch_threads), key
        return self.scorer(DecodeFrames(config.data, config.scoring)(batch))


class ScoringPool:
    """``ray.actors`` scoring actors kept for the life of this object (one AL run).

    Each actor reserves ``ray.cpus_per_actor + ray.decode_cpus`` CPUs (it decodes its own
    frames) and ``ray.gpus_per_actor`` GPUs (None: one when the cluster has GPUs and
    ``device`` is not ``cpu``). :meth:`stream` yields the scored batches of one round.
    """

    def __init__(self, config: RayalConfig):
        from rayal.pipeline.score.score_job import _gpus_per_actor

        rc = config.ray
        gpus = _gpus_per_actor(config)
        actor = ray.remote(_ScoringActor).options(
            num_cpus=self.cpus_per_actor(config, gpus), num_gpus=gpus, max_restarts=3,
            max_task_retries=3)
        self.actors = [actor.remote(rc.torch_threads) for _ in range(rc.actors)]
        self.in_flight = 2 * len(self.actors)

    @staticmethod
    def cpus_per_actor(config: RayalConfig, gpus: float = 0.0) -> float:
        """CPUs one actor reserves: its scoring CPUs (at most 1 beside a GPU) + its decoding."""
        rc = config.ray
        return (rc.cpus_per_actor if not gpus else min(rc.cpus_per_actor, 1.0)) + rc.decode_cpus

    @classmethod
    def fits_beside_training(cls, config: RayalConfig) -> bool:
        """True when the cluster's CPUs hold the pool's actors and the run's Ray Train workers
        at once (the actors keep their CPUs while a round trains; a parallel committee's
        members count, see :func:`rayal.train.committee.training_cpus`); False: the run scores with a
        fresh job each round instead, so training never waits for CPUs the actors hold."""
        from rayal.train.committee import training_cpus

        need = config.ray.actors * cls.cpus_per_actor(config) + training_cpus(config.train)
        return need <= ray.cluster_resources().get("CPU", 0.0)

    def stream(self, config: RayalConfig, skip: pa.Array | None = None) -> Iterator[pa.Table]:
        """Score the pool split of ``config.data`` in ``scoring.batch_size`` batches with
        ``config``'s model; yields one scored Arrow table per batch, in completion order.
        skip: frame ids (string) left out (already committed by a resumed job)."""
        from rayal.pipeline.score.frames import pool_frame_batches, without_frames

        config_json = config.model_dump_json()
        pending: list = []
        parts = without_frames(pool_frame_batches(config.data, batch_rows=config.scoring.batch_size),
                               skip, config.scoring.batch_size)
        for n, part in enumerate(parts):
            batch = {"frame_id": part.column("frame_id").to_numpy(zero_copy_only=False),
                     "uri": part.column("uri").to_numpy(zero_copy_only=False)}
            pending.append(self.actors[n % len(self.actors)].score.remote(config_json, batch))
            if len(pending) >= self.in_flight:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
