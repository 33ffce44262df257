"""Background jobs of the service: a round (score with the current model, then select through
the coordinator) and a retrain (Ray Train on the labelled units), each with a state.

One ``JobRunner`` actor per project (``rayal-serve-jobs-<project>``, threaded) runs them and
keeps their records; ``note_labels`` counts acknowledged labels and starts a retrain once
``serve.retrain_every`` new labels arrived since the last one. Job states: ``queued``,
``running``, ``succeeded``, ``failed`` (with ``error``). Rounds run one at a time, and so do
retrains. A job record: ``id, kind, state, params, created, started, finished, result, error``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid

from rayal.config import RayalConfig

log = logging.getLogger("rayal.serve")


def runner_name(project: str) -> str:
    return f"rayal-serve-jobs-{project}"


class JobRunner:
    """Runs round and retrain jobs in threads of the actor; see the module docstring."""

    def __init__(self, config: dict, serve_dir: str):
        self.config = RayalConfig.model_validate(config)
        self.serve_dir = os.path.abspath(serve_dir)
        self.jobs: dict[str, dict] = {}
        self._locks = {"round": threading.Lock(), "retrain": threading.Lock()}
        self._mutex = threading.Lock()
        self._new_labels = 0

    def _pool(self):
        from rayal.pool.coordinator import get_or_create_coordinator

        return get_or_create_coordinator(self.config.pool)

    # --- API ------------------------------------------------------------------------------
    def start(self, kind: str, params: dict | None = None) -> dict:
        """Queue a ``round`` (params ``strategy``, ``budget``, optional ``params``) or a
        ``retrain`` job; returns its record."""
        if kind not in self._locks:
            raise ValueError(f"unknown job kind {kind!r}")
        job = {"id": uuid.uuid4().hex[:12], "kind": kind, "state": "queued",
               "params": dict(params or {}), "created": time.time(), "started": None,
               "finished": None, "result": None, "error": None}
        self.jobs[job["id"]] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return dict(job)

    def get(self, job_id: str) -> dict | None:
        job = self.jobs.get(job_id)
        return None if job is None else dict(job)

    def list(self) -> list[dict]:
        return [dict(j) for j in sorted(self.jobs.values(), key=lambda j: j["created"])]

    def note_labels(self, count: int) -> str | None:
        """Count ``count`` new labels; start a retrain (returns its id) when ``retrain_every``
        is reached and none is running."""
        every = self.config.serve.retrain_every
        with self._mutex:
            self._new_labels += int(count)
            if not every or self._new_labels < every or self._locks["retrain"].locked():
                return None
            self._new_labels = 0
        return self.start("retrain", {"automatic": True})["id"]

    # --- running ----------------------------------------------------------------------------
    def _run(self, job: dict) -> None:
        with self._locks[job["kind"]]:
            job["state"], job["started"] = "running", time.time()
            try:
                job["result"] = getattr(self, f"_{job['kind']}")(job)
                job["state"] = "succeeded"
            except Exception as err:  # noqa: BLE001 - recorded in the job, shown by GET /jobs/{id}
                job["error"] = f"{type(err).__name__}: {err}"
                job["state"] = "failed"
                log.error("job %s (%s) failed:\n%s", job["id"], job["kind"], traceback.format_exc())
            job["finished"] = time.time()

    def _round(self, job: dict) -> dict:
        import ray

        from rayal.pipeline.score.score_job import run_scoring
        from rayal.pipeline.loop.selection_params import selection_params
        from rayal.pool.coordinator import to_budget
        from rayal.serve.models import current_version

        p = job["params"]
        pool = self._pool()
        status = ray.get(pool.status.remote())
        round_id = max(status["per_round"], default=-1) + 1
        job["progress"] = {"round": round_id, "step": "scoring"}
        model = current_version(self.serve_dir, self.config)
        score_dir = os.path.join(self.serve_dir, "rounds", f"round_{round_id:03d}", "scores")
        cfg = self.config.model_copy(update={
            "output_dir": score_dir,
            "model": self.config.model.model_copy(update={"checkpoint": model["checkpoint"]})})
        summary = run_scoring(cfg, progress=False)
        job["progress"] = {"round": round_id, "step": "selecting",
                           "frames_scored": summary.frames_scored}
        strategy = p.get("strategy") or self.config.selection.strategy
        own = strategy == self.config.selection.strategy and p.get("params") is None
        params = selection_params(self.config, strategy, None if own else (p.get("params") or {}))
        query = ray.get(pool.select.remote(strategy, params, to_budget(p["budget"]), round_id,
                                           score_dir, self.config.seed * 1000 + round_id))
        self._note_round()
        return {"round": round_id, "selected": query.num_rows, "model_version": model["version"],
                "frames_scored": summary.frames_scored}

    def _note_round(self) -> None:
        """Tell the project's desk a new query is queued (it caches the queued units)."""
        import ray

        from rayal.serve.leases import desk_name

        try:
            desk = ray.get_actor(desk_name(self.config.pool.project),
                                 namespace=self.config.pool.namespace)
        except ValueError:
            return   # no desk (a runner used on its own): nothing caches the query
        ray.get(desk.note_round.remote())

    def _retrain(self, job: dict) -> dict:
        from rayal.pipeline.loop.train_job import run_training
        from rayal.serve.models import add_version, read_versions

        version = len(read_versions(self.serve_dir)) + 1
        job["progress"] = {"version": version, "step": "training"}
        train = self.config.train.model_copy(update={
            "labels": "pool", "masks_dir": os.path.join(self.serve_dir, "masks")})
        cfg = self.config.model_copy(update={"output_dir": self.serve_dir, "train": train})
        summary = run_training(cfg, progress=False, out_name=os.path.join("models", f"v{version:03d}"))
        row = add_version(self.serve_dir, summary.checkpoint, miou=summary.eval_miou,
                          labelled_frames=summary.frames, job=job["id"])
        return {"version": row["version"], "checkpoint": row["checkpoint"], "miou": row["miou"],
                "labelled_frames": row["labelled_frames"]}


def get_or_create_runner(config: RayalConfig, serve_dir: str, detached: bool = False):
    """The project's job runner actor (created on first use)."""
    import ray

    actor = ray.remote(JobRunner).options(
        name=runner_name(config.pool.project), namespace=config.pool.namespace, num_cpus=0,
        max_concurrency=8, get_if_exists=True, lifetime="detached" if detached else None)
    handle = actor.remote(config.model_dump(mode="json"), serve_dir)
    ray.get(handle.list.remote())   # a runner that cannot start raises its error here
    return handle
