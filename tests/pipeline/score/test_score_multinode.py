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

from .conftest import StalledFrames

HERE = Path(__file__).parents[1]   # tests/pipeline: scoring.yaml
REPO = HERE.parents[1]
RAYAL = Path(sys.executable).parent / "rayal"
STORE = 100 * 2**20


def _workers(node, title: str) -> list[psutil.Process]:
    """The Ray workers under ``node``'s raylet whose process title holds ``title`` (Ray titles a
    worker by the actor class or the task it runs)."""
    from ray._private import ray_constants

    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    found = []
    for proc in psutil.Process(raylet).children(recursive=True):
        try:
            if title in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def _scoring_actors(node) -> list[psutil.Process]:
    """The Ray Data scoring actors (FrameBatchScorer) running on ``node``."""
    return _workers(node, "FrameBatchScorer")


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
    """The last frames' reads stall (FIFOs) until the node is gone, so the loss always lands
    mid-job however fast the machine; then the store comes back and the decode tasks stuck on
    it on the surviving node are SIGKILLed: Ray retries them, and they read the files."""
    c, workers = cluster
    n, out = 48, tmp_path / "run"
    frames = StalledFrames(tmp_path / "frames", n, stalled=range(40, n))
    sets = ["data.source=manifest", f"data.manifest={frames.manifest}",
            "scoring.units=[patch]", "scoring.mc_samples=4", "scoring.embeddings=[]",
            "scoring.batch_size=2", "scoring.commit_frames=2", "ray.actors=2",
            "ray.cpus_per_actor=1", "ray.decode_cpus=0.25", "ray.torch_threads=1",
            f"ray.address={c.address}", f"output_dir={out}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "score.log"   # a file, not a pipe: nobody reads it while the test waits
    with log.open("w") as stdout:   # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([str(RAYAL), "score", str(HERE / "scoring.yaml"), "--no-progress",
                                 *[a for s in sets for a in ("--set", s)]],
                                cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not read_markers(str(out)) or not all(_scoring_actors(w) for w in workers):
            assert proc.poll() is None, f"rayal score exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, "the scoring actors did not start on both nodes"
            time.sleep(0.1)
        # one actor per worker node (Ray Data spreads its actors; the head has no CPUs)
        assert [len(_scoring_actors(w)) for w in workers] == [1, 1]
        committed = sum(m["frames"] for m in read_markers(str(out)))
        c.remove_node(workers[1])   # the node, its raylet, its actor and the blocks it held
        frames.restore()
        for stuck in _workers(workers[0], "decode_frames"):
            stuck.kill()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, log.read_text()
    assert committed < n, "the node was removed after the job had finished"
    scored = pq.read_table(out / "frames", columns=["frame_id"]).column("frame_id").to_pylist()
    assert sorted(scored) == frames.ids   # each frame exactly once
    assert pq.read_table(out / "quarantine").num_rows == 0
    summary = json.loads((out / "score_summary.json").read_text())
    assert (summary["frames_scored"], summary["frames_quarantined"]) == (n, 0)
