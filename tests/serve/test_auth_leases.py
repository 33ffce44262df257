"""Auth tokens (config / env / generated 0600 file) and the desk's leases, in-process over a real
:class:`PoolCoordinator` (journal on disk)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from rayal.config.serve import ServeConfig, TokenConfig
from rayal.serve.auth import AuthError, TokenBook, resolve_tokens, tokens_from_env
from rayal.pool.tasks import TaskError, task_id
from rayal.serve.leases import TaskDesk


def test_generated_tokens_are_owner_only_and_roles_hold(tmp_path):
    tokens, path = resolve_tokens([], str(tmp_path), "cars", environ={})
    assert path and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    book = TokenBook(tokens)
    admin = next(t.token for t in tokens if t.role == "admin")
    annot = next(t.token for t in tokens if t.role == "annotator")
    assert book.check(f"Bearer {admin}", "cars", "admin").role == "admin"
    assert book.check(f"Bearer {annot}", "cars", "annotator").role == "annotator"
    for header, project, role, code in [(None, "cars", "annotator", 401),
                                        (f"Basic {admin}", "cars", "admin", 401),
                                        ("Bearer wrong-token-xxxxxxxxxx", "cars", "annotator", 401),
                                        (f"Bearer {annot}", "cars", "admin", 403),
                                        (f"Bearer {admin}", "bikes", "annotator", 403)]:
        with pytest.raises(AuthError) as err:
            book.check(header, project, role)
        assert err.value.status == code


def test_tokens_from_env_and_config_never_print_the_secret():
    env = {"RAYAL_SERVE_ADMIN_TOKEN": "a" * 20, "RAYAL_SERVE_ANNOTATOR_TOKEN": "b" * 20 + ",c" * 1 + "c" * 19}
    tokens = tokens_from_env(env)
    assert sorted(t.role for t in tokens) == ["admin", "annotator", "annotator"]
    with pytest.raises(ValueError, match="RAYAL_SERVE_ADMIN_TOKEN"):
        tokens_from_env({"RAYAL_SERVE_ADMIN_TOKEN": "short"})
    cfg = ServeConfig(tokens=[TokenConfig(token="s3cret-s3cret-s3cret", role="admin")])
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.tokens)
    with pytest.raises(ValueError, match="same token twice"):
        ServeConfig(tokens=[{"token": "x" * 16}, {"token": "x" * 16}])


@pytest.fixture
def desk(tmp_path):
    from rayal.pool.coordinator import PoolCoordinator
    from rayal.selection.base import ScoreTables

    import pyarrow as pa

    pool = PoolCoordinator({"project": "t", "unit": "image", "state_dir": str(tmp_path / "pool"),
                            "lease_seconds": 100.0})
    frames = [f"f{i}" for i in range(6)]
    pool.register({"frame_id": frames, "uri": [f"/x/{f}.png" for f in frames]})
    scores = ScoreTables(frames=pa.table({"frame_id": frames, "entropy_mean": np.arange(6.0)}))
    pool.select("entropy", {}, 4, 0, scores, now=1000.0)
    yield TaskDesk(pool, str(tmp_path / "serve"), lease_seconds=100.0), pool
    pool.close(snapshot=False)


def test_leases_disjoint_own_first_expire_and_persist(desk):
    d, pool = desk
    a = d.lease("a", 2, now=1000.0)
    b = d.lease("b", 5, now=1000.0)
    assert len(a) == 2 and len(b) == 2
    assert not {t["task_id"] for t in a} & {t["task_id"] for t in b}
    assert [t["task_id"] for t in d.lease("a", 2, now=1001.0)] == [t["task_id"] for t in a]
    assert d.lease("c", 3, now=1001.0) == []
    tid = a[0]["task_id"]
    assert d.check(tid, "a", now=1050.0) == "new"
    with pytest.raises(TaskError, match="another annotator") as err:
        d.check(tid, "b", now=1050.0)
    assert err.value.status == 409 and err.value.unit == tid
    with pytest.raises(TaskError, match="expired"):
        d.check(tid, "a", now=1102.0)
    # after expiry the units go to whoever asks; a restarted desk keeps the leases
    c = d.lease("c", 4, now=1102.0)
    assert len(c) == 4
    again = TaskDesk(pool, d.serve_dir, lease_seconds=100.0)
    assert again.holder(c[0]["task_id"], now=1103.0) == "c"


def test_an_expired_unit_is_leased_again_in_rank_order(desk):
    d, _ = desk
    first = d.lease("a", 1, now=1000.0)                  # the top-ranked unit
    rest = d.lease("b", 2, now=1050.0)
    assert first[0]["rank"] < min(t["rank"] for t in rest)
    # a's lease expires (1100): the next annotator gets that unit first, then the last free one
    got = d.lease("c", 2, now=1101.0)
    assert [t["task_id"] for t in got][0] == first[0]["task_id"]
    assert len(got) == 2 and not {t["task_id"] for t in got} & {t["task_id"] for t in rest}
    assert d.lease("a", 1, now=1101.0) == []             # b still holds theirs (until 1150)


def test_submit_ingests_after_mask_file_and_is_idempotent(desk):
    d, pool = desk
    (t,) = d.lease("a", 1, now=1000.0)
    mask = np.full((4, 5), 3, np.int32)
    region = np.ones((4, 5), bool)
    counts = np.bincount(mask.ravel(), minlength=8)
    with pytest.raises(TaskError, match="not leased"):
        d.submit(task_id(0, "f5", -1) if t["frame_id"] != "f5" else task_id(0, "f4", -1), "a",
                 mask, region, 3, counts, now=1000.0)
    assert pool.status()["labeled"] == 0
    report = d.submit(t["task_id"], "a", mask, region, 3, counts, now=1001.0)
    assert report["labeled"] == 1
    assert os.path.exists(os.path.join(d.mask_dir, f"{t['frame_id']}.png"))
    assert d.submit(t["task_id"], "a", mask, region, 3, counts, now=1002.0)["unchanged"] == 1
    with pytest.raises(TaskError, match="another annotator"):
        d.submit(t["task_id"], "b", mask, region, 3, counts, now=1002.0)
    assert pool.status()["labeled"] == 1


def test_concurrent_labels_group_commit_and_survive_a_restart(desk):
    import threading

    from rayal.serve.labellog import read_entries

    d, pool = desk
    tasks = d.lease("a", 4, now=1000.0)
    region = np.ones((4, 5), bool)
    reports, errors = {}, []

    def label(t, cls):
        mask = np.full((4, 5), cls, np.int32)
        try:
            reports[t["task_id"]] = d.submit(t["task_id"], "a", mask, region, cls,
                                             np.bincount(mask.ravel(), minlength=8), now=1001.0)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=label, args=(t, i + 1)) for i, t in enumerate(tasks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(r["labeled"] == 1 for r in reports.values()) and len(reports) == 4
    assert pool.status()["labeled"] == 4 and not d.leases_of("a", now=1001.0)
    assert len(read_entries(os.path.join(d.serve_dir, "labels.log"))) == 4
    # the masks are derived: a restarted desk rebuilds them from the log and knows who labelled
    for t in tasks:
        os.remove(os.path.join(d.mask_dir, f"{t['frame_id']}.png"))
    again = TaskDesk(pool, d.serve_dir, lease_seconds=100.0)
    from PIL import Image

    for i, t in enumerate(tasks):
        assert (np.asarray(Image.open(os.path.join(d.mask_dir, f"{t['frame_id']}.png"))) == i + 1).all()
        assert again.check(t["task_id"], "a") == "resent"
    assert again.lease("b", 4, now=1001.0) == []   # nothing left queued
