"""``PoolCoordinator``: the only writer of a pool's state, run as a detached, restartable Ray actor.

Each mutation is planned on the current state (validation, strategy run),
applied to a copy, appended to the journal (fsynced) and only then made the
current state and acknowledged. On (re)start the actor rebuilds its state from
the last snapshot plus the journal, so a crash or ``ray.kill`` loses nothing
that was acknowledged; with ``max_task_retries=-1`` Ray re-sends the calls that
were in flight, and because every mutation is idempotent (same frames, same
round id, same label summary) a re-sent or caller-retried call changes nothing.
Re-sent calls may run in another order than they were sent: mutations of
disjoint units commute, but wait for a ``select`` before sending the next one.

The class is plain Python: ``PoolCoordinator(pool_config)`` works in-process
too (a notebook, a test); :func:`get_or_create_coordinator` runs it as the
named actor ``rayal-pool-<project>``.
"""
from __future__ import annotations

import atexit
import logging
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray

from rayal.config.sections import PoolConfig
from rayal.data import has_scheme, join_uri, resolve_filesystem
from rayal.pool.journal import Journal, JournalCorruptError
from rayal.pool.lock import PoolLockedError, StateDirLock, current_holder
from rayal.core.plugins import load_plugins  # noqa: F401  (re-exported: rayal.pool.load_plugins)
from rayal.pool.state import PoolState, Record, apply_record
from rayal.selection.base import STATUS_NAMES, Budget, PoolView, ScoreTables, split_keys

log = logging.getLogger("rayal.pool")


def coordinator_name(project: str) -> str:
    return f"rayal-pool-{project}"


def pool_state_dir(pool: PoolConfig) -> str:
    """Where a project's journal and snapshots live: ``<state_dir>/<project>`` (absolute)."""
    root = pool.state_dir if has_scheme(pool.state_dir) else os.path.abspath(pool.state_dir)
    return join_uri(root, pool.project)


def to_budget(budget) -> Budget:
    """An int (units), a ``{"units"|"cost": ...}`` dict or a :class:`Budget`."""
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, dict):
        return Budget(**budget)
    return Budget(units=int(budget))


def units_table(state: PoolState, status=None, round_id: int | None = None) -> pa.Table:
    """Touched units (``frame_id, region_id, status, round, owner, expiry, dominant_class,
    reason``), optionally only one status (name or code) and one round."""
    codes = state.cols["status"]
    mask = np.ones(len(state.keys), bool)
    if status is not None:
        mask &= codes == (STATUS_NAMES.index(status) if isinstance(status, str) else int(status))
    if round_id is not None:
        mask &= state.cols["round"] == int(round_id)
    fi, rid = split_keys(state.keys[mask])
    owners = np.asarray(state.owners + ("",), dtype=object)   # id -1 -> ""
    reasons = np.asarray(state.reasons + ("",), dtype=object)
    return pa.table({
        "frame_id": state.frame_ids.take(pa.array(fi, pa.int64())),
        "region_id": rid.astype(np.int32),
        "status": pa.array(np.asarray(STATUS_NAMES, dtype=object)[codes[mask]].tolist(), pa.string()),
        "round": state.cols["round"][mask],
        "owner": pa.array(owners[state.cols["owner"][mask]].tolist(), pa.string()),
        "expiry": state.cols["expiry"][mask],
        "dominant_class": state.cols["dominant"][mask],
        "reason": pa.array(reasons[state.cols["reason"][mask]].tolist(), pa.string())})


