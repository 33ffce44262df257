"""Repair a pool journal that two unlocked writers appended to (rayal before the state-dir lease).

Two coordinators on one state dir each number their records from the same last one, so the
journal holds two records ``k`` (and maybe two ``k+1`` ...), interleaved; recovery refuses it
(:class:`rayal.pool.journal.JournalCorruptError`, "record k appears twice"). The records up to
the first repeated number form one consistent history; :func:`repair_journal` keeps it, moves
every later record (and snapshots from that point on) under ``<state_dir>/set-aside-<time>/``
instead of deleting them, and reports what they were, so the user can redo those rounds. It
takes the state dir's lease first, so it never runs beside a live coordinator.
"""
from __future__ import annotations

import time

from rayal.data import join_uri, resolve_filesystem
from rayal.pool.journal import _FRAME, SEGMENT_MAGIC, Journal, decode_payload
from rayal.pool.lock import StateDirLock

__all__ = ["repair_journal"]


def _local_records(journal: Journal) -> list[tuple[int, dict, str, int]]:
    """(seq, summary, segment path, byte offset) of every whole record, in storage order."""
    out = []
    for _, path in journal._list(journal.journal_dir, ".log"):
        data = journal._read(path)
        pos = len(SEGMENT_MAGIC)
        while pos + _FRAME.size <= len(data):
            length, _ = _FRAME.unpack_from(data, pos)
            end = pos + _FRAME.size + length
            if end > len(data):
                break                          # a torn tail: recovery drops it
            seq, record = decode_payload(memoryview(data)[pos + _FRAME.size:end])
            out.append((seq, _summary(record), path, pos))
            pos = end
    return out


def _summary(record) -> dict:
    keep = ("round", "strategy", "count", "labeled", "quarantined")
    return {"op": record.op, **{k: record.header[k] for k in keep if k in record.header}}


def repair_journal(state_dir: str, ttl: float = 60.0) -> dict:
    """Keep the journal's records up to the first repeated sequence number; set the rest aside.

    Returns ``{"kept_up_to": seq, "set_aside": [{"seq", "op", ...}], "snapshots": [...],
    "to": set-aside dir}`` (``set_aside`` empty when nothing was repeated). Raises
    :class:`rayal.pool.lock.PoolLockedError` while a coordinator holds the state dir.
    """
    lock = StateDirLock(state_dir, ttl=ttl)
    lock.acquire()
    try:
        journal = Journal(state_dir)
        if journal.local:
            records = _local_records(journal)
        else:
            records = []
            for _, path in journal._list(journal.journal_dir, ".rec"):
                records.extend((s, summ, path, 0) for s, summ in _object_record(journal, path))
        cut = next((i for i in range(1, len(records)) if records[i][0] != records[i - 1][0] + 1),
                   None)
        report = {"kept_up_to": records[-1][0] if records else 0, "set_aside": [],
                  "snapshots": [], "to": None}
        if cut is None:
            return report
        kept_up_to = records[cut - 1][0]
        target = join_uri(state_dir, time.strftime("set-aside-%Y%m%dT%H%M%S", time.gmtime()))
        fs = journal.fs
        fs.create_dir(f"{_fs_path(journal, target)}/journal", recursive=True)
        fs.create_dir(f"{_fs_path(journal, target)}/snapshots", recursive=True)
        report.update(kept_up_to=kept_up_to, to=target,
                      set_aside=[{"seq": s, **summ} for s, summ, _, _ in records[cut:]])
        if journal.local:
            _, _, first_path, offset = records[cut]
            segments = [p for _, p in journal._list(journal.journal_dir, ".log")]
            for path in segments[segments.index(first_path):]:
                start = offset if path == first_path else 0
                copy = f"{_fs_path(journal, target)}/journal/{path.rsplit('/', 1)[-1]}"
                with open(path, "rb") as src, open(copy, "wb") as dst:
                    src.seek(start)
                    dst.write(src.read())
                if start > len(SEGMENT_MAGIC):
                    with open(path, "r+b") as f:
                        f.truncate(start)
                else:
                    fs.delete_file(path)
        else:
            for _, _, path, _ in records[cut:]:
                fs.move(path, f"{_fs_path(journal, target)}/journal/{path.rsplit('/', 1)[-1]}")
        for seq, path in journal._list(journal.snapshot_dir, ".snap"):
            if seq >= kept_up_to:   # may hold either writer's state
                fs.move(path, f"{_fs_path(journal, target)}/snapshots/{path.rsplit('/', 1)[-1]}")
                report["snapshots"].append(path)
        return report
    finally:
        lock.release()


def _object_record(journal: Journal, path: str) -> list[tuple[int, dict]]:
    data = journal._read(path)
    if len(data) < _FRAME.size:
        return []
    length, _ = _FRAME.unpack_from(data, 0)
    if _FRAME.size + length > len(data):
        return []
    seq, record = decode_payload(memoryview(data)[_FRAME.size:_FRAME.size + length])
    return [(seq, _summary(record))]


def _fs_path(journal: Journal, uri: str) -> str:
    return resolve_filesystem(uri)[1]
