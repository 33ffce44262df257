"""One project, one pool state across driver processes: separate ``rayal pool`` invocations
against one running cluster all talk to the same detached ``rayal-pool-<project>`` actor."""
from __future__ import annotations

import json
import sys
import textwrap
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.slow   # needs the session's Ray head (started by test_submit or here)

# Run in a separate driver: the project's actor as the cluster sees it (pid, restarts, state).
PROBE = textwrap.dedent("""
    import json, sys, ray
    from ray.util.state import list_actors
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
    name = "rayal-pool-" + sys.argv[2]
    actor = ray.get_actor(name, namespace="rayal")
    alive = [a for a in list_actors(address=sys.argv[3], filters=[("name", "=", name)], detail=True)
             if a.state == "ALIVE"]
    print(json.dumps({"describe": ray.get(actor.describe.remote()), "alive": len(alive),
                      "restarts": alive[0].num_restarts if alive else None}))
""")


def probe(head, project: str) -> dict:
    done = head.run(sys.executable, "-c", PROBE, head.gcs_address, project, head.dashboard,
                    timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_separate_drivers_share_one_coordinator(ray_head, tmp_path):
    project = f"drivers-{uuid.uuid4().hex[:8]}"
    config = {"data": {"source": "synthetic", "num_classes": 8, "synthetic": {"num_frames": 8}},
              "pool": {"project": project, "unit": "image", "state_dir": str(tmp_path / "state")},
              "selection": {"strategy": "entropy", "budget": 3},
              "ray": {"address": ray_head.gcs_address}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    scores = tmp_path / "scores"
    (scores / "frames").mkdir(parents=True)
    ids = [f"syn_{i:07d}" for i in range(8)]
    pq.write_table(pa.table({"frame_id": ids, "entropy_mean": [i / 10 for i in range(8)]}),
                   scores / "frames" / "part-00000.parquet")

    first = ray_head.rayal("pool", "init", path)                       # driver 1
    assert first.returncode == 0, first.stderr[-2000:]
    assert "registered 8 new frame(s)" in first.stdout
    created = probe(ray_head, project)                                  # outlives its driver
    assert created["alive"] == 1 and created["describe"]["project"] == project

    second = ray_head.rayal("pool", "select", path, "--round", "0", "--score-dir", scores)  # driver 2
    assert second.returncode == 0, second.stderr[-2000:]
    assert "3 image unit(s) selected by entropy" in second.stdout
    assert [line.split()[1] for line in second.stdout.splitlines()[1:4]] == ids[7:4:-1]

    third = ray_head.rayal("pool", "status", path, "--json")            # driver 3
    assert third.returncode == 0, third.stderr[-2000:]
    status = json.loads(third.stdout)
    assert (status["frames"], status["queued"], status["unlabeled"]) == (8, 3, 5)

    after = probe(ray_head, project)
    # the same process served every driver: same pid, never restarted, one live actor
    assert after["describe"]["pid"] == created["describe"]["pid"]
    assert (after["alive"], after["restarts"]) == (1, 0)
    assert after["describe"]["seq"] > created["describe"]["seq"]
