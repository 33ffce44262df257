"""Annotator leases and label commits of one project: the service's ``TaskDesk``.

The coordinator queues a round's query for "annotators" as a whole; the desk hands its units
out to single annotators. It runs as one named, threaded Ray actor per project
(``rayal-serve-desk-<project>``); every lease decision is made under one lock, so two
annotators never hold the same unit. A lease lasts ``pool.lease_seconds``; an expired one
returns the unit to the others; a renewed request of an annotator gets its own open leases
back first.

Leasing asks the coordinator nothing: the desk caches the current round's query and the set
of its queued units, refreshed on round events (:meth:`TaskDesk.note_round`, sent by the job
runner after a round's selection), on the desk's own label commits, and every
``refresh_seconds`` in the background (rounds or labels made outside the service). A lease
costs O(log N) in the round's N units, not O(N): open leases live in a
:class:`~rayal.serve.leasebook.LeaseBook` (indexed by annotator and expiry, soft state appended
to ``<serve_dir>/leases.log``) and free units in a heap of query positions.

Labels are what must be durable. :meth:`TaskDesk.submit` checks the unit is leased to this
annotator (or was labelled by them: a re-sent label), queues the label and waits for a group
commit: one committer takes every label queued meanwhile, appends them to the label log with
one fsync (:mod:`rayal.serve.labellog`), paints them into the frame mask files retraining
reads, ingests their summaries through the coordinator in one call (one journal fsync), and
only then releases the leases and answers each label.

Task ids are ``<round>.<region_id>.<frame_id>``.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from rayal.pool.tasks import TaskError, parse_task_id, task_id
from rayal.serve.leasebook import FreeUnits, LeaseBook

REFRESH_SECONDS = 5.0


class _Pending:
    """One label waiting for its group commit."""

    __slots__ = ("tid", "annotator", "round", "frame_id", "region_id", "mask", "region",
                 "dominant", "counts", "kind", "report", "error", "done")

    def __init__(self, tid, annotator, kind, mask, region, dominant, counts):
        self.round, self.frame_id, self.region_id = parse_task_id(tid)
        self.tid, self.annotator, self.kind = tid, annotator, kind
        self.mask, self.region = mask, np.asarray(region, bool)
        self.dominant, self.counts = int(dominant), np.asarray(counts, np.int32).ravel()
        self.report, self.error, self.done = None, None, False


class TaskDesk:
    """Leases and label commits over a coordinator (handle of the actor, or the plain object).

    ``coordinator``: a Ray actor handle (calls go through ``.remote``) or a plain
    :class:`~rayal.pool.coordinator.PoolCoordinator` (tests, notebooks). Thread-safe.
    ``refresh_seconds``: period of the background refresh of the queued-units cache (None:
    none; the cache then follows :meth:`note_round` and the desk's own commits only).
    """

    def __init__(self, coordinator, serve_dir: str, lease_seconds: float, ignore_index: int = 255,
                 refresh_seconds: float | None = None):
        from rayal.serve.labellog import LabelLog, read_entries, rebuild_masks

        self.pool = coordinator
        self.serve_dir = os.path.abspath(serve_dir)
        self.mask_dir = os.path.join(self.serve_dir, "masks")
        os.makedirs(self.mask_dir, exist_ok=True)
        self.lease_seconds = float(lease_seconds)
        self.ignore_index = int(ignore_index)
        self._cond = threading.Condition(threading.RLock())
        self._pending: list[_Pending] = []
        self._committing = False
        self.book = LeaseBook(self.serve_dir)            # task -> (who, until), indexed
        self.done = dict(self.book.extra.get("done", {}))   # task -> who (older desks kept it here)
        self.summaries: dict[str, tuple] = {}            # task -> (dominant, counts) committed
        entries = read_entries(os.path.join(self.serve_dir, "labels.log"))
        for e in entries:
            self.done[e["task_id"]] = e["annotator"]
            self.summaries[e["task_id"]] = (e["dominant"], tuple(e["counts"]))
        rebuild_masks(entries, self.mask_dir, self.ignore_index)
        self.log = LabelLog(self.serve_dir)
        self._round: int | None = None
        self._order: list = []           # [(task id, frame_id, region_id, rank, score)], rank order
        self._position: dict = {}        # task id -> index in _order
        self._free = FreeUnits()         # positions of units that may be free to lease
        self._queued: set = set()
        self._loaded = False
        self._refresh_lock = threading.Lock()
        if refresh_seconds:
            threading.Thread(target=self._refresh_loop, args=(float(refresh_seconds),),
                             daemon=True, name="rayal-desk-refresh").start()

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
        """The book's changes to its log (call under the lock; soft state, no fsync)."""
        self.book.flush()

    def _queued_in(self, round_id: int) -> set:
        units = self._call("units", "queued", round_id)
        return {task_id(round_id, f, r) for f, r in zip(units.column("frame_id").to_pylist(),
                                                        units.column("region_id").to_pylist())}

    def refresh(self) -> int | None:
        """Reload the current round, its query order and its queued units from the coordinator
        (the lease path never does); returns the current round (None: no round yet)."""
        with self._refresh_lock:
            rounds = self._call("status")["per_round"]
            round_id = max(rounds) if rounds else None
            order, queued = [], set()
            if round_id is not None:
                q = self._call("query", round_id).sort_by("rank")
                order = [(task_id(round_id, f, r), f, int(r), int(k), s) for f, r, k, s in zip(
                    *(q.column(n).to_pylist() for n in ("frame_id", "region_id", "rank", "score")))]
                queued = self._queued_in(round_id)
            with self._cond:
                # labels committed while the coordinator answered stay out of the queued set
                queued -= {t for t in queued if t in self.summaries}
                if round_id != self._round or len(order) != len(self._order):   # a new query
                    self._free = FreeUnits(len(order))
                    self._position = {row[0]: i for i, row in enumerate(order)}
                self._round, self._order, self._queued, self._loaded = round_id, order, queued, True
                stale = [t for t, _ in self.book.items() if t not in queued]
                for t in stale:   # labelled elsewhere, or no longer queued
                    self.book.drop(t)
                if stale:
                    self._save()
            return round_id

    def note_round(self) -> int | None:
        """A round event (a new query was selected): refresh the cache now."""
        return self.refresh()

    def _refresh_loop(self, period: float) -> None:
        import logging

        while True:
            time.sleep(period)
            try:
                self.refresh()
            except Exception as err:  # noqa: BLE001 - coordinator restarting: next period
                logging.getLogger("rayal.serve").warning("desk refresh failed: %s", err)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def current_round(self) -> int | None:
        """The newest round (cached; see :meth:`refresh`)."""
        self._ensure_loaded()
        return self._round

    def _expire(self, now: float) -> bool:
        """Drop expired leases; their units are free again (call under the lock)."""
        gone = self.book.expire(now)
        for t in gone:
            if t in self._position:
                self._free.push(self._position[t])
        return bool(gone)

    def _is_free(self, position: int) -> bool:
        tid = self._order[position][0]
        return tid in self._queued and tid not in self.book

    # --- leasing ---------------------------------------------------------------------------
    def lease(self, annotator: str, n: int, now: float | None = None) -> list[dict]:
        """Up to ``n`` tasks for ``annotator``: its own open leases (renewed) first, then queued
        units of the current round nobody holds, in the query's rank order.
        Each: ``task_id, frame_id, region_id, round, rank, score, leased_until`` (epoch s).
        TaskError 422 for an empty annotator name."""
        annotator = str(annotator)
        if not annotator.strip():
            raise TaskError(422, "annotator must be a non-empty string")
        self._ensure_loaded()
        with self._cond:
            now = time.time() if now is None else float(now)
            self._expire(now)
            round_id, n = self._round, max(int(n), 0)
            if round_id is None or n == 0:
                return []
            own = sorted(self._position[t] for t in self.book.tasks_of(annotator)
                         if t in self._position)
            picked = [self._order[i] for i in own[:n]]
            while len(picked) < n:
                position = self._free.pop_free(self._is_free)
                if position is None:
                    break
                picked.append(self._order[position])
            until = now + self.lease_seconds
            out = []
            for tid, frame_id, region_id, rank, score in picked:
                self.book.grant(tid, annotator, until)
                out.append({"task_id": tid, "frame_id": frame_id, "region_id": region_id,
                            "round": round_id, "rank": rank, "score": score, "leased_until": until})
            if out:
                self._save()
            return out

    def claim(self, tid: str, annotator: str, now: float | None = None) -> str:
        """Lease one given task to ``annotator`` (for a tool that hands out tasks itself, as
        Label Studio does): 'resent' (labelled by them before), 'held' (their lease, renewed) or
        'leased'; TaskError 409 when another annotator holds or labelled it, or the unit is not
        queued in its round."""
        round_id = parse_task_id(tid)[0]
        self._ensure_loaded()
        queued = None if round_id == self._round else self._queued_in(round_id)
        with self._cond:
            now = time.time() if now is None else float(now)
            self._expire(now)
            if self.done.get(tid) == annotator:
                return "resent"
            if tid in self.done:
                raise TaskError(409, "already labelled by another annotator", tid)
            who = (self.book.get(tid) or (None,))[0]
            if who is not None and who != annotator:
                raise TaskError(409, f"leased to another annotator, not {annotator!r}", tid)
            if tid not in (self._queued if queued is None else queued):
                raise TaskError(409, f"not queued for labelling in round {round_id}", tid)
            self.book.grant(tid, annotator, now + self.lease_seconds)
            self._save()
            return "leased" if who is None else "held"

    def holder(self, tid: str, now: float | None = None) -> str | None:
        """Who holds an unexpired lease on a task (None: nobody)."""
        with self._cond:
            who, until = self.book.get(tid) or (None, 0.0)
        return who if until > (time.time() if now is None else now) else None

    def leases_of(self, annotator: str | None = None, now: float | None = None) -> dict:
        """Open leases: task id -> (annotator, until); only ``annotator``'s when given."""
        now = time.time() if now is None else float(now)
        with self._cond:
            return {t: v for t, v in self.book.items()
                    if v[1] > now and (annotator is None or v[0] == annotator)}

    # --- labels ----------------------------------------------------------------------------
    def check(self, tid: str, annotator: str, now: float | None = None) -> str:
        """'new' (leased to ``annotator``) or 'resent' (labelled by them before); else 409."""
        now = time.time() if now is None else float(now)
        with self._cond:
            if self.done.get(tid) == annotator:
                return "resent"
            who, until = self.book.get(tid) or (None, 0.0)
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
        pixels of the unit, its summary (``dominant``, per-class ``counts`` (C,)). Returns once
        the label log and the pool's journal are fsynced: the coordinator's ingest report for
        this unit plus ``task_id``. TaskError 409 (not leased to ``annotator``), 422 (refused)."""
        item = _Pending(tid, annotator, None, mask, region, dominant, counts)
        if not item.region.any():
            raise TaskError(422, "the unit has no pixels", tid)
        with self._cond:
            item.kind = self.check(tid, annotator, now)
            self._pending.append(item)
            while not item.done and self._committing:
                self._cond.wait()
            lead = not item.done
            if lead:
                self._committing = True
        if lead:
            try:
                while not item.done:
                    self._commit_next()
            finally:
                with self._cond:
                    self._committing = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        return {"task_id": tid, **item.report}

    def _commit_next(self) -> None:
        """Take the queued labels (one per task: a repeat waits for the next batch) and commit
        them as one group; marks each done with its report or error."""
        with self._cond:
            batch, seen, rest = [], set(), []
            for item in self._pending:
                (rest if item.tid in seen else batch).append(item)
                seen.add(item.tid)
            self._pending = rest
        try:
            self._commit(batch)
        except BaseException as err:
            for item in batch:
                if not item.done:
                    item.error, item.done = err, True
            if not isinstance(err, Exception):
                raise
        finally:
            with self._cond:
                self._cond.notify_all()

    def _commit(self, batch: list[_Pending]) -> None:
        from rayal.pool.labels import summary_table
        from rayal.serve.labellog import apply_entry, load_mask, make_entry, write_mask

        frames: dict[str, np.ndarray] = {}
        ok = []
        for item in batch:   # the frame's stored labels must have the mask's size
            path = os.path.join(self.mask_dir, f"{item.frame_id}.png")
            try:
                if item.frame_id not in frames:
                    frames[item.frame_id] = load_mask(path, item.mask.shape, self.ignore_index)
                elif frames[item.frame_id].shape != item.mask.shape:
                    raise ValueError(f"mask size {item.mask.shape} differs from the frame's "
                                     f"labels {frames[item.frame_id].shape}")
            except ValueError as err:
                item.error, item.done = TaskError(422, str(err), item.tid), True
                continue
            ok.append(item)
        entries = [make_entry(i.tid, i.annotator, i.mask, i.region, i.dominant, i.counts)
                   for i in ok]
        self.log.append(entries)                                   # fsync 1: the label log
        for item, entry in zip(ok, entries):
            apply_entry(frames[item.frame_id], entry)
        for frame_id in {i.frame_id for i in ok}:
            write_mask(os.path.join(self.mask_dir, f"{frame_id}.png"), frames[frame_id])
        reports = {}
        for round_id in sorted({i.round for i in ok}):             # fsync 2: the journal
            group = [i for i in ok if i.round == round_id]
            table = summary_table([i.frame_id for i in group], [i.region_id for i in group],
                                  [i.dominant for i in group], np.stack([i.counts for i in group]))
            try:
                total = self._call("ingest", table, round_id)
                reports.update(self._split_report(group, total))
            except ValueError:   # find the refused label(s): one ingest each
                reports.update(self._one_by_one(group))
        with self._cond:
            for item in ok:
                report = reports[item.tid]
                if isinstance(report, TaskError):
                    item.error = report
                else:
                    item.report = report
                    self.book.drop(item.tid)
                    self.done[item.tid] = item.annotator
                    self.summaries[item.tid] = (item.dominant, tuple(item.counts.tolist()))
                    self._queued.discard(item.tid)
                item.done = True
            self._save()

    def _split_report(self, group: list[_Pending], total: dict) -> dict:
        """Per-unit reports of a group ingested as one: what the desk expects of each (new ->
        labeled, re-sent -> unchanged / updated); when the pool's totals differ (a unit
        quarantined or labelled outside the service), each gets the group's totals."""
        expected = {}
        for item in group:
            before = self.summaries.get(item.tid)
            same = before == (item.dominant, tuple(item.counts.tolist()))
            key = "labeled" if item.kind == "new" and before is None else (
                "unchanged" if same else "updated")
            expected[item.tid] = {"labeled": 0, "updated": 0, "unchanged": 0,
                                  "skipped_quarantined": 0, key: 1}
        sums = {k: sum(r[k] for r in expected.values()) for k in total}
        if sums == total:
            return expected
        return {tid: {**total, "batch": len(group)} for tid in expected}

    def _one_by_one(self, group: list[_Pending]) -> dict:
        from rayal.pool.labels import summary_table

        out, void = {}, []
        for item in group:
            table = summary_table([item.frame_id], [item.region_id], [item.dominant],
                                  item.counts[None, :])
            try:
                out[item.tid] = self._call("ingest", table, item.round)
            except ValueError as err:
                out[item.tid] = TaskError(422, str(err), item.tid)
                void.append({"void": item.tid})
        self.log.append(void)   # replay must not paint labels the pool refused
        return out


def desk_name(project: str) -> str:
    return f"rayal-serve-desk-{project}"


def get_or_create_desk(config, serve_dir: str, detached: bool = False):
    """The project's desk actor (created on first use; threaded: leases are answered while a
    group commit waits on its fsyncs; a restart keeps its leases and replays its label log)."""
    import ray

    from rayal.pool.coordinator import get_or_create_coordinator

    pool = config.pool
    coordinator = get_or_create_coordinator(pool)
    actor = ray.remote(TaskDesk).options(
        name=desk_name(pool.project), namespace=pool.namespace, num_cpus=0, max_restarts=-1,
        max_concurrency=64, get_if_exists=True, lifetime="detached" if detached else None)
    handle = actor.remote(coordinator, serve_dir, pool.lease_seconds, config.data.ignore_index,
                          refresh_seconds=REFRESH_SECONDS)
    ray.get(handle.leases_of.remote())   # a desk that cannot start raises its error here
    return handle


__all__ = ["TaskDesk", "TaskError", "task_id", "parse_task_id", "get_or_create_desk", "desk_name"]
