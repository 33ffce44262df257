"""Annotator leases and label commits of one project: the service's ``TaskDesk``.

The coordinator queues a round's query for "annotators" as a whole; the desk hands its units
out to single annotators. It runs as one named Ray actor per project (``rayal-serve-desk-
<project>``), so leasing is serialised: two annotators never hold the same unit. A lease lasts
``pool.lease_seconds``; an expired one returns the unit to the others. A renewed request of an
annotator gets its own open leases back first. Leases are persisted atomically to
``<serve_dir>/leases.json`` after every change, so a restarted desk keeps them.

A label commit (:meth:`TaskDesk.submit`) checks the unit is leased to this annotator (or was
labelled by them: a re-sent label), merges the unit's pixels into the frame's mask file
``<serve_dir>/masks/<frame_id>.png`` (fsynced: what retraining reads), then ingests the summary
through the coordinator (journal fsync) and only then releases the lease and returns.

Task ids are ``<round>.<region_id>.<frame_id>``.
"""
from __future__ import annotations

import io
import json
import os
import time

import numpy as np

LEASES_FILE = "leases.json"


class TaskError(Exception):
    """A request about a unit the desk refuses: ``status`` (404, 409, 422), ``unit`` (task id or
    None) and ``message``."""

    def __init__(self, status: int, message: str, unit: str | None = None):
        super().__init__(status, message, unit)
        self.status, self.message, self.unit = status, message, unit

    def to_dict(self) -> dict:
        return {"error": self.message, "unit": self.unit}


def task_id(round_id: int, frame_id: str, region_id: int) -> str:
    return f"{int(round_id)}.{int(region_id)}.{frame_id}"


def parse_task_id(value: str) -> tuple[int, str, int]:
    """``<round>.<region_id>.<frame_id>`` -> (round, frame_id, region_id); 404 when malformed."""
    parts = str(value).split(".", 2)
    try:
        return int(parts[0]), parts[2], int(parts[1])
    except (IndexError, ValueError):
        raise TaskError(404, f"malformed task id {value!r} (expected <round>.<region>.<frame_id>)",
                        str(value)) from None


