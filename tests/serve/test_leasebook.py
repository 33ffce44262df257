"""The desk's lease book: indexes, expiry with renewals, the append-only log and its
compaction, a crash-cut log line; the free-unit heap."""
from __future__ import annotations

import json
import os

from rayal.serve.leasebook import COMPACT_MIN, LOG, SNAPSHOT, FreeUnits, LeaseBook


def test_grant_drop_expire_and_per_annotator_index(tmp_path):
    book = LeaseBook(str(tmp_path))
    book.grant("t1", "a", 10.0)
    book.grant("t2", "a", 20.0)
    book.grant("t3", "b", 15.0)
    book.grant("t1", "a", 30.0)                 # a renewal: the old expiry entry is stale
    assert book.tasks_of("a") == ["t2", "t1"] and book.tasks_of("b") == ["t3"]
    assert book.expire(12.0) == []              # t1's old until (10) no longer holds
    assert sorted(book.expire(20.0)) == ["t2", "t3"]
    assert book.tasks_of("b") == [] and "t2" not in book and len(book) == 1
    assert book.get("t1") == ("a", 30.0)
    assert book.drop("t1") and not book.drop("t1") and len(book) == 0


def test_a_restart_replays_the_log_and_survives_a_cut_line(tmp_path):
    book = LeaseBook(str(tmp_path))
    for i in range(5):
        book.grant(f"t{i}", f"a{i % 2}", 100.0 + i)
    book.drop("t3")
    book.flush()
    with open(tmp_path / LOG, "a") as f:        # a crash in the middle of a line
        f.write('{"g":"t9","a":"x",')
    again = LeaseBook(str(tmp_path))
    assert dict(again.items()) == {f"t{i}": (f"a{i % 2}", 100.0 + i) for i in (0, 1, 2, 4)}
    assert again.tasks_of("a0") == ["t0", "t2", "t4"]


def test_compaction_writes_a_snapshot_and_restarts_the_log(tmp_path):
    book = LeaseBook(str(tmp_path))
    book.extra["done"] = {"old": "z"}           # what an older desk kept in the snapshot
    for i in range(COMPACT_MIN + 10):           # renewals of two leases: the log outgrows them
        book.grant(f"t{i % 2}", "a", float(i))
        book.flush()
    assert os.path.getsize(tmp_path / LOG) < 100 * 20        # restarted after the snapshot
    snap = json.loads((tmp_path / SNAPSHOT).read_text())
    assert snap["done"] == {"old": "z"} and set(snap["leases"]) == {"t0", "t1"}
    again = LeaseBook(str(tmp_path))
    assert dict(again.items()) == dict(book.items()) and again.extra == {"done": {"old": "z"}}


def test_free_units_lowest_position_first_lazily_checked():
    free = FreeUnits(6)
    taken = {0, 2}
    assert free.pop_free(lambda p: p not in taken) == 1
    assert free.pop_free(lambda p: p not in taken) == 3     # 2 was discarded on the way
    free.push(0)
    free.push(0)                                            # once, however often offered
    assert free.pop_free(lambda p: True) == 0
    assert [free.pop_free(lambda p: True) for _ in range(3)] == [4, 5, None]
