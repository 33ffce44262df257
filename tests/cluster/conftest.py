"""A real Ray head on loopback for the cluster tests, started and stopped by the test session.

``ray start --head --block`` runs in its own session (``start_new_session``) with
every port chosen free, its own ``--temp-dir`` and token authentication
(``RAY_AUTH_MODE=token`` with a random ``RAY_AUTH_TOKEN``), so it shares nothing
with other Ray instances on the machine. It is stopped by signalling that
process (which tears its cluster down) and then killing, by pid, any process
left in its session or carrying its token: never ``ray stop``, which would stop
every Ray on the machine.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayHead:
    gcs_address: str                 # "ip:port", for ray.init / ray.address
    dashboard: str                   # "http://127.0.0.1:port", the Jobs API
    token: str
    temp_dir: Path
    proc: subprocess.Popen
    env: dict = field(default_factory=dict)   # for client processes: token, PATH, no RAY_ADDRESS

    def run(self, *args, timeout: float = 300, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        """A subprocess in the repo root with the cluster's client environment."""
        return subprocess.run([str(a) for a in args], cwd=REPO, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, **kw)

    def rayal(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.run(BIN / "rayal", *args, **kw)

    def log_tail(self, n: int = 40) -> str:
        log = self.temp_dir / "ray-start.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""


def _client_env(token: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    return env


def _jobs_api_ready(url: str, token: str) -> bool:
    request = urllib.request.Request(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_head(num_cpus: int = 4, timeout: float = 180) -> RayHead:
    token = secrets.token_hex(16)
    temp_dir = Path(tempfile.mkdtemp(prefix="rayal-ct-", dir="/tmp"))  # short: socket paths < 108 chars
    env = _client_env(token)
    gcs, dash = free_port(), free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
           "--port", gcs, "--dashboard-port", dash, "--dashboard-host", "127.0.0.1",
           "--include-dashboard", "true", "--ray-client-server-port", free_port(),
           "--dashboard-agent-listen-port", free_port(), "--dashboard-agent-grpc-port", free_port(),
           "--runtime-env-agent-port", free_port(), "--metrics-export-port", free_port(),
           "--num-cpus", num_cpus, "--object-store-memory", 200 * 2**20, "--temp-dir", temp_dir]
    with open(temp_dir / "ray-start.log", "wb") as log:
        proc = subprocess.Popen([str(c) for c in cmd], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    head = RayHead("", f"http://127.0.0.1:{dash}", token, temp_dir, proc, env)
    deadline = time.monotonic() + timeout
    address_file = temp_dir / "ray_current_cluster"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop_head(head)
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{head.log_tail()}")
        if address_file.exists() and _jobs_api_ready(head.dashboard, token):
            head.gcs_address = address_file.read_text().strip()
            return head
        time.sleep(1)
    stop_head(head)
    raise RuntimeError(f"Ray head not ready after {timeout} s:\n{head.log_tail()}")


def _ours(proc: psutil.Process, session: int, token: str) -> bool:
    try:
        if os.getsid(proc.pid) == session:
            return True
        return proc.environ().get("RAY_AUTH_TOKEN") == token   # job drivers may start a new session
    except (psutil.Error, ProcessLookupError, PermissionError):
        return False


def stop_head(head: RayHead, grace: float = 15) -> None:
    """Stop only this cluster: SIGTERM to ``ray start --block`` (it stops its processes), then
    SIGKILL, by pid, whatever of its session or carrying its token is left."""
    session = head.proc.pid   # start_new_session: the session id is the leader's pid
    if head.proc.poll() is None:
        head.proc.send_signal(signal.SIGTERM)
        try:
            head.proc.wait(grace)
        except subprocess.TimeoutExpired:
            head.proc.kill()
            head.proc.wait(10)
    me = os.getpid()
    left = [p for p in psutil.process_iter() if p.pid != me and _ours(p, session, head.token)]
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head():
    """One token-authenticated Ray head for the cluster tests (4 CPUs, 200 MB object store)."""
    head = start_head()
    try:
        yield head
    finally:
        stop_head(head)
