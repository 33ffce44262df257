"""The open leases of one project's desk, indexed for a constant-cost lease path.

A lease is ``task id -> (annotator, until)`` (``until``: epoch seconds). :class:`LeaseBook`
keeps them with two indexes, so that nothing on the lease path walks every lease or every unit
of a round: per annotator (their open tasks, for "your own leases first") and by expiry (a
min-heap of ``(until, task)``, entries checked lazily against the book). Free units are found
by :class:`FreeUnits`, a min-heap of query positions.

Persistence is soft state (it survives the desk's process, not the machine; an expired or lost
lease costs nothing, labels are durable elsewhere): every change is one line appended to
``<dir>/leases.log`` (no fsync); when the log holds more than twice the open leases (and at
least :data:`COMPACT_MIN` lines), the book is written whole to ``<dir>/leases.json`` and the
log restarts. A desk restart loads the snapshot and replays the log.
"""
from __future__ import annotations

import heapq
import json
import os

SNAPSHOT, LOG = "leases.json", "leases.log"
COMPACT_MIN = 1024


class LeaseBook:
    """Open leases with per-annotator and expiry indexes; see the module docstring.

    ``directory``: where ``leases.json`` / ``leases.log`` live (created if missing).
    ``extra``: after construction, the snapshot's other keys (older desks kept ``done`` there).
    """

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.snapshot_path = os.path.join(directory, SNAPSHOT)
        self.log_path = os.path.join(directory, LOG)
        self._leases: dict[str, tuple[str, float]] = {}
        self._by_annotator: dict[str, dict[str, None]] = {}
        self._expiry: list[tuple[float, str]] = []
        saved = {}
        if os.path.exists(self.snapshot_path):
            with open(self.snapshot_path) as f:
                saved = json.load(f)
        self.extra = {k: v for k, v in saved.items() if k != "leases"}
        for tid, (who, until) in saved.get("leases", {}).items():
            self._set(tid, str(who), float(until))
        self._lines = 0
        if os.path.exists(self.log_path):
            with open(self.log_path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:   # a line cut by a crash: the rest of the log is lost
                        break
                    if "g" in entry:
                        self._set(entry["g"], entry["a"], float(entry["u"]))
                    else:
                        self._unset(entry["d"])
                    self._lines += 1
        self._log = open(self.log_path, "a")

    # --- in memory -----------------------------------------------------------------------
    def _set(self, tid: str, who: str, until: float) -> None:
        self._unset(tid)
        self._leases[tid] = (who, until)
        self._by_annotator.setdefault(who, {})[tid] = None
        heapq.heappush(self._expiry, (until, tid))

    def _unset(self, tid: str) -> bool:
        held = self._leases.pop(tid, None)
        if held is None:
            return False
        mine = self._by_annotator.get(held[0])
        if mine is not None:
            mine.pop(tid, None)
            if not mine:
                del self._by_annotator[held[0]]
        return True

    # --- the book --------------------------------------------------------------------------
    def get(self, tid: str) -> tuple[str, float] | None:
        """``(annotator, until)`` of a lease, expired or not (None: no lease)."""
        return self._leases.get(tid)

    def __contains__(self, tid: str) -> bool:
        return tid in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def items(self):
        return self._leases.items()

    def tasks_of(self, annotator: str) -> list[str]:
        """The annotator's leased task ids, in grant order."""
        return list(self._by_annotator.get(annotator, ()))

    def grant(self, tid: str, who: str, until: float) -> None:
        """Lease (or renew) ``tid`` to ``who`` until ``until``; logged."""
        self._set(tid, who, until)
        self._write({"g": tid, "a": who, "u": until})

    def drop(self, tid: str) -> bool:
        """End a lease (labelled, expired, no longer queued); logged; False if none was held."""
        if not self._unset(tid):
            return False
        self._write({"d": tid})
        return True

    def expire(self, now: float) -> list[str]:
        """Drop every lease whose ``until`` <= ``now``; returns their task ids. Cost: the
        expired entries only (the heap's stale entries, from renewals and drops, are skipped)."""
        gone = []
        while self._expiry and self._expiry[0][0] <= now:
            until, tid = heapq.heappop(self._expiry)
            held = self._leases.get(tid)
            if held is not None and held[1] == until:
                self.drop(tid)
                gone.append(tid)
        if len(self._expiry) > 4 * len(self._leases) + COMPACT_MIN:   # renewals pile up
            self._expiry = [(u, t) for t, (_, u) in self._leases.items()]
            heapq.heapify(self._expiry)
        return gone

    # --- persistence -------------------------------------------------------------------------
    def _write(self, entry: dict) -> None:
        self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._lines += 1

    def flush(self) -> None:
        """Hand the logged changes to the OS (no fsync); compact when the log is long."""
        self._log.flush()
        if self._lines > max(COMPACT_MIN, 2 * len(self._leases)):
            self.compact()

    def compact(self) -> None:
        """Write the whole book to ``leases.json`` (atomically) and restart the log."""
        from rayal.serve.labellog import write_soft

        write_soft(self.snapshot_path, json.dumps(
            {**self.extra, "leases": self._leases}).encode())
        self._log.close()
        self._log = open(self.log_path, "w")
        self._lines = 0


class FreeUnits:
    """Positions (query ranks order) of units that may be free: a min-heap with lazy checks.

    ``pop_free(is_free)`` returns the lowest position for which ``is_free(position)`` holds,
    discarding those that do not; ``push(position)`` offers one again (a lease dropped
    unlabelled). Each position is pushed once per time it becomes free, so a lease costs
    O(log N) amortised over a round, against O(N) for a scan of the query.
    """

    def __init__(self, n: int = 0):
        self._heap = list(range(n))
        self._in = set(self._heap)

    def push(self, position: int) -> None:
        if position not in self._in:
            self._in.add(position)
            heapq.heappush(self._heap, position)

    def pop_free(self, is_free) -> int | None:
        while self._heap:
            position = heapq.heappop(self._heap)
            self._in.discard(position)
            if is_free(position):
                return position
        return None


__all__ = ["LeaseBook", "FreeUnits", "SNAPSHOT", "LOG"]
