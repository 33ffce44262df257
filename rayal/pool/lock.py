"""One writer per pool state directory: a renewable lease object, ``<state_dir>/lease.json``.

Within one Ray cluster the named coordinator actor already serialises writers; this lease
keeps two clusters (two ``rayal pool`` commands that each start a local Ray, two drivers on
two clusters sharing an ``s3://`` state dir) from both writing one journal.

The lease is JSON naming its holder (host, pid, Ray cluster session, job, actor, since when)
and an expiry. Every change to it is a compare-and-swap:

* local paths: the read-decide-write runs under ``fcntl.flock`` on ``<state_dir>/lease.lock``
  (the lease itself is written to a temporary file and renamed, so readers see a whole one);
* ``s3://``: a conditional PUT, ``If-None-Match: *`` to create and ``If-Match: <etag>`` to
  renew or take over (needs ``botocore``, which ``rayal[s3]`` / boto3 bring);
* other stores (``gs://``, fsspec schemes): write then read back - best effort, with a warning.

A holder renews its lease every ``ttl / 4`` seconds from a background thread. A lease whose
``expires_at`` has passed, or whose holder process is gone from this very machine (same host,
boot and pid namespace), may be taken over; its own holder (same process, or the same named
actor of the same Ray cluster after a restart) re-acquires it at once. Expiry compares wall
clocks, so machines sharing a state dir should keep their clocks within a few seconds.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from rayal.data import has_scheme, join_uri, makedirs, resolve_filesystem
from rayal.errors import PoolError

log = logging.getLogger("rayal.pool")

LEASE_NAME = "lease.json"



def parse_lease(data: bytes) -> tuple[dict, str | None]:
    """Lease file bytes -> (lease, its version token); an unreadable file is ``({}, "unreadable")``."""
    try:
        lease = json.loads(data)
    except ValueError:
        return {}, "unreadable"
    return lease, lease.get("token")

class PoolLockedError(PoolError):
    """Another writer holds the pool's state directory (the message names it)."""

    def __init__(self, state_dir: str, holder: dict | None, what: str = "is in use by"):
        self.state_dir, self.holder, self.what = state_dir, dict(holder or {}), what
        super().__init__(f"pool state dir {state_dir} {what} another writer: "
                         f"{describe_holder(self.holder)}")

    def __reduce__(self):   # crosses process boundaries inside Ray task errors
        return type(self), (self.state_dir, self.holder, self.what)


class LeaseLostError(PoolLockedError):
    """This writer's lease was taken over (it stalled past its expiry); it must stop writing."""


