"""One writer per pool state dir: two real processes contending (local dir and a real S3 API),
takeover of a stale lease, a lease lost to another writer, a restarted actor re-acquiring its
own lease, and a journal two old writers both appended to reaching the user by name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from rayal.config.sections import PoolConfig
from rayal.data import io
from rayal.pool.coordinator import (PoolCoordinator, get_or_create_coordinator, pool_state_dir,
                                    shutdown_coordinator)
from rayal.pool.journal import Journal, JournalCorruptError, encode_record
from rayal.pool.labels import normalize_frames
from rayal.pool.lock import LeaseLostError, PoolLockedError, read_lease
from rayal.pool.state import Record

# One contender: wait for "go", open the pool (take the lease), register its frames, report,
# and hold the lease until "done" so the other one tries while it is held.
CONTENDER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import pyarrow as pa
    from rayal.pool.coordinator import PoolCoordinator
    from rayal.pool.lock import PoolLockedError
    state_dir, project, me, sync = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    (sync / f"{me}.ready").touch()
    while not (sync / "go").exists():
        time.sleep(0.01)
    try:
        c = PoolCoordinator({"project": project, "unit": "image", "state_dir": state_dir})
        c.register(pa.table({"frame_id": [f"{me}{i}" for i in range(3)],
                             "uri": [f"/d/{me}{i}.png" for i in range(3)]}))
        out = {"ok": True, "pid": os.getpid()}
    except PoolLockedError as err:
        out = {"ok": False, "pid": os.getpid(), "error": str(err), "holder": err.holder}
    (sync / f"{me}.tmp").write_text(json.dumps(out))
    os.replace(sync / f"{me}.tmp", sync / f"{me}.json")
    while out["ok"] and not (sync / "done").exists():
        time.sleep(0.01)
    if out["ok"]:
        c.close()
""")


