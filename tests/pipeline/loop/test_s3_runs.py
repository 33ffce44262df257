"""Checkpoints and run directories on a real S3 API on loopback (the ``s3`` fixture of
tests/conftest.py: moto's server with IAM authentication on).

``rayal train`` / ``score`` / ``run`` run in one subprocess with its own local Ray, started
after the fixture set AWS_* (Ray workers inherit the environment of the process that starts
Ray, so the session's ``ray_local`` could not reach the endpoint). Also: the driver-side check
of ``pool.state_dir``, decode failing (not quarantining) on a refusing store, and the storage
settings a cluster's workers get.

The models use mobilenet_v2 (2.2 M parameters): resnet18 keeps all 11 M parameters even at
``encoder_depth: 3``, and moto's server streams a 45 MB checkpoint at a few MB/s.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from rayal.data import io
from rayal.data.io import BucketNotFoundError, StorageAccessError

BUCKET = "rayal-test"   # created by the ``s3`` fixture of tests/conftest.py

TRAIN = {
    "name": "s3-train", "seed": 0, "device": "cpu",
    "data": {"num_classes": 8, "synthetic": {"num_frames": 6, "height": 32, "width": 48, "eval_frames": 2}},
    "model": {"arch": "Unet", "encoder": "mobilenet_v2", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "train": {"epochs": 2, "batch_size": 4, "patience": None, "labels": "split"},
    "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["patch"], "grid": [2, 2],
                "aggregate": ["mean"], "batch_size": 8},
    "ray": {"cpus_per_actor": 0.5},
}
# the "run" preset of tests/pipeline/conftest.py (test_experiment.py's tiny run), a smaller encoder
RUN = {"name": "s3-run", "model": {"encoder": "mobilenet_v2"}}

# One Ray for every step: `rayal score` shuts down a Ray it started itself.
DRIVER = textwrap.dedent("""
    import json, sys, time
    from rayal.cli.main import main
    from rayal.config.sections import RayConfig
    from rayal.pipeline.runtime import init_ray

    init_ray(RayConfig(num_cpus=4))
    for argv in json.loads(sys.argv[1]):
        tic = time.perf_counter()
        code = main(argv)
        print(f"== rayal {argv[0]} -> {code} ({time.perf_counter() - tic:.1f} s)", flush=True)
        if code:
            sys.exit(code)