class PoolCoordinator:
    """Owns one pool: recovers it from ``<state_dir>/<project>`` and journals every change.

    It first takes the state directory's one-writer lease (:mod:`rayal.pool.lock`) and holds
    it, renewed, until :meth:`close`; another holder raises :class:`PoolLockedError` naming it.
    ``defer_errors`` (the actor) keeps a failed start (lease held elsewhere, corrupt journal,
    store refusing) and raises it from every call instead of from the constructor, so the
    caller gets the exception itself rather than Ray's ActorDiedError.
    """

    def __init__(self, pool: PoolConfig | dict, *, defer_errors: bool = False):
        self.config = PoolConfig.model_validate(pool)
        self.state_dir = pool_state_dir(self.config)
        try:
            self._open()
        except (PoolLockedError, JournalCorruptError, OSError, ValueError) as err:
            if not defer_errors:
                raise
            self._open_error = err
            log.error("pool %s did not start: %s", self.config.project, err)

    def __getattr__(self, name):
        # only reached for attributes that are missing: after a deferred failed start
        err = self.__dict__.get("_open_error")
        if err is not None and name in ("state", "journal", "report", "lock", "_since_snapshot"):
            raise err
        raise AttributeError(name)

    def _open(self) -> None:
        holder = current_holder(coordinator_name(self.config.project), self.config.namespace)
        self.lock = StateDirLock(self.state_dir, holder, self.config.lock_ttl)
        self.lock.acquire()
        try:
            self.journal = Journal(self.state_dir, fence=self.lock.check)
            state, self._since_snapshot, self.report = _replayed(self.journal)
            self.state = state
            if state is None:
                self._commit(Record("create", {"unit": self.config.unit}))
            elif state.unit != self.config.unit:
                raise ValueError(f"pool {self.config.project!r} in {self.state_dir} has unit "
                                 f"{state.unit!r}; the config says {self.config.unit!r}")
        except BaseException:
            self.lock.release()
            raise
        self.lock.start_renewal()
        if self.report.torn or self.report.skipped_snapshots:
            log.warning("pool %s recovered: %s", self.config.project, self.report.to_dict())

    def _commit(self, record: Record | None) -> None:
        """Apply (validates), journal (durable), then publish; snapshot every N records."""
        if record is None:
            return
        new = apply_record(self.state, record, self.journal.last_seq + 1)
        self.journal.append(record)
        self.state = new
        self._since_snapshot += 1
        if self._since_snapshot >= self.config.snapshot_every:
            self.snapshot()

    # --- mutations ---------------------------------------------------------------------------
    def register(self, items) -> dict:
        """Add frames (``frame_id, uri[, mask_uri]``); known identical frames are skipped."""
        record = self.state.plan_register(items)
        self._commit(record)
        return {"registered": 0 if record is None else record.body.num_rows,
                "frames": self.state.num_frames}

    def select(self, strategy: str, params: dict | None, budget, round_id: int, score_dir,
               seed: int = 0, *, owner: str = "annotators", now: float | None = None,
               plugins=()) -> pa.Table:
        """Run ``strategy`` on ``score_dir`` (a directory or :class:`ScoreTables`) and queue the
        query for ``round_id`` with a lease; a round already selected returns its query as is."""
        load_plugins(plugins)
        tables = score_dir if isinstance(score_dir, ScoreTables) else ScoreTables.from_dir(score_dir)
        record, query = self.state.plan_select(
            strategy, params, to_budget(budget), int(round_id), tables, int(seed),
            now=time.time() if now is None else float(now), owner=owner,
            lease_seconds=self.config.lease_seconds)
        self._commit(record)
        return query

    def ingest(self, labels, round_id: int | None = None) -> dict:
        """Label summaries -> counts of labelled / updated / unchanged / skipped units."""
        record, report = self.state.plan_ingest(labels, round_id)
        self._commit(record)
        return report

    def quarantine(self, frame_ids, region_ids=-1, reasons="quarantined") -> dict:
        """Quarantine units (region_id -1: whole frames) with a reason each."""
        n = len(frame_ids)
        record, report = self.state.plan_quarantine(
            frame_ids, np.broadcast_to(np.asarray(region_ids, np.int64), (n,)),
            np.broadcast_to(np.asarray(reasons, dtype=object), (n,)))
        self._commit(record)
        return report

    def expire_leases(self, now: float | None = None) -> int:
        """Queued units whose lease has ended go back to unlabelled; returns how many."""
        record = self.state.plan_expire(time.time() if now is None else float(now))
        self._commit(record)
        return 0 if record is None else record.header["count"]

    # --- reads ------------------------------------------------------------------------------
    def status(self, units_per_frame: int | None = None) -> dict:
        return self.state.status_counts(units_per_frame)

    def view(self) -> PoolView:
        return self.state.view()

    def frames(self, frame_ids=None) -> pa.Table:
        """Registered frames (all, or those listed that exist)."""
        if frame_ids is None:
            return self.state.frames
        idx = self.state.frame_index(frame_ids)
        return self.state.frames.take(pa.array(idx[idx >= 0]))

    def units(self, status=None, round_id: int | None = None) -> pa.Table:
        return units_table(self.state, status, round_id)

    def query(self, round_id: int) -> pa.Table:
        return self.state.query(round_id)

    def digest(self) -> str:
        return self.state.digest()

    def recovery_report(self) -> dict:
        return self.report.to_dict()

    def describe(self) -> dict:
        """Project, unit, state dir, journal seq, pid and the lease this coordinator holds."""
        return {"project": self.config.project, "unit": self.state.unit,
                "state_dir": self.state_dir, "seq": self.state.seq, "pid": os.getpid(),
                "lease": dict(self.lock.holder)}

    # --- maintenance ------------------------------------------------------------------------
    def snapshot(self) -> str:
        """Write a snapshot now (also done every ``pool.snapshot_every`` records)."""
        path = self.journal.write_snapshot(self.state)
        self._since_snapshot = 0
        return path

    def close(self, snapshot: bool = True) -> None:
        """Snapshot (optionally), close the journal and release the lease (planned shutdown)."""
        if snapshot:
            self.snapshot()
        self.journal.close()
        self.lock.release()


