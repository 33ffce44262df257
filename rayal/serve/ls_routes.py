"""Label Studio ML backend protocol at the root of ``rayal serve`` (as ``label_studio_ml.api``
of label-studio-ml-backend serves it), so a Label Studio project can add rayal as its model.

* ``GET /health`` -> ``{"status": "UP", "model_class": "rayal", ...}`` (open; in routes.py).
* ``POST /setup`` ``{"project": "<id>.<ts>", "schema": <label config XML>, ...}`` ->
  ``{"model_version": "rayal-v<N>"}``; 422 when the config has no ``<BrushLabels>`` /
  ``<PolygonLabels>``.
* ``POST /predict`` ``{"tasks": [{"id", "data": {...}}], "label_config", "project",
  "params"}`` -> ``{"results": [{"result": [brushlabels...], "score", "model_version"}]}``,
  one per task in order: the current model's classes inside the unit as brush RLE, and
  ``score`` = the unit's active-learning priority ``1 - rank / len(query)`` of its round
  (1.0 for the first unit rayal selected, 0.0 for a unit outside the query), so Label Studio's
  sort by prediction score follows rayal's selection.
* ``POST /webhook`` ``{"action", "annotation", "task", "project"}``: ``ANNOTATION_CREATED`` /
  ``ANNOTATION_UPDATED`` ingest the annotation's brush / polygon results as the unit's label
  (annotator ``labelstudio:<completed_by>``; the unit is leased to them on the way, 409 when
  another annotator holds it) -> 201 ``{"status": "ok", "result": <ingest report>}``;
  ``START_TRAINING`` (admin token) starts a retrain -> 201 ``{"status": "ok", "job_id"}``;
  other actions -> 200 ``{"status": "ignored"}``.
* ``GET /labelstudio/image/{task_id}?sig=...``: the frame PNG under a signed URL (no token);
  ``GET /v1/projects/{project}/labelstudio/tasks[?round=R][&base_url=U]``: Label Studio tasks
  of a round's query (see :mod:`rayal.pool.formats.ls_results`), for Label Studio's import.

Auth: Label Studio sends its ML backend's credentials as HTTP Basic auth (``auth_method``
BASIC_AUTH, ``basic_auth_user`` any name, ``basic_auth_pass`` = a rayal token) on /setup and
/predict; the webhook Label Studio creates for the backend sends the headers set on it, e.g.
``{"Authorization": "Bearer <token>"}``. ``Authorization: Bearer`` works everywhere.
"""
from __future__ import annotations

import base64
import binascii

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rayal.pool.formats.ls_results import (class_labels, parse_label_config, prediction_results,
                                           resolve_task, results_to_mask, task_data)
from rayal.pool.tasks import TaskError, parse_task_id, task_id
from rayal.serve.auth import image_signature, signing_key

TRAIN_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


def _bearer(header: str | None) -> str | None:
    """An ``Authorization`` header with Basic credentials -> the same token as Bearer."""
    scheme, _, rest = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return header
    try:
        _, _, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return f"Bearer {password}"


