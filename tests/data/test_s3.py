"""Object storage against a real S3 API on loopback: moto's server with IAM authentication on
(every request is signed and checked), not a mock of the client. Covers the io helpers,
manifests, the pool journal, clear errors for a missing bucket and bad credentials, and an
end-to-end ``rayal score`` + ``rayal pool init`` + ``rayal pool select`` with the manifest,
images, score tables and pool state all on the S3 endpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("moto", reason="moto[server] is in the test extra")

from rayal.data import io, read_manifest, validate_manifest_schema, write_manifest  # noqa: E402
from rayal.data.errors import FrameError  # noqa: E402
from rayal.data.io import BucketNotFoundError, StorageAccessError  # noqa: E402

BUCKET = "rayal-test"   # created by the ``s3`` fixture of tests/conftest.py


def uri(*parts: str) -> str:
    return "s3://" + "/".join((BUCKET,) + parts)


def test_io_round_trip(s3):
    base = uri("io", uuid.uuid4().hex[:8])
    io.write_bytes(io.join_uri(base, "a", "x.bin"), b"\x00payload")
    io.write_bytes(io.join_uri(base, "a", "y.bin"), b"y")
    assert io.read_bytes(io.join_uri(base, "a", "x.bin")) == b"\x00payload"
    assert io.exists(io.join_uri(base, "a")) and not io.exists(io.join_uri(base, "b"))
    assert io.list_files(io.join_uri(base, "a")) == [("x.bin", f"{base}/a/x.bin"), ("y.bin", f"{base}/a/y.bin")]
    with pytest.raises(FrameError, match="missing file"):
        io.read_bytes(io.join_uri(base, "a", "z.bin"), frame_id="z")


def test_manifest_with_relative_uris(s3):
    base = uri("manifest", uuid.uuid4().hex[:8])
    write_manifest({"frame_id": ["f0", "f1"], "uri": ["img/f0.png", "s3://other/f1.png"]},
                   f"{base}/m.parquet")
    table = read_manifest(f"{base}/m.parquet")
    assert table.column("uri").to_pylist() == [f"{base}/img/f0.png", "s3://other/f1.png"]


def test_missing_bucket_is_named(s3):
    missing = "s3://rayal-no-such-bucket/runs/r0"
    for call in (lambda: io.makedirs(missing), lambda: io.write_bytes(f"{missing}/x.json", b"{}")):
        with pytest.raises(BucketNotFoundError, match=r"s3://rayal-no-such-bucket/runs/r0.* bucket "
                                                      r"'rayal-no-such-bucket' does not exist"):
            call()
    assert not io.exists(f"{missing}/x.json")
    with pytest.raises(FileNotFoundError, match=f"manifest not found: {missing}/m.parquet"):
        validate_manifest_schema(f"{missing}/m.parquet")
    from rayal.pool.journal import Journal

    with pytest.raises(BucketNotFoundError, match="s3://rayal-no-such-bucket/pool/journal"):
        Journal("s3://rayal-no-such-bucket/pool")


def test_bad_credentials_are_named(s3, bad_secret):
    target = uri("denied", "x.bin")
    with pytest.raises(StorageAccessError, match=rf"{target}: access denied \(writing\) at endpoint "
                                                 rf"{s3['AWS_ENDPOINT_URL']}.*AWS_SECRET_ACCESS_KEY"):
        io.write_bytes(target, b"x")
    with pytest.raises(StorageAccessError, match=uri("ds", "frame.png")):   # not a FrameError:
        io.read_bytes(uri("ds", "frame.png"), frame_id="f")                 # no silent quarantine
    with pytest.raises(StorageAccessError, match=uri("ds", "manifest.parquet")):
        validate_manifest_schema(uri("ds", "manifest.parquet"))


def test_unknown_access_key_is_named(s3, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    io._object_store.cache_clear()
    try:
        with pytest.raises(StorageAccessError, match=uri("listing")):
            io.list_files(uri("listing"))
    finally:
        io._object_store.cache_clear()


def test_pool_state_on_s3_survives_a_restart(s3):
    from rayal.pool.coordinator import PoolCoordinator

    pool = {"project": f"s3-{uuid.uuid4().hex[:8]}", "unit": "image", "state_dir": uri("pool")}
    first = PoolCoordinator(pool)
    again = None
    try:
        frames = pa.table({"frame_id": [f"f{i}" for i in range(6)], "uri": [f"s3://x/f{i}.png" for i in range(6)]})
        assert first.register(frames)["registered"] == 6
        first.snapshot()
        first.quarantine(["f2"], -1, "cannot decode image")   # journalled after the snapshot
        again = PoolCoordinator(pool)                          # a new process would do the same
        assert again.digest() == first.digest()
        assert again.report.snapshot_seq == 2 and again.report.replayed == 1
        assert (again.status()["quarantined"], again.status()["unlabeled"]) == (1, 5)
        fs, root = io.resolve_filesystem(f"{pool['state_dir']}/{pool['project']}")
        names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.is_file]
        assert any(n.endswith(".snap") for n in names) and any(n.endswith(".rec") for n in names)
        assert not any(".tmp-" in n for n in names)
    finally:   # planned shutdowns: no lease renewer outlives the test (and its S3 endpoint)
        for coordinator in (again, first):
            if coordinator is not None:
                coordinator.close(snapshot=False)


# --- end to end: rayal score + rayal pool init + rayal pool select, all on S3 -------------------
CLI = textwrap.dedent("""
    import sys
    from rayal.cli.main import main
    config, scores = sys.argv[1], sys.argv[2]
    for argv in (["score", config, "--no-progress"], ["pool", "init", config],
                 ["pool", "select", config, "--round", "0", "--score-dir", scores]):
        code = main(argv)
        print(f"== rayal {argv[0]} {argv[1]} -> {code}", flush=True)
        if code:
            sys.exit(code)