def get_or_create_coordinator(pool: PoolConfig):
    """The project's detached coordinator actor, created (and recovered) on first use.

    Must run after ``ray.init``. The actor asks for no CPU, restarts without limit and
    Ray retries its in-flight calls after a restart. An actor of the same name that runs
    on another state directory or unit is an error. A coordinator that cannot start raises
    its own error: :class:`PoolLockedError` (another Ray cluster's coordinator holds the
    state dir), :class:`JournalCorruptError`, a StorageError.
    """
    pool = PoolConfig.model_validate(pool)
    actor = ray.remote(PoolCoordinator).options(
        name=coordinator_name(pool.project), namespace=pool.namespace, lifetime="detached",
        max_restarts=-1, max_task_retries=-1, num_cpus=0, get_if_exists=True)
    handle = actor.remote(pool.model_dump(), defer_errors=True)
    try:
        info = ray.get(handle.describe.remote())
    except ray.exceptions.RayTaskError as err:
        # a failed start (lease held by another cluster, corrupt journal): raise the error
        # itself and free the name, so the next command starts a fresh coordinator
        cause = getattr(err, "cause", None)
        ray.kill(handle, no_restart=True)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    _release_at_exit(pool)
    expected = pool_state_dir(pool)
    if info["state_dir"] != expected or info["unit"] != pool.unit:
        raise ValueError(f"coordinator {coordinator_name(pool.project)!r} already runs on "
                         f"{info['state_dir']} (unit {info['unit']}), not {expected} (unit {pool.unit})")
    return handle


_RELEASE_AT_EXIT: set = set()


def _release_at_exit(pool: PoolConfig) -> None:
    """A Ray this process started ends with it, and so does the coordinator in it: release the
    state dir's lease first (atexit runs this before Ray's own shutdown), so the next command,
    with its own local Ray, need not wait for the lease to expire."""
    node = getattr(ray._private.worker, "_global_node", None)
    key = (pool.project, pool.namespace)
    if node is None or not node.head or key in _RELEASE_AT_EXIT:
        return   # connected to a cluster: the coordinator lives on and keeps its lease
    _RELEASE_AT_EXIT.add(key)

    def release():
        if ray.is_initialized():
            try:
                shutdown_coordinator(pool, snapshot=False)
            except Exception as err:  # noqa: BLE001 - the lease then expires by itself
                log.warning("pool %s: releasing the coordinator at exit failed: %s", pool.project, err)

    atexit.register(release)


def shutdown_coordinator(pool: PoolConfig, snapshot: bool = True) -> bool:
    """Snapshot (optionally), release the lease and kill the project's actor; False if none runs."""
    pool = PoolConfig.model_validate(pool)
    try:
        handle = ray.get_actor(coordinator_name(pool.project), namespace=pool.namespace)
    except ValueError:
        return False
    try:
        ray.get(handle.close.remote(snapshot))    # releases the state dir's lease
    except ray.exceptions.RayError:
        pass                                      # it never started: it holds nothing
    finally:
        ray.kill(handle, no_restart=True)
    return True


def read_state(root: str) -> PoolState | None:
    """The pool state under ``root`` (a project's state directory) as its snapshots and journal
    hold it, read without the state-dir lease and without writing: for finished runs and
    copied folders (a live coordinator may be ahead of what it reads). None: an empty journal.

    Raises:
        FileNotFoundError: ``root`` holds no journal.
        JournalCorruptError: as recovery does (a torn tail is only skipped).
    """
    fs, path = resolve_filesystem(join_uri(root, "journal"))
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{root}: no pool journal here (expected {root}/journal)")
    return _replayed(Journal(root), repair=False)[0]


def _replayed(journal: Journal, repair: bool = True):
    """(state recovered and replayed, records replayed, RecoveryReport) of one journal."""
    state, replay, report = journal.recover(repair)
    for seq, record in replay:
        state = apply_record(state, record, seq)
    return state, len(replay), report
