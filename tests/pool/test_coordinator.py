"""The real PoolCoordinator actor: reuse by name, and kills between and during mutations."""
from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from rayal.config.sections import PoolConfig
from rayal.pool.coordinator import PoolCoordinator, get_or_create_coordinator, shutdown_coordinator
from rayal.pool.labels import summary_table


@pytest.fixture
def pool(tmp_path, ray_local):
    config = PoolConfig(project=f"t-{uuid.uuid4().hex[:8]}", state_dir=str(tmp_path / "state"),
                        snapshot_every=5)
    yield config
    shutdown_coordinator(config, snapshot=False)


def labels_for(query, num_classes: int = 3):
    f = query.column("frame_id").to_pylist()
    counts = np.tile(np.arange(num_classes) + 1, (len(f), 1))
    counts[np.arange(len(f)), np.arange(len(f)) % num_classes] += 10
    return summary_table(f, [-1] * len(f), np.arange(len(f)) % num_classes, counts)


def restart(ray, handle) -> None:
    """Kill the actor process; Ray restarts it (max_restarts=-1) and it recovers from disk."""
    pid = ray.get(handle.describe.remote())["pid"]
    ray.kill(handle, no_restart=False)
    deadline = time.time() + 60
    while ray.get(handle.describe.remote())["pid"] == pid:   # the kill is asynchronous
        assert time.time() < deadline, "the actor was not restarted"
        time.sleep(0.05)


def test_named_detached_actor_is_reused(pool, ray_local, h, plugin):
    ray = ray_local
    a = get_or_create_coordinator(pool)
    b = get_or_create_coordinator(pool)
    assert ray.get(a.describe.remote())["pid"] == ray.get(b.describe.remote())["pid"]
    assert ray.get(a.register.remote(h.frames_table(8))) == {"registered": 8, "frames": 8}
    assert ray.get(b.register.remote(h.frames_table(8))) == {"registered": 0, "frames": 8}
    with pytest.raises(ValueError, match="already runs on"):
        get_or_create_coordinator(pool.model_copy(update={"state_dir": pool.state_dir + "-other"}))
    actor = ray.get_actor(f"rayal-pool-{pool.project}", namespace=pool.namespace)
    assert ray.get(actor.status.remote())["frames"] == 8


def test_kill_between_select_and_ingest(pool, ray_local, h, plugin, tmp_path):
    ray = ray_local
    c = get_or_create_coordinator(pool)
    ray.get(c.register.remote(h.frames_table(30)))
    scores = h.write_scores(tmp_path / "scores", 30)
    q1 = ray.get(c.select.remote("pool_test_top", {}, 6, 1, scores, 0, now=0.0, plugins=[h.PLUGIN]))
    before, digest = ray.get(c.status.remote()), ray.get(c.digest.remote())
    restart(ray, c)
    assert ray.get(c.status.remote()) == before and ray.get(c.digest.remote()) == digest
    # the select is retried after the restart: same query, nothing changes
    again = ray.get(c.select.remote("pool_test_top", {}, 6, 1, scores, 0, now=5.0, plugins=[h.PLUGIN]))
    assert again.equals(q1) and ray.get(c.digest.remote()) == digest
    report = ray.get(c.ingest.remote(labels_for(q1), 1))
    assert report["labeled"] == 6
    restart(ray, c)
    st = ray.get(c.status.remote())
    assert (st["labeled"], st["queued"], st["unlabeled"]) == (6, 0, 24)
    assert ray.get(c.ingest.remote(labels_for(q1), 1))["unchanged"] == 6


def test_kill_during_ingest_loses_and_duplicates_nothing(pool, ray_local, h, plugin, tmp_path):
    ray = ray_local
    c = get_or_create_coordinator(pool)
    scores = h.write_scores(tmp_path / "scores", 40)
    reference = PoolCoordinator(pool.model_copy(update={"state_dir": str(tmp_path / "ref")}))
    for target in (reference, None):
        call = (lambda name, *a, **k: getattr(reference, name)(*a, **k)) if target else \
               (lambda name, *a, **k: ray.get(getattr(c, name).remote(*a, **k)))
        call("register", h.frames_table(40))
        queries = [call("select", "pool_test_top", {}, 8, r, scores, r, now=float(r),
                        plugins=[h.PLUGIN]) for r in range(3)]
    assert all(q.num_rows == 8 for q in queries)
    keys = [f for q in queries for f in q.column("frame_id").to_pylist()]
    assert len(set(keys)) == 24, "no unit is assigned twice"
    labels = [labels_for(q) for q in queries]
    refs = [c.ingest.remote(lab, r) for r, lab in enumerate(labels)]   # in flight ...
    ray.kill(c, no_restart=False)                                      # ... when the actor dies
    first = ray.get(refs)               # Ray re-sends what had not finished (max_task_retries)
    retried = [ray.get(c.ingest.remote(lab, r)) for r, lab in enumerate(labels)]  # caller retries
    assert all(r["unchanged"] == 8 and r["labeled"] == 0 for r in retried)
    assert sum(r["labeled"] for r in first) <= 24
    for r, lab in enumerate(labels):
        reference.ingest(lab, r)
    st = ray.get(c.status.remote())
    assert (st["labeled"], st["queued"], st["unlabeled"]) == (24, 0, 16)
    assert st["per_round"] == {r: {"selected": 8, "queued": 0, "labeled": 8} for r in range(3)}
    assert st == reference.status() and ray.get(c.digest.remote()) == reference.digest()
    units = ray.get(c.units.remote())
    assert units.num_rows == 24 and len(set(units.column("frame_id").to_pylist())) == 24
