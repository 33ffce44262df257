"""Shared fixtures: one local Ray per test session (fractional CPUs, small object store);
one intra-op thread for the modules that run tiny models; a real S3 API on loopback (moto's
server) for the object-storage tests."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(address="local", num_cpus=4, object_store_memory=200 * 2**20,
             include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture
def session_ray_env(ray_local) -> dict:
    """This process's environment with ``RAY_ADDRESS`` set to the session's Ray, for a ``rayal``
    subprocess that need not own its Ray: it connects instead of starting one (a local Ray's
    start-up is most of a short command's wall time on 2 cores)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_API_SERVER_ADDRESS"}
    env["RAY_ADDRESS"] = ray_local.get_runtime_context().gcs_address
    return env


@pytest.fixture(scope="module")
def one_thread():
    """One thread each for torch and numba (when the module has loaded it) for the module that
    asks (``pytestmark = pytest.mark.usefixtures("one_thread")``); restored after it.

    Tiny CPU models: extra intra-op threads only add contention on a busy machine. With more,
    numba's OpenMP workers spin after every kernel call while torch convolves, which on a
    2-core machine made tests/scoring/test_engine.py ~10x slower (88 s vs 8 s;
    OMP_WAIT_POLICY=passive also cures it)."""
    import torch

    numba = sys.modules.get("numba")
    before = torch.get_num_threads(), numba.get_num_threads() if numba else None
    torch.set_num_threads(1)
    if numba:
        numba.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])
    if numba:
        numba.set_num_threads(before[1])


@pytest.fixture(scope="session")
def camvid_dir() -> Path:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID}")
    return CAMVID


# --- a real S3 API on loopback (tests/data/test_s3.py, tests/pipeline/test_s3_runs.py) ----------
S3_BUCKET, REGION = "rayal-test", "us-east-1"


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """``module_tmp(name) -> Path``: a fresh directory for a module-scoped fixture (as
    ``tmp_path_factory.mktemp``), removed when the module's tests end unless one of them failed,
    as pytest keeps only a failed test's ``tmp_path`` (pyproject: tmp_path_retention_policy).
    Runs and sweeps write checkpoints: kept to the end, a full run filled CI's disk."""
    made: list[Path] = []
    failed_before = request.session.testsfailed

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed_before:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("moto server did not start")


def _iam_user(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed s3:*; then switch authentication on: every later request must be
    signed with a known key (moto's /moto-api/reset-auth sets the unauthenticated budget to 0)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="rayal")
    key = iam.create_access_key(UserName="rayal")["AccessKey"]
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="rayal", PolicyName="s3", PolicyDocument=json.dumps(policy))
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).read()
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A loopback S3 endpoint (moto's server, IAM authentication on: every request is signed and
    checked) with bucket S3_BUCKET; AWS_* point at it for the module that uses it (and the
    processes it starts: pyarrow reads AWS_ENDPOINT_URL when it builds the filesystem).
    Yields those environment variables."""
    pytest.importorskip("moto", reason="moto[server] is in the test extra")
    import pyarrow.fs as pafs

    from rayal.data import io

    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(port, proc)
        key_id, secret = _iam_user(endpoint)
        with pytest.MonkeyPatch.context() as mp:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
                mp.delenv(name, raising=False)
            env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key_id,
                   "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
                   "AWS_EC2_METADATA_DISABLED": "true"}
            for name, value in env.items():
                mp.setenv(name, value)
            io._object_store.cache_clear()   # filesystems are cached with their credentials
            pafs.S3FileSystem(endpoint_override=endpoint, access_key=key_id, secret_key=secret,
                              region=REGION, allow_bucket_creation=True).create_dir(S3_BUCKET)
            yield env
    finally:
        io._object_store.cache_clear()
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def bad_secret(s3, monkeypatch):
    """The right key id with a wrong secret (every signature fails)."""
    from rayal.data import io

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    io._object_store.cache_clear()
    yield
    io._object_store.cache_clear()