def _machine() -> str:
    """This host, boot and pid namespace: pids are comparable only between equal values."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else open(path).read().strip())
        except OSError:
            return ""   # cannot tell: never judge a holder dead by its pid
    return "|".join(parts)


def current_holder(actor_name: str | None = None, namespace: str | None = None) -> dict:
    """Who this process is: host, pid and, inside a Ray actor, its cluster, job and name.

    ``holder`` is the identity that may re-acquire its own lease: the Ray cluster session +
    actor id inside an actor (a restarted actor keeps its id: the same holder), else the
    machine + pid. ``actor_name`` / ``namespace`` only describe it.
    """
    info = {"host": socket.gethostname(), "pid": os.getpid(), "machine": _machine()}
    try:
        import ray

        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            node = ray._private.worker.global_worker.node
            info.update(ray_cluster=getattr(node, "session_name", None), ray_gcs=ctx.gcs_address,
                        ray_job=ctx.get_job_id())
            if ctx.get_actor_id() is not None:   # an actor keeps its id across restarts
                name = ctx.get_actor_name() or actor_name or "unnamed"
                info["actor"] = f"{namespace}/{name}" if namespace else name
                info["actor_id"] = ctx.get_actor_id()
    except Exception:  # noqa: BLE001 - Ray details are descriptive only
        pass
    if info.get("actor_id") and info.get("ray_cluster"):
        info["holder"] = f"ray:{info['ray_cluster']}:{info['actor_id']}"
    else:
        info["holder"] = f"proc:{info['machine'] or info['host']}:{info['pid']}"
    return info


def describe_holder(lease: dict) -> str:
    """One line: who holds ``lease``, since when, until when."""
    if not lease:
        return "unknown holder (unreadable lease)"
    parts = [f"pid {lease.get('pid', '?')} on host {lease.get('host', '?')}"]
    if lease.get("ray_cluster"):
        parts.append(f"Ray cluster {lease['ray_cluster']} (GCS {lease.get('ray_gcs', '?')})")
    if lease.get("actor"):
        parts.append(f"actor {lease['actor']}")
    if lease.get("ray_job"):
        parts.append(f"job {lease['ray_job']}")
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(t)))  # noqa: E731
    if lease.get("acquired_at"):
        parts.append(f"since {stamp(lease['acquired_at'])}")
    if lease.get("expires_at"):
        left = float(lease["expires_at"]) - time.time()
        parts.append(f"lease expires at {stamp(lease['expires_at'])}"
                     + (f" (in {left:.0f} s)" if left > 0 else " (expired)"))
    return ", ".join(parts)


def _pid_gone(lease: dict) -> bool:
    machine = lease.get("machine")
    if not machine or machine != _machine():
        return False
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


def is_stale(lease: dict, now: float | None = None) -> bool:
    """True if ``lease`` may be taken over: expired, or its holder process is gone."""
    now = time.time() if now is None else now
    try:
        expired = float(lease["expires_at"]) <= now
    except (KeyError, TypeError, ValueError):
        return True   # not a lease rayal wrote whole: nobody can renew it
    return expired or _pid_gone(lease)


# --- compare-and-swap stores: get() -> (lease | {} if unreadable | None, version) -----------------
class _LocalStore:
    def __init__(self, root: str):
        self.dir = root
        self.path = os.path.join(root, LEASE_NAME)

    @contextlib.contextmanager
    def _mutex(self):
        import fcntl

        fd = os.open(os.path.join(self.dir, "lease.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing drops the flock

    def _read(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None, None
        return parse_lease(data)

    def get(self):
        return self._read()

    def _write(self, lease: dict) -> str:
        tmp = f"{self.path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(json.dumps(lease).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return lease["token"]

    def put(self, lease: dict, version: str | None) -> str | None:
        """Write ``lease`` if the current version is ``version`` (None: absent); else None."""
        with self._mutex():
            if self._read()[1] != version:
                return None
            return self._write(lease)

    def delete(self, version: str) -> None:
        with self._mutex():
            if self._read()[1] == version:
                os.unlink(self.path)


class _S3Store:
    """Conditional PUT / DELETE through botocore (pyarrow's S3 has no conditional writes)."""

    def __init__(self, uri: str):
        import botocore.session

        parts = urlsplit(uri)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.bucket, self.key = parts.netloc, f"{parts.path.strip('/')}/{LEASE_NAME}".lstrip("/")
        endpoint = query.get("endpoint_override")
        if endpoint and "://" not in endpoint:
            endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
        self.client = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, region_name=query.get("region"))
        from botocore.exceptions import ClientError

        self.ClientError = ClientError

    def _code(self, err) -> str:
        return str(err.response.get("Error", {}).get("Code", ""))

    def get(self):
        try:
            out = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.ClientError as err:
            if self._code(err) in ("NoSuchKey", "404"):
                return None, None
            raise OSError(f"s3://{self.bucket}/{self.key}: reading the lease failed: {err}") from err
        etag = out["ETag"]
        try:
            return json.loads(out["Body"].read()), etag
        except ValueError:
            return {}, etag

    def put(self, lease: dict, version: str | None) -> str | None:
        cond = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key,
                                          Body=json.dumps(lease).encode(), **cond)["ETag"]
        except self.ClientError as err:
            if self._code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict",
                                   "409", "NoSuchKey", "404"):
                return None
            raise OSError(f"s3://{self.bucket}/{self.key}: writing the lease failed: {err}") from err

    def delete(self, version: str) -> None:
        if self.get()[1] == version:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)


class _BestEffortStore:
    """Stores without conditional writes: write, then read back whose lease won."""

    def __init__(self, root: str):
        self.uri = join_uri(root, LEASE_NAME)
        self.fs, self.path = resolve_filesystem(self.uri)
        log.warning("%s: this store has no conditional writes; the pool's one-writer lease is "
                    "best effort", root)

    def get(self):
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = f.read()
        except FileNotFoundError:
            return None, None
        return parse_lease(data)

    def put(self, lease: dict, version: str | None) -> str | None:
        if self.get()[1] != version:
            return None
        with self.fs.open_output_stream(self.path) as f:
            f.write(json.dumps(lease).encode())
        return lease["token"] if self.get()[1] == lease["token"] else None

    def delete(self, version: str) -> None:
        if self.get()[1] == version:
            self.fs.delete_file(self.path)