def _atomic_write(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TaskDesk:
    """Leases and label commits over a coordinator (handle of the actor, or the plain object).

    ``coordinator``: a Ray actor handle (calls go through ``.remote``) or a plain
    :class:`~rayal.pool.coordinator.PoolCoordinator` (tests, notebooks).
    """

    def __init__(self, coordinator, serve_dir: str, lease_seconds: float, ignore_index: int = 255):
        self.pool = coordinator
        self.serve_dir = os.path.abspath(serve_dir)
        self.mask_dir = os.path.join(self.serve_dir, "masks")
        os.makedirs(self.mask_dir, exist_ok=True)
        self.lease_seconds = float(lease_seconds)
        self.ignore_index = int(ignore_index)
        self._query_cache: dict[int, list] = {}
        path = os.path.join(self.serve_dir, LEASES_FILE)
        saved = json.load(open(path)) if os.path.exists(path) else {}
        self.leases = {k: tuple(v) for k, v in saved.get("leases", {}).items()}   # task -> (who, until)
        self.done = dict(saved.get("done", {}))                                   # task -> who

    # --- plumbing ------------------------------------------------------------------------
    def _call(self, name, *args, **kwargs):
        method = getattr(self.pool, name)
        if hasattr(method, "remote"):
            import ray

            try:
                return ray.get(method.remote(*args, **kwargs))
            except ray.exceptions.RayTaskError as err:
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, BaseException) else err) from None
        return method(*args, **kwargs)

    def _save(self) -> None:
        payload = json.dumps({"leases": self.leases, "done": self.done}).encode()
        _atomic_write(os.path.join(self.serve_dir, LEASES_FILE), payload)

    def current_round(self) -> int | None:
        rounds = self._call("status")["per_round"]
        return max(rounds) if rounds else None

    def _query_order(self, round_id: int) -> list:
        """[(task id, frame_id, region_id, rank, score)] of a round's query, in rank order."""
        if round_id not in self._query_cache:
            q = self._call("query", round_id).sort_by("rank")
            self._query_cache[round_id] = [
                (task_id(round_id, f, r), f, int(r), int(k), s) for f, r, k, s in zip(
                    *(q.column(n).to_pylist() for n in ("frame_id", "region_id", "rank", "score")))]
        return self._query_cache[round_id]

    def _queued(self, round_id: int) -> set:
        units = self._call("units", "queued", round_id)
        return {task_id(round_id, f, r) for f, r in zip(units.column("frame_id").to_pylist(),
                                                        units.column("region_id").to_pylist())}

    def _expire(self, now: float) -> None:
        gone = [t for t, (_, until) in self.leases.items() if until <= now]
        for t in gone:
            del self.leases[t]

    # --- leasing ---------------------------------------------------------------------------
    def lease(self, annotator: str, n: int, now: float | None = None) -> list[dict]:
        """Up to ``n`` tasks for ``annotator``: its own open leases (renewed) first, then queued
        units of the current round nobody holds, in the query's rank order.
        Each: ``task_id, frame_id, region_id, round, rank, score, leased_until`` (epoch s)."""
        annotator = str(annotator)
        if not annotator.strip():
            raise TaskError(422, "annotator must be a non-empty string")
        now = time.time() if now is None else float(now)
        self._expire(now)
        round_id = self.current_round()
        if round_id is None:
            return []
        queued = self._queued(round_id)
        for t in [t for t in self.leases if t not in queued]:   # labelled elsewhere, expired
            del self.leases[t]
        own = [row for row in self._query_order(round_id)
               if self.leases.get(row[0], ("",))[0] == annotator]
        free = [row for row in self._query_order(round_id)
                if row[0] in queued and row[0] not in self.leases]
        until = now + self.lease_seconds
        out = []
        for tid, frame_id, region_id, rank, score in (own + free)[:max(int(n), 0)]:
            self.leases[tid] = (annotator, until)
            out.append({"task_id": tid, "frame_id": frame_id, "region_id": region_id,
                        "round": round_id, "rank": rank, "score": score, "leased_until": until})
        self._save()
        return out

    def claim(self, tid: str, annotator: str, now: float | None = None) -> str:
        """Lease one given task to ``annotator`` (for a tool that hands out tasks itself, as
        Label Studio does): 'resent' (labelled by them before), 'held' (their lease, renewed) or
        'leased'; TaskError 409 when another annotator holds or labelled it, or the unit is not
        queued in its round."""
        now = time.time() if now is None else float(now)
        self._expire(now)
        if self.done.get(tid) == annotator:
            return "resent"
        if tid in self.done:
            raise TaskError(409, "already labelled by another annotator", tid)
        who = self.leases.get(tid, (None,))[0]
        if who is not None and who != annotator:
            raise TaskError(409, f"leased to another annotator, not {annotator!r}", tid)
        round_id = parse_task_id(tid)[0]
        if tid not in self._queued(round_id):
            raise TaskError(409, f"not queued for labelling in round {round_id}", tid)
        self.leases[tid] = (annotator, now + self.lease_seconds)
        self._save()
        return "leased" if who is None else "held"

    def holder(self, tid: str, now: float | None = None) -> str | None:
        """Who holds an unexpired lease on a task (None: nobody)."""
        who, until = self.leases.get(tid, (None, 0.0))
        return who if until > (time.time() if now is None else now) else None

    def leases_of(self, annotator: str | None = None, now: float | None = None) -> dict:
        """Open leases: task id -> (annotator, until); only ``annotator``'s when given."""
        now = time.time() if now is None else float(now)
        return {t: v for t, v in self.leases.items()
                if v[1] > now and (annotator is None or v[0] == annotator)}

    # --- labels ----------------------------------------------------------------------------
    def check(self, tid: str, annotator: str, now: float | None = None) -> str:
        """'new' (leased to ``annotator``) or 'resent' (labelled by them before); else 409."""
        now = time.time() if now is None else float(now)
        if self.done.get(tid) == annotator:
            return "resent"
        who, until = self.leases.get(tid, (None, 0.0))
        if who is None:
            if tid in self.done:
                raise TaskError(409, "already labelled by another annotator", tid)
            raise TaskError(409, f"not leased to {annotator!r} (lease it first)", tid)
        if who != annotator:
            raise TaskError(409, f"leased to another annotator, not {annotator!r}", tid)
        if until <= now:
            raise TaskError(409, f"the lease of {annotator!r} expired; lease the task again", tid)
        return "new"

    def submit(self, tid: str, annotator: str, mask: np.ndarray, region: np.ndarray,
               dominant: int, counts, now: float | None = None) -> dict:
        """Commit one unit's label: ``mask`` (H, W) class ids of the frame, ``region`` (H, W) bool
        pixels of the unit, its summary (``dominant``, per-class ``counts``). Returns the
        coordinator's ingest report plus ``task_id``; raises :class:`TaskError` 409."""
        from rayal.pool.labels import summary_table

        round_id, frame_id, region_id = parse_task_id(tid)
        self.check(tid, annotator, now)
        self._merge_mask(frame_id, mask, region)
        table = summary_table([frame_id], [region_id], [int(dominant)],
                              np.asarray(counts, np.int32)[None, :])
        try:
            report = self._call("ingest", table, round_id)
        except ValueError as err:
            raise TaskError(422, str(err), tid) from None
        self.leases.pop(tid, None)
        self.done[tid] = annotator
        self._save()
        return {"task_id": tid, **report}

    def _merge_mask(self, frame_id: str, mask: np.ndarray, region: np.ndarray) -> None:
        from PIL import Image

        path = os.path.join(self.mask_dir, f"{frame_id}.png")
        if os.path.exists(path):
            full = np.asarray(Image.open(path)).copy()
            if full.shape != mask.shape:
                raise TaskError(422, f"mask size {mask.shape} differs from the frame's stored "
                                f"labels {full.shape}", frame_id)
        else:
            full = np.full(mask.shape, self.ignore_index, np.uint8)
        full[region] = mask[region]
        buf = io.BytesIO()
        Image.fromarray(full.astype(np.uint8), mode="L").save(buf, format="PNG")
        _atomic_write(path, buf.getvalue())


def desk_name(project: str) -> str:
    return f"rayal-serve-desk-{project}"


def get_or_create_desk(config, serve_dir: str, detached: bool = False):
    """The project's desk actor (created on first use; restarts keep its leases on disk)."""
    import ray

    from rayal.pool.coordinator import get_or_create_coordinator

    pool = config.pool
    coordinator = get_or_create_coordinator(pool)
    actor = ray.remote(TaskDesk).options(
        name=desk_name(pool.project), namespace=pool.namespace, num_cpus=0, max_restarts=-1,
        get_if_exists=True, lifetime="detached" if detached else None)
    handle = actor.remote(coordinator, serve_dir, pool.lease_seconds, config.data.ignore_index)
    ray.get(handle.leases_of.remote())   # a desk that cannot start raises its error here
    return handle


__all__ = ["TaskDesk", "TaskError", "task_id", "parse_task_id", "get_or_create_desk", "desk_name"]