def annotator_of(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    if who is None or str(who).strip() == "":
        raise TaskError(422, "annotation.completed_by is missing (who labelled it)")
    return f"labelstudio:{who}"


class LabelStudioBackend:
    """What the Label Studio routes do, over the service (:class:`rayal.serve.app.Service`)."""

    def __init__(self, svc, tokens: list[dict]):
        self.svc = svc
        self.key = signing_key(tokens)
        self._ranks: dict[int, dict] = {}

    def auth(self, request: Request, role: str) -> None:
        self.svc.tokens.check(_bearer(request.headers.get("authorization")), self.svc.project, role)

    def model_version(self) -> str:
        from rayal.serve.models import current_version

        return f"rayal-v{current_version(self.svc.serve_dir, self.svc.config)['version']}"

    def current_round(self):
        from rayal.serve.calls import unwrap

        return unwrap(self.svc.desk.current_round.remote())

    def priority(self, tid: str) -> float:
        """1 - rank / len(query) of the unit in its round's query; 0.0 outside it."""
        from rayal.serve.calls import unwrap

        round_id, frame_id, region_id = parse_task_id(tid)
        if round_id not in self._ranks:
            q = unwrap(self.svc.pool.query.remote(round_id))
            ranks = {(f, int(r)): int(k) for f, r, k in zip(*(
                q.column(c).to_pylist() for c in ("frame_id", "region_id", "rank")))}
            if not ranks:
                return 0.0
            self._ranks[round_id] = ranks
        ranks = self._ranks[round_id]
        rank = ranks.get((frame_id, region_id))
        return 0.0 if rank is None else 1.0 - rank / len(ranks)

    # --- protocol ----------------------------------------------------------------------------
    def setup(self, body: dict) -> dict:
        parse_label_config(body.get("schema") or body.get("label_config"))
        return {"model_version": self.model_version()}

    def predict(self, body: dict) -> dict:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise TaskError(422, "tasks must be a non-empty list of Label Studio tasks")
        control = parse_label_config(body.get("label_config"))["brush"]
        if control is None:
            raise TaskError(422, "label_config has no <BrushLabels>: rayal's pre-annotations are "
                            "brush masks")
        c = self.svc.config
        names = class_labels(c.data.num_classes, c.data.class_names)
        current, out = self.current_round(), []
        for i, task in enumerate(tasks):
            ls_id = task.get("id", i) if isinstance(task, dict) else i
            try:
                tid = resolve_task(task.get("data") if isinstance(task, dict) else None, current)
                round_id, frame_id, region_id = parse_task_id(tid)
                uri, region, _ = self.svc.region(frame_id, region_id, tid)
                labels, _conf, row = self.svc.predictor.predict(frame_id, uri)
            except TaskError as err:
                raise TaskError(err.status, f"task {ls_id}: {err.message}", err.unit) from None
            out.append({"result": prediction_results(labels, region, control, names),
                        "score": self.priority(tid), "model_version": f"rayal-v{row['version']}"})
        return {"results": out}

    def ingest(self, body: dict) -> dict:
        """An ANNOTATION_CREATED / _UPDATED payload -> the ingest report (see module doc)."""
        from rayal.serve.calls import unwrap

        annotation, task = body.get("annotation"), body.get("task")
        if not isinstance(annotation, dict) or not isinstance(task, dict):
            raise TaskError(422, f"{body.get('action')} needs 'annotation' and 'task' objects")
        tid = resolve_task(task.get("data"), self.current_round())
        if annotation.get("was_cancelled"):
            return {"task_id": tid, "skipped": True}
        annotator = annotator_of(annotation)
        _, frame_id, region_id = parse_task_id(tid)
        _, region, _ = self.svc.region(frame_id, region_id, tid)
        d = self.svc.config.data
        results_to_mask(annotation.get("result"), size=region.shape, num_classes=d.num_classes,
                        ignore_index=d.ignore_index, class_names=d.class_names, unit=tid)
        unwrap(self.svc.desk.claim.remote(tid, annotator))     # 409: another annotator holds it
        return self.svc.submit({"task_id": tid, "annotator": annotator,
                                "labelstudio": annotation.get("result")})

    def tasks(self, round_id, base_url: str) -> list[dict]:
        from rayal.serve.calls import unwrap

        round_id = self.current_round() if round_id is None else round_id
        if round_id is None:
            return []
        q = unwrap(self.svc.pool.query.remote(round_id)).sort_by("rank")
        out = []
        for f, r, k in zip(*(q.column(c).to_pylist() for c in ("frame_id", "region_id", "rank"))):
            tid = task_id(round_id, f, r)
            image = (f"{base_url.rstrip('/')}/labelstudio/image/{tid}"
                     f"?sig={image_signature(self.key, tid)}")
            out.append({"data": task_data(round_id, f, r, k, q.num_rows, image)})
        return out


def add_label_studio_routes(app: FastAPI, svc, tokens: list[dict]) -> LabelStudioBackend:
    from starlette.concurrency import run_in_threadpool

    from rayal.serve.calls import read_json, unwrap

    ls = LabelStudioBackend(svc, tokens)
    limit = svc.config.serve.max_body_bytes

    @app.post("/setup", tags=["label studio"])
    async def setup(request: Request):
        """Label Studio connects: checks the labelling config -> ``{"model_version"}``."""
        ls.auth(request, "annotator")
        return ls.setup(await read_json(request, limit))

    @app.post("/predict", tags=["label studio"])
    async def predict(request: Request):
        """Pre-annotations (brush RLE) with ``score`` = the unit's AL priority, one per task."""
        ls.auth(request, "annotator")
        body = await read_json(request, limit)
        return await run_in_threadpool(ls.predict, body)

    @app.post("/webhook", tags=["label studio"])
    async def webhook(request: Request):
        """ANNOTATION_CREATED / _UPDATED ingest the label; START_TRAINING retrains (admin)."""
        ls.auth(request, "annotator")
        body = await read_json(request, limit)
        action = body.get("action")
        if action in TRAIN_ACTIONS:
            report = await run_in_threadpool(ls.ingest, body)
            return JSONResponse({"status": "ok", "result": report}, status_code=201)
        if action == "START_TRAINING":
            ls.auth(request, "admin")
            job = unwrap(svc.jobs.start.remote("retrain", {"source": "labelstudio"}))
            return JSONResponse({"status": "ok", "job_id": job["id"]}, status_code=201)
        return {"status": "ignored", "action": action}

    @app.get("/labelstudio/image/{task_id}", tags=["label studio"])
    def image(task_id: str, sig: str = ""):
        """The task's frame (PNG) under the signed URL of its Label Studio task."""
        import hmac

        if not hmac.compare_digest(sig, image_signature(ls.key, task_id)):
            raise TaskError(403, "bad or missing image signature", task_id)
        return Response(svc.image_png(task_id), media_type="image/png")

    @app.get("/v1/projects/{project}/labelstudio/tasks", tags=["annotator"])
    def tasks(project: str, request: Request, round: int | None = None, base_url: str = ""):
        """Label Studio tasks of a round's query (default the current round), rank order."""
        svc.auth(request, project, "annotator")
        return ls.tasks(round, base_url or str(request.base_url))

    return ls


__all__ = ["add_label_studio_routes", "LabelStudioBackend"]