def _store(state_dir: str):
    if not has_scheme(state_dir) or state_dir.startswith("file://"):
        path = resolve_filesystem(state_dir)[1]
        os.makedirs(path, exist_ok=True)
        return _LocalStore(path)
    makedirs(state_dir)
    if urlsplit(state_dir).scheme.lower() == "s3":
        try:
            return _S3Store(state_dir)
        except ImportError:
            pass
    return _BestEffortStore(state_dir)


def read_lease(state_dir: str) -> dict | None:
    """The current lease of ``state_dir`` (None when nobody holds it)."""
    return _store(state_dir).get()[0]


class StateDirLock:
    """The lease on one pool state directory, for one holder (see the module docstring).

    ``acquire()`` raises :class:`PoolLockedError` naming the holder; ``check()`` raises
    :class:`LeaseLostError` once another writer has taken the lease over.
    """

    def __init__(self, state_dir: str, holder: dict | None = None, ttl: float = 60.0):
        self.state_dir, self.ttl = state_dir, float(ttl)
        self.holder = dict(holder or current_holder())
        self.store = _store(state_dir)
        self._version: str | None = None
        self._lease: dict = {}
        self._valid_until = 0.0          # time.monotonic() until which the lease is surely ours
        self._lost: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._version is not None and self._lost is None

    def _new_lease(self, since: float | None = None) -> dict:
        now = time.time()
        return {**self.holder, "token": uuid.uuid4().hex, "acquired_at": since or now,
                "renewed_at": now, "expires_at": now + self.ttl, "ttl_s": self.ttl}

    def acquire(self) -> dict:
        """Take the lease (create, re-acquire our own, or take over a stale one)."""
        current = None
        for _ in range(5):
            start = time.monotonic()
            lease = self._new_lease()
            version = self.store.put(lease, None)
            if version is None:
                current, found = self.store.get()
                if current is None:
                    continue                                  # released meanwhile: try again
                ours = current.get("holder") == self.holder["holder"]
                if not (ours or is_stale(current)):
                    raise PoolLockedError(self.state_dir, current)
                if current and not ours:
                    log.warning("pool state dir %s: taking over the stale lease of %s",
                                self.state_dir, describe_holder(current))
                version = self.store.put(lease, found)
                if version is None:
                    continue                                  # someone else moved first
            self._version, self._lease, self._lost = version, lease, None
            self._valid_until = start + self.ttl * 0.9
            return lease
        raise PoolLockedError(self.state_dir, current, "is contended by")

    def renew(self) -> bool:
        """Extend the lease by ``ttl``; False (and :meth:`check` raises) if it was taken over."""
        with self._mutex:
            if not self.held:
                return False
            start = time.monotonic()
            lease = {**self._lease, "renewed_at": time.time(), "expires_at": time.time() + self.ttl,
                     "token": uuid.uuid4().hex}
            version = self.store.put(lease, self._version)
            if version is None:
                self._lost = self.store.get()[0] or {}
                log.error("pool state dir %s: lease lost to %s", self.state_dir,
                          describe_holder(self._lost))
                return False
            self._version, self._lease, self._valid_until = version, lease, start + self.ttl * 0.9
            return True

    def check(self) -> None:
        """Raise :class:`LeaseLostError` unless the lease is still ours (renews when due)."""
        if self._lost is None and self._version is not None and time.monotonic() >= self._valid_until:
            self.renew()
        if self._lost is not None or self._version is None:
            raise LeaseLostError(self.state_dir, self._lost, "was taken over by")

    def start_renewal(self) -> None:
        """Renew every ``ttl / 4`` seconds in a daemon thread until :meth:`release`."""
        def loop():
            while not self._stop.wait(self.ttl / 4):
                try:
                    if not self.renew():
                        return
                except Exception as err:  # noqa: BLE001 - a store hiccup: the next renewal retries
                    log.warning("pool state dir %s: renewing the lease failed: %s", self.state_dir, err)

        if self._thread is None:
            self._thread = threading.Thread(target=loop, name="rayal-pool-lease", daemon=True)
            self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        with self._mutex:
            if self.held:
                try:
                    self.store.delete(self._version)
                except Exception as err:  # noqa: BLE001 - it expires by itself
                    log.warning("pool state dir %s: releasing the lease failed: %s", self.state_dir, err)
            self._version = None
