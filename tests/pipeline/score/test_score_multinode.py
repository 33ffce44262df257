"""`rayal score` on a real multi-node Ray (``ray.cluster_utils.Cluster``: a head without CPUs and
two worker nodes on this machine): the scoring actors spread over the worker nodes, and when one
worker node is removed mid-job its actor restarts on the other node, the lost batches are
scored again, and every frame is scored exactly once with none quarantined."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from rayal.pipeline.score.sink import read_markers

HERE = Path(__file__).parents[1]   # tests/pipeline: scoring.yaml
REPO = HERE.parents[1]
RAYAL = Path(sys.executable).parent / "rayal"
STORE = 100 * 2**20


def _scoring_actors(node) -> list[int]:
    """Pids of the Ray Data scoring actors (FrameBatchScorer) running under ``node``'s raylet."""
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    pids = []
    for proc in psutil.Process(raylet).children(recursive=True):
        try:
            if "FrameBatchScorer" in " ".join(proc.cmdline()):
                pids.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False,
                head_node_args=dict(num_cpus=0, object_store_memory=STORE, include_dashboard=False))
    try:
        workers = [c.add_node(num_cpus=2, object_store_memory=STORE) for _ in range(2)]
        c.wait_for_nodes(timeout=120)
        yield c, workers
    finally:
        c.shutdown()


@pytest.mark.slow   # ~140 s on 2 cores: three Ray nodes, two actors importing torch
def test_node_lost_mid_job_every_frame_scored_once(cluster, tmp_path: Path):
    c, workers = cluster
    n, out = 48, tmp_path / "run"
    sets = ["data.synthetic.height=64", "data.synthetic.width=96", f"data.synthetic.num_frames={n}",
            "scoring.units=[patch]", "scoring.mc_samples=4", "scoring.embeddings=[]",
            "scoring.batch_size=2", "scoring.commit_frames=2", "ray.actors=2",
            "ray.cpus_per_actor=1", "ray.decode_cpus=0.25", "ray.torch_threads=1",
            f"ray.address={c.address}", f"output_dir={out}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([str(RAYAL), "score", str(HERE / "scoring.yaml"), "--no-progress",
                             *[a for s in sets for a in ("--set", s)]],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while not read_markers(str(out)) or not all(_scoring_actors(w) for w in workers):
            assert proc.poll() is None, f"rayal score exited early:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "the scoring actors did not start on both nodes"
            time.sleep(0.1)
        # one actor per worker node (Ray Data spreads its actors; the head has no CPUs)
        assert [len(_scoring_actors(w)) for w in workers] == [1, 1]
        committed = sum(m["frames"] for m in read_markers(str(out)))
        c.remove_node(workers[1])   # the node, its raylet, its actor and the blocks it held
        stdout, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, stdout
    assert committed < n, "the node was removed after the job had finished"
    frames = pq.read_table(out / "frames", columns=["frame_id"]).column("frame_id").to_pylist()
    assert sorted(frames) == [f"syn_{i:07d}" for i in range(n)]   # each frame exactly once
    assert pq.read_table(out / "quarantine").num_rows == 0
    summary = json.loads((out / "score_summary.json").read_text())
    assert (summary["frames_scored"], summary["frames_quarantined"]) == (n, 0)
