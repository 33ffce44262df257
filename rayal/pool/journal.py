"""Durability of the pool state: an append-only journal of records plus periodic snapshots.

Layout under the pool's state directory (a local path or an ``s3://`` / ``gs://`` URI)::

    journal/<first_seq>.log   local: segment files of framed records, appended + fsynced
    journal/<seq>.rec         object stores: one object per record (a PUT is atomic)
    snapshots/<seq>.snap      Arrow IPC tables + JSON meta + CRC32 trailer

A record is framed as ``<u32 length><u32 crc32(payload)><payload>`` with
``payload = <u32 n><n bytes of JSON {seq, op, header}><Arrow IPC stream of the body, or nothing>``.
:meth:`Journal.append` returns only after the bytes are fsynced (local) or the
object is closed, i.e. its upload completed (object stores), so an
acknowledged mutation survives a crash of the process or the machine.

Snapshots are written to a temporary name and renamed (local: ``os.replace`` +
directory fsync). Object stores have no rename: the temporary object is
written, then copied to its final key and deleted (``FileSystem.move``); the
final key appears atomically when the server-side copy completes, so readers
see a whole snapshot or none, and a leftover ``.tmp-*`` object is ignored.
The last two snapshots, and the journal needed to replay from the older one,
are kept, so one unreadable snapshot is survivable.

Recovery = newest readable snapshot + replay of every later record. A torn
last record (partial length prefix, partial payload, CRC mismatch at the end,
or a zero-filled tail) is the signature of a crash mid-append: it was never
acknowledged, so it is dropped, reported in :class:`RecoveryReport` and
logged, and the segment is truncated before new records are appended. Damage
anywhere else raises :class:`JournalCorruptError` instead of losing records.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from rayal.data import has_scheme, join_uri, makedirs, resolve_filesystem
from rayal.pool.labels import label_counts_array
from rayal.pool.state import UNIT_COLUMNS, PoolState, Record

log = logging.getLogger("rayal.pool")

SEGMENT_MAGIC = b"RAYALJ1\n"
SNAPSHOT_MAGIC = b"RAYALS1\n"
_FRAME = struct.Struct("<II")       # payload length, crc32
_TRAILER = struct.Struct("<QI")     # footer length, crc32 of blobs + footer
_IPC = pa.ipc.IpcWriteOptions(compression="zstd" if pa.Codec.is_available("zstd") else None)


class JournalCorruptError(RuntimeError):
    """The journal or snapshots are damaged in a way a crash cannot explain (not a torn tail)."""


@dataclass
class RecoveryReport:
    """What recovery found: snapshot used, records replayed, torn / unreadable pieces dropped."""

    state_dir: str
    snapshot: str | None = None
    snapshot_seq: int = 0
    replayed: int = 0
    last_seq: int = 0
    torn: list = field(default_factory=list)               # {file, offset, bytes, reason}
    skipped_snapshots: list = field(default_factory=list)  # {file, reason}

    def to_dict(self) -> dict:
        return asdict(self)


# --- record framing ---------------------------------------------------------------------------
def _ipc_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue()


def encode_record(seq: int, record: Record) -> bytes:
    """One framed record (length + CRC32 + JSON header + optional Arrow IPC body)."""
    meta = json.dumps({"seq": int(seq), "op": record.op, "header": record.header},
                      separators=(",", ":")).encode()
    body = b"" if record.body is None else _ipc_bytes(record.body).to_pybytes()
    payload = struct.pack("<I", len(meta)) + meta + body
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload) -> tuple[int, Record]:
    (n,) = struct.unpack_from("<I", payload, 0)
    meta = json.loads(bytes(payload[4:4 + n]))
    rest = payload[4 + n:]
    body = pa.ipc.open_stream(pa.py_buffer(bytes(rest))).read_all() if len(rest) else None
    return meta["seq"], Record(meta["op"], meta["header"], body)


def scan_records(data: bytes, where: str, start: int = 0) -> tuple[list, int, dict | None]:
    """Parse framed records from ``data[start:]`` -> (records, end of the last good one, torn).

    ``torn`` describes a dropped damaged tail (None if the data ends cleanly); damage
    followed by non-zero bytes raises :class:`JournalCorruptError`.
    """
    view, pos, out = memoryview(data), start, []
    while pos < len(data):
        reason = None
        if len(data) - pos < _FRAME.size:
            reason = "partial length prefix"
        else:
            length, crc = _FRAME.unpack_from(view, pos)
            end = pos + _FRAME.size + length
            if end > len(data):
                reason = f"partial record ({len(data) - pos - _FRAME.size} of {length} bytes)"
            elif length < 4 or zlib.crc32(view[pos + _FRAME.size:end]) != crc:
                reason = "crc mismatch"
                if end < len(data) and any(view[end:]):
                    raise JournalCorruptError(f"{where}: damaged record at byte {pos} followed "
                                              f"by {len(data) - end} more bytes")
        if reason is not None:
            return out, pos, {"file": where, "offset": pos, "bytes": len(data) - pos, "reason": reason}
        out.append(decode_payload(view[pos + _FRAME.size:end]))
        pos = end
    return out, pos, None


# --- state <-> tables (snapshots) -------------------------------------------------------------
def state_to_tables(state: PoolState) -> tuple[dict[str, pa.Table], dict]:
    units = pa.table({"key": state.keys, **{n: state.cols[n] for n in UNIT_COLUMNS}})
    tables = {"frames": state.frames, "units": units}
    if state.label_counts.shape[1]:
        tables["labels"] = pa.table({"counts": label_counts_array(state.label_counts)})
    if state.queries:
        tables["queries"] = pa.concat_tables([
            t.append_column("round", pa.array(np.full(t.num_rows, r, np.int32)))
            for r, t in sorted(state.queries.items())])
    meta = {"unit": state.unit, "num_classes": state.num_classes, "owners": list(state.owners),
            "reasons": list(state.reasons), "seq": state.seq,
            "requests": {str(r): h for r, h in state.requests.items()},
            "num_labels": int(state.label_counts.shape[0])}
    return tables, meta


def state_from_tables(tables: dict[str, pa.Table], meta: dict) -> PoolState:
    units = tables["units"]
    cols = {n: units.column(n).to_numpy().astype(UNIT_COLUMNS[n][0], copy=False) for n in UNIT_COLUMNS}
    c = meta["num_classes"] or 0
    counts = np.zeros((meta["num_labels"], c), np.int32)
    if "labels" in tables:
        flat = tables["labels"].column("counts").combine_chunks().flatten().to_numpy()
        counts = flat.reshape(-1, c)
    queries = {}
    if "queries" in tables:
        q = tables["queries"]
        rounds = q.column("round").to_numpy()
        for r in np.unique(rounds):
            queries[int(r)] = q.filter(pa.array(rounds == r)).drop_columns(["round"])
    return PoolState(unit=meta["unit"], frames=tables["frames"], keys=units.column("key").to_numpy(),
                     cols=cols, label_counts=counts, num_classes=meta["num_classes"],
                     owners=tuple(meta["owners"]), reasons=tuple(meta["reasons"]), queries=queries,
                     requests={int(r): h for r, h in meta["requests"].items()}, seq=meta["seq"])


# --- the journal ------------------------------------------------------------------------------
def fsync_dir(path: str) -> None:
    """fsync a local directory (a file created or renamed in it then survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_fsynced(fd: int, data: bytes) -> None:
    """Write all of ``data`` at the end of the open local file ``fd``, then fsync; returns once it
    is on disk. On any failure (e.g. disk full) the file is cut back to its size before, so no
    half record stands before the next one."""
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.ftruncate(fd, size)
        raise


def _seq_of(name: str) -> int | None:
    stem, _, ext = name.partition(".")
    return int(stem) if stem.isdigit() and ext in ("log", "rec", "snap") else None


class Journal:
    """Append-only journal + snapshots of one pool under ``root``; one writer at a time.

    ``fence`` (optional) is called before every append and snapshot and raises when this
    writer may no longer write (:meth:`rayal.pool.lock.StateDirLock.check`).
    """

    def __init__(self, root: str, fence=None):
        self.root = root
        self.fence = fence
        self.local = not has_scheme(root) or root.startswith("file://")
        self.fs, self.path = resolve_filesystem(root)
        self.journal_dir, self.snapshot_dir = join_uri(root, "journal"), join_uri(root, "snapshots")
        makedirs(self.journal_dir)
        makedirs(self.snapshot_dir)
        self.last_seq = 0
        self._fd: int | None = None
        self._recovered = False

    # --- listing helpers
    def _list(self, uri: str, ext: str) -> list[tuple[int, str]]:
        fs, path = resolve_filesystem(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        found = [(_seq_of(i.base_name), i.path) for i in infos
                 if i.type == pafs.FileType.File and i.base_name.endswith(ext)]
        return sorted((s, p) for s, p in found if s is not None)

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    # --- snapshots
    def write_snapshot(self, state: PoolState) -> str:
        """Write ``state`` as snapshot ``state.seq`` (temp + rename), then prune old files."""
        if self.fence is not None:
            self.fence()
        tables, meta = state_to_tables(state)
        final = f"{self.path.rstrip('/')}/snapshots/{state.seq:020d}.snap"
        tmp = f"{final}.tmp-{os.getpid()}"
        index, crc, offset = [], 0, len(SNAPSHOT_MAGIC)
        stream = open(tmp, "wb") if self.local else self.fs.open_output_stream(tmp)
        with stream as f:
            f.write(SNAPSHOT_MAGIC)
            for name, table in tables.items():
                blob = _ipc_bytes(table)
                f.write(blob)
                crc = zlib.crc32(memoryview(blob), crc)
                index.append([name, offset, blob.size])
                offset += blob.size
            footer = json.dumps({"meta": meta, "tables": index}).encode()
            f.write(footer)
            f.write(_TRAILER.pack(len(footer), zlib.crc32(footer, crc)) + SNAPSHOT_MAGIC)
            if self.local:
                f.flush()
                os.fsync(f.fileno())
        if self.local:
            os.replace(tmp, final)
            fsync_dir(os.path.dirname(final))
            self._open_segment(state.seq + 1)   # later records go to a fresh segment
        else:
            self.fs.move(tmp, final)           # S3 / GCS: server-side copy, then delete
        self._prune()
        return final

    def _load_snapshot(self, path: str) -> PoolState:
        data = self._read(path)
        if data[:8] != SNAPSHOT_MAGIC or data[-8:] != SNAPSHOT_MAGIC:
            raise ValueError("not a complete snapshot (bad magic)")
        n, crc = _TRAILER.unpack_from(data, len(data) - 8 - _TRAILER.size)
        end = len(data) - 8 - _TRAILER.size
        if zlib.crc32(memoryview(data)[8:end]) != crc:
            raise ValueError("crc mismatch")
        footer = json.loads(data[end - n:end])
        buf = pa.py_buffer(data)
        tables = {name: pa.ipc.open_stream(buf.slice(off, size)).read_all()
                  for name, off, size in footer["tables"]}
        return state_from_tables(tables, footer["meta"])

    def _prune(self) -> None:
        snaps = self._list(self.snapshot_dir, ".snap")
        if len(snaps) < 2:
            return
        keep_from = snaps[-2][0]      # replay from the older kept snapshot must stay possible
        for _, path in snaps[:-2]:
            self.fs.delete_file(path)
        ext = ".log" if self.local else ".rec"
        files = self._list(self.journal_dir, ext)
        for i, (first, path) in enumerate(files):
            # a segment's records end where the next one starts; a .rec holds one record
            last = files[i + 1][0] - 1 if self.local and i + 1 < len(files) else first
            if (self.local and i + 1 == len(files)) or last > keep_from:
                continue
            self.fs.delete_file(path)

    # --- recovery
    def recover(self, repair: bool = True) -> tuple[PoolState | None, list[tuple[int, Record]], RecoveryReport]:
        """Newest readable snapshot + the records after it; torn tails dropped and reported
        (and cut from the files unless ``repair`` is False: a read-only look, no appends after)."""
        report = RecoveryReport(state_dir=self.root)
        state = None
        for seq, path in reversed(self._list(self.snapshot_dir, ".snap")):
            try:
                state = self._load_snapshot(path)
                report.snapshot, report.snapshot_seq = path, seq
                break
            except Exception as err:  # noqa: BLE001 - any unreadable snapshot falls back to an older one
                report.skipped_snapshots.append({"file": path, "reason": f"{type(err).__name__}: {err}"})
                log.warning("pool snapshot %s unreadable (%s); trying an older one", path, err)
        found = self._read_local(report, repair) if self.local else self._read_objects(report, repair)
        records = [(s, r) for s, r, _ in found]
        expected = report.snapshot_seq + 1
        replay = [(s, r, where) for s, r, where in found if s > report.snapshot_seq]
        for s, _, where in replay:
            if s < expected:
                raise JournalCorruptError(
                    f"{where}: journal record {s} appears twice: two coordinators wrote this pool "
                    f"at once (a rayal without the state-dir lease); `rayal pool repair` keeps "
                    f"records up to {s} of the first writer and sets the rest aside")
            if s != expected:
                raise JournalCorruptError(f"{where}: journal record {expected} is missing "
                                          f"(next found: {s}); snapshot at {report.snapshot_seq}")
            expected += 1
        replay = [(s, r) for s, r, _ in replay]
        self.last_seq = max([report.snapshot_seq] + [s for s, _ in records])
        report.replayed, report.last_seq = len(replay), self.last_seq
        for torn in report.torn:
            log.warning("pool journal: dropped torn record %s", torn)
        self._recovered = True
        return state, replay, report

    def _read_local(self, report: RecoveryReport, repair: bool) -> list:
        segments, records = self._list(self.journal_dir, ".log"), []
        for i, (_, path) in enumerate(segments):
            data = self._read(path)
            last = i + 1 == len(segments)
            if data[:len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
                if not (last and SEGMENT_MAGIC.startswith(data)):
                    raise JournalCorruptError(f"{path}: not a rayal journal segment")
                good, torn = 0, {"file": path, "offset": 0, "bytes": len(data), "reason": "partial header"}
            else:
                found, good, torn = scan_records(data, path, len(SEGMENT_MAGIC))
                records.extend((s, r, path) for s, r in found)
            if torn is not None:
                if not last:
                    raise JournalCorruptError(f"{path}: damaged tail in a segment that is not the last")
                report.torn.append(torn)
                if not repair:
                    continue
                with open(path, "r+b") as f:   # drop the torn bytes before appending again
                    f.truncate(good)
                    if good == 0:
                        f.write(SEGMENT_MAGIC)
                    os.fsync(f.fileno())
        if segments and repair:
            self._fd = os.open(segments[-1][1], os.O_WRONLY | os.O_APPEND)
        return records

    def _read_objects(self, report: RecoveryReport, repair: bool) -> list:
        objects, records = self._list(self.journal_dir, ".rec"), []
        for i, (_, path) in enumerate(objects):
            data = self._read(path)
            found, _, torn = scan_records(data, path)
            if torn is not None or len(found) != 1:
                if i + 1 != len(objects):
                    raise JournalCorruptError(f"{path}: damaged journal object that is not the last")
                report.torn.append(torn or {"file": path, "offset": 0, "bytes": len(data),
                                            "reason": "empty object"})
                if repair:
                    self.fs.delete_file(path)
                continue
            records.extend((s, r, path) for s, r in found)
        return records

    # --- appending
    def _open_segment(self, first_seq: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        path = os.path.join(self.path, "journal", f"{first_seq:020d}.log")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if os.fstat(self._fd).st_size == 0:
            os.write(self._fd, SEGMENT_MAGIC)
            os.fsync(self._fd)
            fsync_dir(os.path.dirname(path))

    def append(self, record: Record) -> int:
        """Durably append ``record``; returns its sequence number once it is on disk."""
        if not self._recovered:
            raise RuntimeError("call Journal.recover() before appending")
        if self.fence is not None:
            self.fence()
        seq = self.last_seq + 1
        data = encode_record(seq, record)
        if self.local:
            if self._fd is None:
                self._open_segment(seq)
            append_fsynced(self._fd, data)
        else:
            with self.fs.open_output_stream(f"{self.path.rstrip('/')}/journal/{seq:020d}.rec") as f:
                f.write(data)
        self.last_seq = seq
        return seq

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