""")


def uri(*parts: str) -> str:
    return "s3://" + "/".join((BUCKET,) + parts)


def _rayal(*steps: list[str], cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    """The ``rayal`` commands ``steps`` in one fresh process (working directory ``cwd``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    return subprocess.run([sys.executable, "-c", DRIVER, json.dumps([list(map(str, s)) for s in steps])],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _config(tmp_path, name: str, raw: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _rows(run: str) -> list[dict]:
    from rayal.pipeline.storage import read_parquet
    return read_parquet(f"{run}/rounds.parquet").to_pylist()


@pytest.fixture(scope="module")
def runs(s3, tiny_config, module_tmp):
    """``rayal train`` + ``rayal score --model s3://.../best.pt`` + ``rayal run``, all on S3."""
    tmp = module_tmp("s3runs")
    base = uri("runs", uuid.uuid4().hex[:8])
    labels = tmp / "labelled.txt"
    labels.write_text("syn_0000001\nsyn_0000002\nsyn_0000004\n")
    train = _config(tmp, "train", dict(TRAIN, output_dir=f"{base}/t",
                                       train=dict(TRAIN["train"], label_list=str(labels))))
    run = _config(tmp, "run", tiny_config("run", **RUN, output_dir=f"{base}/run"))
    work = tmp / "cwd"
    work.mkdir()
    done = _rayal(["train", train, "--no-progress"],
                  ["score", train, "--no-progress", "--model", f"{base}/t/train/best.pt",
                   "--set", f"output_dir={base}/scores"],
                  ["run", run, "--no-progress"], cwd=work)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith("== rayal")))
    return {"base": base, "train": train, "run": run, "stdout": done.stdout, "cwd": work}


def test_train_writes_checkpoints_and_metrics_to_the_bucket(runs):
    out = f"{runs['base']}/t/train"
    names = [n for n, _ in io.list_files(out)]
    assert {"best.pt", "last.pt", "metrics.json", "history.parquet", "training.png",
            "config.yaml", "versions.json"} <= set(names)
    assert not [n for n in names if n.endswith(".tmp")]
    metrics = json.loads(io.read_bytes(f"{out}/metrics.json"))
    assert metrics["checkpoint"] == f"{out}/best.pt" and metrics["labelled_frames"] == 3
    history = pq.read_table(pa.BufferReader(io.read_bytes(f"{out}/history.parquet")))
    assert history.column("epoch").to_pylist() == [0, 1]
    assert io.read_bytes(f"{out}/training.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(runs["cwd"].iterdir())   # nothing written locally (no "s3:/..." folders)
    assert re.search(rf"^checkpoint +{re.escape(out)}/best.pt$", runs["stdout"], re.M)


def test_score_loads_the_checkpoint_from_the_bucket(runs):
    """The actors scored with the S3 checkpoint: a frame's entropy equals the checkpoint's own."""
    from rayal.config import config_from_dict
    from rayal.data import load_synthetic, synthetic_uri
    from rayal.scoring import measures as M
    from rayal.train.checkpoint import read_checkpoint

    scores = f"{runs['base']}/scores"
    fs, path = io.resolve_filesystem(scores)
    frames = pq.read_table(f"{path}/frames", filesystem=fs).sort_by("frame_id")
    assert frames.num_rows == 6
    model, meta = read_checkpoint(f"{runs['base']}/t/train/best.pt")
    assert meta["epoch"] in (0, 1)
    model.eval()
    syn = config_from_dict({"data": TRAIN["data"]}).data.synthetic
    for frame_id, value in zip(frames.column("frame_id").to_pylist()[:2],
                               frames.column("entropy_mean").to_pylist()[:2]):
        image = load_synthetic(synthetic_uri(syn.seed, int(frame_id[4:])), syn.height, syn.width)[0]
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            expected = float(M.entropy(torch.softmax(model(x), 1)).mean())
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-6), frame_id


def test_run_directory_in_the_bucket(runs):
    run = f"{runs['base']}/run"
    rows = _rows(run)
    assert [r["round"] for r in rows] == [0, 1] and [r["labelled_units"] for r in rows] == [4, 10]
    assert all(r["checkpoint"] == f"{run}/round_{r['round']:03d}/train/best.pt" for r in rows)
    summary = json.loads(io.read_bytes(f"{run}/summary.json"))
    assert summary["final_miou"] == rows[1]["miou"] and summary["rounds"] == 2
    for name in ("config.yaml", "versions.json", "learning_curve.png", "class_shares.png",
                 "selected_frames.png"):
        assert io.exists(f"{run}/{name}"), name
    assert io.exists(f"{run}/round_000/scores/score_summary.json")      # round 0's scores are kept
    assert not io.exists(f"{run}/round_001/scores")                     # later ones dropped
    assert [n for n, _ in io.list_files(f"{run}/pool/run/journal")]     # the pool state is there too


def test_resume_from_the_bucket_reproduces_the_last_round(runs):
    from rayal.pipeline.storage import remove_tree, write_parquet

    run = f"{runs['base']}/run"
    before = _rows(run)
    summary = json.loads(io.read_bytes(f"{run}/summary.json"))
    write_parquet(pa.Table.from_pylist(before[:1]), f"{run}/rounds.parquet")   # round 1 "lost"
    remove_tree(f"{run}/summary.json")
    done = _rayal(["run", runs["run"], "--no-progress", "--resume"], cwd=runs["cwd"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print("\n".join(line for line in done.stdout.splitlines() if line.startswith("== rayal")))
    after = _rows(run)
    assert len(after) == 2
    for key in ("round", "selected_units", "labelled_units", "clicks", "miou", "selected_class_hist",
                "checkpoint"):
        assert after[1][key] == before[1][key], key
    again = json.loads(io.read_bytes(f"{run}/summary.json"))
    assert again["aualc"] == pytest.approx(summary["aualc"])


# --- fixes: a refusing store fails loudly, on the driver -----------------------------------------
def test_pool_with_a_bad_state_dir_exits_2_naming_it(s3, ray_local, tmp_path, capsys):
    import ray

    from rayal.cli.main import main

    config = _config(tmp_path, "pool", {"data": {"num_classes": 8, "synthetic": {"num_frames": 4}}})
    project = f"bad-{uuid.uuid4().hex[:8]}"
    code = main(["pool", "init", config, "--set", "pool.state_dir=s3://rayal-no-such-bucket/pool",
                 "--set", f"pool.project={project}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert (f"rayal pool init: error: s3://rayal-no-such-bucket/pool/{project}: bucket "
            "'rayal-no-such-bucket' does not exist") in err
    with pytest.raises(ValueError):   # no coordinator actor was created (it would die in __init__)
        ray.get_actor(f"rayal-pool-{project}", namespace="rayal")


def test_pool_with_refused_credentials_exits_2(s3, bad_secret, ray_local, tmp_path, capsys):
    from rayal.cli.main import main

    config = _config(tmp_path, "pool", {"data": {"num_classes": 8, "synthetic": {"num_frames": 4}}})
    assert main(["pool", "status", config, "--set", f"pool.state_dir={uri('pool')}"]) == 2
    assert f"rayal pool status: error: {uri('pool')}/default: access denied" in capsys.readouterr().err


def test_decode_fails_on_a_refusing_store_but_quarantines_a_missing_frame(s3, monkeypatch):
    from rayal.config import config_from_dict
    from rayal.pipeline.score.frames import DecodeFrames

    config = config_from_dict({"data": {"num_classes": 8}, "scoring": {"units": ["patch"]}})
    decode = DecodeFrames(config.data, config.scoring)
    missing = {"frame_id": np.array(["f0"]), "uri": np.array([uri("nowhere", "f0.png")])}
    out = decode(missing)
    assert "missing file" in out["error"][0] and out["image"][0].shape == (1, 1, 3)
    misspelt = dict(missing, uri=np.array(["s3://rayal-no-such-bucket/f0.png"]))
    with pytest.raises(BucketNotFoundError, match="bucket 'rayal-no-such-bucket' does not exist"):
        decode(misspelt)     # one configuration error, not every frame quarantined
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    io._object_store.cache_clear()
    try:
        with pytest.raises(StorageAccessError, match=uri("nowhere", "f0.png")):
            decode(missing)
    finally:
        io._object_store.cache_clear()


def test_cluster_workers_get_the_storage_settings_but_no_secret():
    from rayal.pipeline.runtime import worker_env_vars

    environ = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_DEFAULT_REGION": "eu-west-1",
               "AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "k", "AWS_SESSION_TOKEN": "t"}
    assert worker_env_vars(environ) == {"AWS_ENDPOINT_URL": "http://minio:9000",
                                        "AWS_DEFAULT_REGION": "eu-west-1"}
    # inside a Ray job whose runtime_env already sets one (Ray refuses a key set twice)
    job = {"runtime_env": {"env_vars": {"AWS_ENDPOINT_URL": "http://minio:9000"}}}
    assert worker_env_vars(dict(environ, RAY_JOB_CONFIG_JSON_ENV_VAR=json.dumps(job))) == {
        "AWS_DEFAULT_REGION": "eu-west-1"}
