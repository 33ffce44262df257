"""The FastAPI app of ``rayal serve`` (one per Serve replica): ``/health``, ``/v1`` and the
Label Studio ML backend routes (:mod:`rayal.serve.ls_routes`).

Errors are JSON ``{"error": ..., "unit": ...}`` (``unit``: the task id it is about, or null):
400 malformed JSON, 401 no / invalid token, 403 wrong role or project, 404 unknown project /
task / job, 409 a unit not leased to this annotator, 413 a body over ``serve.max_body_bytes``,
422 a bad field or label (wrong size, unknown class id, ...). A refused request changes nothing.
"""
from __future__ import annotations

import base64
import io
import threading
from functools import lru_cache

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from rayal.config import RayalConfig
from rayal.serve.auth import AuthError, TokenBook
from rayal.serve.calls import aunwrap, read_json, unwrap
from rayal.pool.tasks import TaskError, parse_task_id
from rayal.serve.models import Predictor, current_version, learning_curve


def units_per_frame(config: RayalConfig) -> int | None:
    if config.pool.unit == "patch":
        return int(np.prod(config.scoring.grid))
    return 1 if config.pool.unit == "image" else None


def png_base64(mask: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Service:
    """What the routes share: config, tokens, actor handles, caches."""

    def __init__(self, config: dict, serve_dir: str, tokens: list[dict]):
        import ray

        from rayal.serve.jobs import runner_name
        from rayal.serve.leases import desk_name
        from rayal.pool.coordinator import coordinator_name

        self.config = RayalConfig.model_validate(config)
        self.project = self.config.pool.project
        self.serve_dir = serve_dir
        self.tokens = TokenBook(tokens)
        ns = self.config.pool.namespace
        self.pool = ray.get_actor(coordinator_name(self.project), namespace=ns)
        self.desk = ray.get_actor(desk_name(self.project), namespace=ns)
        self.jobs = ray.get_actor(runner_name(self.project), namespace=ns)
        self.predictor = Predictor(self.config, serve_dir)
        self._lock = threading.Lock()
        self._uris: dict[str, str] = {}   # frame -> uri (registered frames never change)
        self.region_map = lru_cache(maxsize=256)(self._region_map)

    # --- helpers -----------------------------------------------------------------------------
    def auth(self, request: Request, project: str, role: str) -> None:
        self.tokens.check(request.headers.get("authorization"), project, role)
        if project != self.project:
            raise TaskError(404, f"unknown project {project!r} (this service serves "
                            f"{self.project!r})")

    def frame_uri(self, frame_id: str, unit: str | None = None) -> str:
        uri = self._uris.get(frame_id)
        if uri is None:
            frames = unwrap(self.pool.frames.remote([frame_id]))
            if frames.num_rows == 0:
                raise TaskError(404, f"frame {frame_id!r} is not registered in the pool", unit)
            uri = self._uris[frame_id] = frames.column("uri")[0].as_py()
        return uri

    def _region_map(self, frame_id: str, uri: str) -> np.ndarray:
        from rayal.pool.export import frame_region_map

        c = self.config
        return frame_region_map(frame_id, uri, c.pool.unit, c.scoring, c.data)

    def region(self, frame_id: str, region_id: int, unit: str) -> tuple[str, np.ndarray, list]:
        """(uri, bool (H, W) pixels of the unit, bbox [y0, x0, y1, x1])."""
        from rayal.data import FrameError

        uri = self.frame_uri(frame_id, unit)
        try:
            regions = self.region_map(frame_id, uri)
        except FrameError as err:
            raise TaskError(422, str(err), unit) from None
        mask = np.ones(regions.shape, bool) if region_id < 0 else regions == region_id
        ys, xs = np.nonzero(mask)
        if not ys.size:
            raise TaskError(404, f"region {region_id} does not exist in frame {frame_id}", unit)
        return uri, mask, [int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1]

    def status(self) -> dict:
        s = unwrap(self.pool.status.remote(units_per_frame(self.config)))
        model = current_version(self.serve_dir, self.config)
        leases = unwrap(self.desk.leases_of.remote())
        rounds = s["per_round"]
        n = self.config.data.num_classes   # one entry per class, before the first label too
        return {"project": self.project, "unit": s["unit"], "frames": s["frames"],
                "counts": {k: s[k] for k in ("unlabeled", "queued", "labeled", "quarantined")},
                "per_class": {k: v + [0] * (n - len(v)) for k, v in s["per_class"].items()},
                "per_round": rounds,
                "current_round": max(rounds) if rounds else None, "open_leases": len(leases),
                "model": {"version": model["version"], "miou": model.get("miou")},
                "learning_curve": learning_curve(self.serve_dir), "journal_seq": s["seq"]}

    def task(self, tid: str) -> dict:
        """Task detail: frame, region (bbox, RLE, polygon, mask PNG), prediction."""
        from rayal.pool.export import polygon, rle_encode

        round_id, frame_id, region_id = parse_task_id(tid)
        uri, mask, bbox = self.region(frame_id, region_id, tid)
        labels, conf, row = self.predictor.predict(frame_id, uri)
        cls = labels[mask]
        return {"task_id": tid, "frame_id": frame_id, "region_id": region_id, "round": round_id,
                "image_url": f"/v1/projects/{self.project}/tasks/{tid}/image",
                "height": int(mask.shape[0]), "width": int(mask.shape[1]),
                "holder": unwrap(self.desk.holder.remote(tid)),
                "region": {"bbox": bbox, "rle": rle_encode(mask), "polygon": polygon(mask),
                           "mask_png_base64": png_base64(mask.astype(np.uint8) * 255)},
                "prediction": {"model_version": row["version"], "mask_png_base64": png_base64(labels),
                               "unit_classes": np.bincount(cls.astype(np.int64), minlength=int(
                                   self.config.data.num_classes or 0)).tolist(),
                               "mean_confidence": float(conf[mask].mean())}}

    def image_png(self, tid: str) -> bytes:
        from PIL import Image

        from rayal.data import is_synthetic_uri, read_bytes
        from rayal.pool.export import load_frame

        _, frame_id, _ = parse_task_id(tid)
        uri = self.frame_uri(frame_id, tid)
        if not is_synthetic_uri(uri) and uri.lower().endswith(".png"):
            return read_bytes(uri, frame_id=frame_id)
        image, _ = load_frame(frame_id, uri, self.config.data)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        return buf.getvalue()

    def submit(self, body: dict) -> dict:
        """One unit's label (see :mod:`rayal.serve.labels`) -> ingest report (after fsync)."""
        from rayal.serve.labels import decode_label, summarize_unit

        tid, annotator = body.get("task_id"), body.get("annotator")
        if not isinstance(tid, str) or not isinstance(annotator, str) or not annotator.strip():
            raise TaskError(422, "task_id and annotator must be non-empty strings",
                            tid if isinstance(tid, str) else None)
        _, frame_id, region_id = parse_task_id(tid)
        # the lease (409) is checked by the desk's submit: one actor call per label, not two
        _, region, bbox = self.region(frame_id, region_id, tid)
        d = self.config.data
        mask = decode_label(body, size=region.shape, box=bbox, num_classes=d.num_classes,
                            ignore_index=d.ignore_index, unit=tid, class_names=d.class_names)
        dominant, counts = summarize_unit(mask, region, d.num_classes, d.ignore_index)
        if counts.sum() == 0:
            raise TaskError(422, "the label gives no class inside the unit (only ignore_index)", tid)
        report = unwrap(self.desk.submit.remote(tid, annotator, mask, region, dominant, counts))
        if report.get("labeled") or report.get("updated"):
            self.jobs.note_labels.remote(1)
        return {**report, "acknowledged": True, "dominant_class": dominant}


def build_app(config: dict, serve_dir: str, tokens: list[dict]) -> FastAPI:
    """The FastAPI app; needs the project's coordinator, desk and job runner actors running."""
    from rayal.serve import routes

    svc = Service(config, serve_dir, tokens)
    app = FastAPI(title="rayal serve", version="1",
                  description="Active-learning service: leases, tasks, labels, rounds, retraining; "
                  "Label Studio ML backend at the root.")

    @app.exception_handler(TaskError)
    async def _task_error(_request, err: TaskError):
        return JSONResponse(err.to_dict(), status_code=err.status)

    @app.exception_handler(AuthError)
    async def _auth_error(_request, err: AuthError):
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse({"error": err.detail, "unit": None}, status_code=err.status,
                            headers=headers)

    @app.exception_handler(ValueError)
    async def _value_error(_request, err: ValueError):
        return JSONResponse({"error": str(err), "unit": None}, status_code=422)

    routes.add_v1_routes(app, svc)
    from rayal.serve.ls_routes import add_label_studio_routes

    add_label_studio_routes(app, svc, tokens)
    app.state.service = svc
    return app


__all__ = ["Service", "build_app", "read_json", "png_base64", "unwrap", "aunwrap", "Response"]