def wait_for(path: Path, procs, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        for p in procs:
            if p.poll() not in (None, 0):
                raise AssertionError(f"contender exited {p.returncode}: {p.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def contend(state_dir: str, tmp_path: Path) -> tuple[dict, dict, str]:
    """Two processes open one pool at the same moment -> (winner, loser, project)."""
    project, sync = f"c-{uuid.uuid4().hex[:8]}", tmp_path / "sync"
    sync.mkdir()
    script = tmp_path / "contender.py"
    script.write_text(CONTENDER)
    procs = [subprocess.Popen([sys.executable, str(script), state_dir, project, me, str(sync)],
                              stderr=subprocess.PIPE, text=True) for me in ("a", "b")]
    try:
        for me in ("a", "b"):
            wait_for(sync / f"{me}.ready", procs)
        (sync / "go").touch()
        results = {}
        for me in ("a", "b"):
            wait_for(sync / f"{me}.json", procs)
            results[me] = json.loads((sync / f"{me}.json").read_text())
        (sync / "done").touch()
        for p in procs:
            assert p.wait(120) == 0, p.stderr.read()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    won = [r for r in results.values() if r["ok"]]
    lost = [r for r in results.values() if not r["ok"]]
    assert len(won) == 1 and len(lost) == 1, results
    return won[0], lost[0], project


def check_contention(state_dir: str, tmp_path: Path) -> None:
    winner, loser, project = contend(state_dir, tmp_path)
    assert "is in use by another writer" in loser["error"]
    assert f"pid {winner['pid']} on host" in loser["error"] and loser["holder"]["pid"] == winner["pid"]
    assert "since " in loser["error"] and "lease expires at" in loser["error"]
    pool = PoolConfig(project=project, state_dir=state_dir)
    assert read_lease(pool_state_dir(pool)) is None, "the winner released its lease on close"
    after = PoolCoordinator(pool)        # the journal reads back: only the winner's frames
    assert after.status()["frames"] == 3 and after.state.seq == 2
    after.close(snapshot=False)


def test_two_processes_on_a_local_state_dir(tmp_path):
    check_contention(str(tmp_path / "state"), tmp_path)


def test_two_processes_on_s3(s3, tmp_path):
    from rayal.pool.lock import _S3Store, _store

    assert isinstance(_store("s3://rayal-test/locks"), _S3Store)   # conditional PUTs, not best effort
    check_contention(f"s3://rayal-test/locks/{uuid.uuid4().hex[:8]}", tmp_path)


def foreign_lease(expires_in: float) -> dict:
    """A lease written by a coordinator on another machine."""
    now = time.time()
    return {"holder": "ray:session_elsewhere:rayal/rayal-pool-x", "token": uuid.uuid4().hex,
            "host": "elsewhere", "pid": 4242, "machine": "elsewhere|boot|pid:[1]",
            "ray_cluster": "session_elsewhere", "ray_gcs": "10.0.0.9:6379", "ray_job": "02000000",
            "actor": "rayal/rayal-pool-x", "acquired_at": now - 600, "renewed_at": now - 30,
            "expires_at": now + expires_in, "ttl_s": 60.0}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_stale_lease_is_taken_over_and_a_live_one_refused(where, tmp_path, request, caplog):
    if where == "s3":
        request.getfixturevalue("s3")
        root = f"s3://rayal-test/stale/{uuid.uuid4().hex[:8]}"
    else:
        root = str(tmp_path / "state")
    pool = PoolConfig(project="p", state_dir=root)
    lease_uri = io.join_uri(pool_state_dir(pool), "lease.json")
    io.write_bytes(lease_uri, json.dumps(foreign_lease(expires_in=3600)).encode())
    with pytest.raises(PoolLockedError, match=r"in use by another writer: pid 4242 on host elsewhere, "
                                              r"Ray cluster session_elsewhere \(GCS 10.0.0.9:6379\), "
                                              r"actor rayal/rayal-pool-x, job 02000000, since "):
        PoolCoordinator(pool)
    io.write_bytes(lease_uri, json.dumps(foreign_lease(expires_in=-1)).encode())   # it crashed
    c = PoolCoordinator(pool)
    assert "taking over the stale lease of pid 4242 on host elsewhere" in caplog.text
    assert read_lease(pool_state_dir(pool))["pid"] == os.getpid()
    assert c.state.seq == 1
    c.close(snapshot=False)


def test_a_lost_lease_stops_the_writer(tmp_path, h):
    pool = PoolConfig(project="p", state_dir=str(tmp_path / "state"))
    c = PoolCoordinator(pool)
    c.register(h.frames_table(2))
    # it stalled past its expiry and another machine's coordinator took the lease over
    path = Path(pool_state_dir(pool)) / "lease.json"
    path.write_text(json.dumps(foreign_lease(expires_in=3600)))
    c.lock._valid_until = 0.0
    with pytest.raises(LeaseLostError, match="was taken over by another writer: pid 4242 on host elsewhere"):
        c.register(h.frames_table(4))
    assert c.state.num_frames == 2 and Journal(pool_state_dir(pool)).recover()[2].last_seq == 2


@pytest.fixture
def pool(tmp_path, ray_local):
    config = PoolConfig(project=f"l-{uuid.uuid4().hex[:8]}", state_dir=str(tmp_path / "state"))
    yield config
    shutdown_coordinator(config, snapshot=False)


def test_restarted_actor_reacquires_its_own_lease(pool, ray_local, h):
    ray = ray_local
    c = get_or_create_coordinator(pool)
    ray.get(c.register.remote(h.frames_table(3)))
    before = ray.get(c.describe.remote())
    assert before["lease"]["holder"].startswith("ray:") and before["lease"]["actor"].endswith(pool.project)
    ray.kill(c, no_restart=False)                  # Ray restarts it; the new process is the
    deadline = time.time() + 60                    # same holder: it takes its lease back
    while ray.get(c.describe.remote())["pid"] == before["pid"]:
        assert time.time() < deadline, "the actor was not restarted"
        time.sleep(0.05)
    assert ray.get(c.register.remote(h.frames_table(5)))["frames"] == 5
    lease = read_lease(pool_state_dir(pool))
    assert lease["holder"] == before["lease"]["holder"] and lease["pid"] != before["pid"]
    # a writer outside that actor (this driver process) is refused while it holds the lease
    with pytest.raises(PoolLockedError, match=rf"pid {lease['pid']} on host .*actor "
                                              rf"rayal/rayal-pool-{pool.project}"):
        PoolCoordinator(pool)


def test_duplicate_journal_records_are_named_not_actor_died(pool, ray_local, h, capsys):
    root = pool_state_dir(pool)
    j = Journal(root)
    j.recover()
    j.append(Record("create", {"unit": "image"}))
    j.append(Record("register", {"count": 2}, normalize_frames(h.frames_table(2))))
    j.close()
    segment = sorted((Path(root) / "journal").iterdir())[-1]
    with open(segment, "ab") as f:     # a second, unlocked writer appended its record 2 too
        f.write(encode_record(2, Record("register", {"count": 1}, normalize_frames(h.frames_table(1, "g")))))
    with pytest.raises(JournalCorruptError, match=rf"{segment}: journal record 2 appears twice"):
        get_or_create_coordinator(pool)
    with pytest.raises(ValueError):               # the failed coordinator left no actor behind
        ray_local.get_actor(f"rayal-pool-{pool.project}", namespace=pool.namespace)
    assert read_lease(root) is None, "a coordinator that failed to start releases the lease"
    # the command line: one error line naming the file, then `rayal pool repair` fixes it
    from rayal.cli.main import main

    config = Path(root).parent / "cfg.yaml"
    config.write_text(json.dumps({"pool": pool.model_dump()}))
    capsys.readouterr()
    assert main(["pool", "status", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rayal pool status: error: {segment}: journal record 2 appears twice")
    assert len(err.strip().splitlines()) == 1 and "ActorDiedError" not in err
    assert main(["pool", "repair", str(config)]) == 0
    out = capsys.readouterr().out
    assert "kept records up to 2; set aside 1 later record(s)" in out and "seq 2  op register" in out
    assert main(["pool", "status", str(config)]) == 0
    assert "frames=2" in capsys.readouterr().out      # the first writer's history
    set_aside = list(Path(root).glob("set-aside-*/journal/*.log"))
    assert len(set_aside) == 1 and set_aside[0].stat().st_size == len(
        encode_record(2, Record("register", {"count": 1}, normalize_frames(h.frames_table(1, "g")))))
    assert main(["pool", "repair", str(config)]) == 2                # never beside a live writer
    assert "is in use by another writer" in capsys.readouterr().err
    shutdown_coordinator(pool, snapshot=False)
    assert main(["pool", "repair", str(config)]) == 0
    assert "nothing to repair" in capsys.readouterr().out