""")


def _s3_project(tmp_path: Path) -> tuple[Path, str, str]:
    """8 synthetic frames + masks and a manifest (relative URIs) on S3; a local config naming them."""
    from rayal.data import SyntheticScenes

    run = uri("e2e", uuid.uuid4().hex[:8])
    scenes = SyntheticScenes(8, height=32, width=48)
    scenes.write_folder(f"{run}/ds")
    ids = [scenes.frame_id(i) for i in range(8)]
    write_manifest({"frame_id": ids, "uri": [f"train/{i}.png" for i in ids],
                    "mask_uri": [f"trainannot/{i}.png" for i in ids]}, f"{run}/ds/manifest.parquet")
    config = {"name": "s3-e2e", "output_dir": f"{run}/scores/round-0",
              "data": {"source": "manifest", "manifest": f"{run}/ds/manifest.parquet", "num_classes": 8},
              "model": {"arch": "Unet", "encoder": "mobilenet_v2", "decoder_channels": [16, 8, 8, 8, 8]},
              "scoring": {"measures": ["entropy", "bald"], "mc_samples": 2, "units": ["patch"],
                          "grid": [2, 2], "batch_size": 4},
              "ray": {"num_cpus": 2, "actors": 1, "cpus_per_actor": 0.5, "decode_cpus": 0.25},
              "pool": {"project": f"e2e-{uuid.uuid4().hex[:8]}", "unit": "image",
                       "state_dir": f"{run}/pool"},
              "selection": {"strategy": "entropy", "budget": 3}}
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, run, config["pool"]["project"]


def _rayal(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    return subprocess.run([sys.executable, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_score_and_select_end_to_end_on_s3(s3, tmp_path):
    config, run, project = _s3_project(tmp_path)
    scores = f"{run}/scores/round-0"
    done = _rayal("-c", CLI, config, scores)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "frames scored       8" in done.stdout and "registered 8 new frame(s)" in done.stdout

    fs, path = io.resolve_filesystem(scores)
    frames = pq.read_table(f"{path}/frames", filesystem=fs)
    assert frames.num_rows == 8 and pq.read_table(f"{path}/regions", filesystem=fs).num_rows == 8 * 4
    assert json.loads(io.read_bytes(f"{scores}/score_summary.json"))["frames_scored"] == 8
    assert io.exists(f"{scores}/config.yaml")
    # the query is the 3 highest entropy_mean frames of the S3 score table, in order
    ranked = sorted(zip(frames.column("entropy_mean").to_pylist(), frames.column("frame_id").to_pylist()),
                    key=lambda p: (-p[0], p[1]))
    selected = done.stdout.split("3 image unit(s) selected by entropy")[1].split()
    assert [selected[i] for i in (1, 8, 15)] == [fid for _, fid in ranked[:3]]
    journal = io.list_files(f"{run}/pool/{project}/journal")
    assert len(journal) >= 3 and all(name.endswith(".rec") for name, _ in journal)   # create, register, select


def test_cli_errors_name_the_uri(s3, tmp_path):
    config, run, _ = _s3_project(tmp_path)
    missing = _rayal("-m", "rayal.cli.main", "score", config, "--set",
                     "output_dir=s3://rayal-no-such-bucket/runs/r0", timeout=300)
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert ("rayal score: error: s3://rayal-no-such-bucket/runs/r0: bucket 'rayal-no-such-bucket' "
            "does not exist") in missing.stderr
    denied = subprocess.run([sys.executable, "-m", "rayal.cli.main", "score", str(config)],
                            env={**os.environ, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
                            capture_output=True, text=True, timeout=300)
    assert denied.returncode == 2, denied.stderr[-3000:]
    assert f"rayal score: error: {run}/ds/manifest.parquet: access denied" in denied.stderr


def test_frames_in_a_refusing_store_fail_before_any_worker(s3, tmp_path):
    """A local manifest whose frames are on S3: a misspelt bucket or refused credentials stop
    `rayal score` on the driver (exit 2, naming the URI), not one quarantined frame at a time."""
    _, run, _ = _s3_project(tmp_path)
    frame = f"{run}/ds/train/syn_0000000.png"
    for name, first in (("misspelt", "s3://rayal-no-such-bucket/ds/f0.png"), ("denied", frame)):
        write_manifest({"frame_id": ["f0", "f1"], "uri": [first, frame]}, str(tmp_path / f"{name}.parquet"))
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
            "data": {"source": "manifest", "manifest": str(tmp_path / f"{name}.parquet"), "num_classes": 8},
            "output_dir": str(tmp_path / name)}))
    missing = _rayal("-m", "rayal.cli.main", "score", tmp_path / "misspelt.yaml", timeout=300)
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert ("rayal score: error: s3://rayal-no-such-bucket/ds/f0.png: bucket 'rayal-no-such-bucket' "
            "does not exist") in missing.stderr
    denied = subprocess.run([sys.executable, "-m", "rayal.cli.main", "score", str(tmp_path / "denied.yaml")],
                            env={**os.environ, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
                            capture_output=True, text=True, timeout=300)
    assert denied.returncode == 2, denied.stderr[-3000:]
    assert f"rayal score: error: {frame}: access denied" in denied.stderr
    assert "Traceback" not in denied.stderr and not (tmp_path / "denied").exists()
