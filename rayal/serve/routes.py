"""The ``/v1`` routes of ``rayal serve`` (see :mod:`rayal.serve.app` for the error shapes).

Roles: annotator routes accept annotator and admin tokens; admin routes only admin tokens.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rayal.pool.tasks import TaskError

P = "/v1/projects/{project}"


def _int(body: dict, name: str, default=None, low: int = 1, high: int | None = None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        rng = f"{low}..{high}" if high is not None else f">= {low}"
        raise TaskError(422, f"{name} must be an integer {rng}, got {value!r}")
    return value


def add_v1_routes(app: FastAPI, svc) -> None:
    from rayal.serve.calls import aunwrap, read_json, unwrap

    limit = svc.config.serve.max_body_bytes

    @app.get("/health", tags=["open"])
    def health():
        """Open: ``{"status": "UP", "project", "model_version"}`` (also Label Studio's /health)."""
        from rayal.serve.models import current_version

        model = current_version(svc.serve_dir, svc.config)["version"]
        return {"status": "UP", "model_class": "rayal", "project": svc.project,
                "model_version": model}

    @app.get(P + "/status", tags=["annotator"])
    def status(project: str, request: Request):
        """Counts per status (``counts``: unlabeled, queued, labeled, quarantined), per class and
        round, current model version and the learning curve (mIoU per retrained version)."""
        svc.auth(request, project, "annotator")
        return svc.status()

    @app.post(P + "/leases", tags=["annotator"])
    async def lease(project: str, request: Request):
        """``{"annotator", "n"}`` -> ``{"tasks": [{"task_id", "frame_id", "region_id", "round",
        "rank", "score", "leased_until"}]}``: the annotator's open leases first, then free units
        of the current round; each lease lasts ``pool.lease_seconds``."""
        svc.auth(request, project, "annotator")
        body = await read_json(request, limit)
        annotator = body.get("annotator")
        if not isinstance(annotator, str) or not annotator.strip():
            raise TaskError(422, "annotator must be a non-empty string")
        n = _int(body, "n", 1, 1, svc.config.serve.max_lease)
        return {"tasks": await aunwrap(svc.desk.lease.remote(annotator, n))}

    @app.get(P + "/tasks/{task_id}", tags=["annotator"])
    def task(project: str, task_id: str, request: Request):
        """The frame (``image_url``), the unit's region (bbox, COCO RLE, polygon, mask PNG) and the
        current model's prediction (class-id PNG of the frame) as a pre-annotation."""
        svc.auth(request, project, "annotator")
        return svc.task(task_id)

    @app.get(P + "/tasks/{task_id}/image", tags=["annotator"])
    def image(project: str, task_id: str, request: Request):
        """The frame as PNG (upright, as annotators see it)."""
        svc.auth(request, project, "annotator")
        return Response(svc.image_png(task_id), media_type="image/png")

    @app.post(P + "/labels", tags=["annotator"])
    async def labels(project: str, request: Request):
        """``{"task_id", "annotator", "mask_png_base64" | "coco_rle" | "labelstudio"}`` -> 200
        after the journal's fsync; 409 not leased to this annotator, 422 a bad label."""
        svc.auth(request, project, "annotator")
        body = await read_json(request, limit)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(svc.submit, body)

    @app.post(P + "/rounds", tags=["admin"], status_code=202)
    async def rounds(project: str, request: Request):
        """``{"strategy", "budget"[, "params"]}`` -> 202 ``{"job_id", "state"}``: score the pool
        with the current model, then select ``budget`` units with ``strategy``."""
        from rayal.selection.registry import get_strategy

        svc.auth(request, project, "admin")
        body = await read_json(request, limit)
        strategy = body.get("strategy", svc.config.selection.strategy)
        budget = _int(body, "budget", svc.config.selection.budget)
        params = body.get("params")
        if params is not None and not isinstance(params, dict):
            raise TaskError(422, "params must be an object")
        try:
            get_strategy(strategy, **({} if params is None else {
                k: v for k, v in params.items() if k != "unit"}))
        except (KeyError, TypeError, ValueError) as err:
            raise TaskError(422, f"strategy {strategy!r}: {err}") from None
        job = unwrap(svc.jobs.start.remote("round", {"strategy": strategy, "budget": budget,
                                                     "params": params}))
        return JSONResponse({"job_id": job["id"], "state": job["state"]}, status_code=202)

    @app.post(P + "/retrain", tags=["admin"], status_code=202)
    def retrain(project: str, request: Request):
        """Retrain on the labelled units (Ray Train) -> 202 ``{"job_id", "state"}``; the new model
        version serves pre-annotations and the next round when the job succeeds."""
        svc.auth(request, project, "admin")
        job = unwrap(svc.jobs.start.remote("retrain", {}))
        return JSONResponse({"job_id": job["id"], "state": job["state"]}, status_code=202)

    @app.get(P + "/jobs", tags=["admin"])
    def jobs(project: str, request: Request):
        svc.auth(request, project, "admin")
        return {"jobs": unwrap(svc.jobs.list.remote())}

    @app.get(P + "/jobs/{job_id}", tags=["admin"])
    def job(project: str, job_id: str, request: Request):
        """``{"id", "kind", "state": queued|running|succeeded|failed, "progress", "result",
        "error", ...}``."""
        svc.auth(request, project, "admin")
        record = unwrap(svc.jobs.get.remote(job_id))
        if record is None:
            raise TaskError(404, f"unknown job {job_id!r}")
        return record
