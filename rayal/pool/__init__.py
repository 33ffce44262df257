"""Pool state of an active-learning project: Arrow/numpy columns, durable journal + snapshots,
and the ``PoolCoordinator`` Ray actor that is its only writer.

* :mod:`rayal.pool.state` — :class:`PoolState` (immutable; ``plan_*`` + ``apply``).
* :mod:`rayal.pool.journal` — CRC-framed journal, atomic snapshots, recovery.
* :mod:`rayal.pool.lock` — the state directory's one-writer lease (local flock / S3 conditional PUT).
* :mod:`rayal.pool.coordinator` — the actor (imports Ray; loaded on first use here).
* :mod:`rayal.pool.export` — a round's query as parquet + JSON lines with region RLE/polygons.
* :mod:`rayal.pool.labels` — label summaries from mask files.
"""
from rayal.pool.journal import Journal, JournalCorruptError, RecoveryReport
from rayal.pool.lock import LeaseLostError, PoolLockedError, StateDirLock, read_lease
from rayal.pool.labels import LabelBatch, label_summaries, summarize, summary_table
from rayal.pool.state import FRAME_SCHEMA, UNITS, PoolState, Record, apply_record

_LAZY = {"PoolCoordinator", "get_or_create_coordinator", "shutdown_coordinator", "load_plugins",
         "coordinator_name", "pool_state_dir", "units_table"}

__all__ = ["PoolState", "Record", "apply_record", "UNITS", "FRAME_SCHEMA", "Journal",
           "JournalCorruptError", "RecoveryReport", "PoolLockedError", "LeaseLostError",
           "StateDirLock", "read_lease", "LabelBatch", "label_summaries", "summarize",
           "summary_table", "export_query", *sorted(_LAZY)]


def __getattr__(name):
    # the coordinator imports Ray (slow); state, journal and labels do not need it
    if name in _LAZY:
        from rayal.pool import coordinator

        return getattr(coordinator, name)
    if name == "export_query":
        from rayal.pool.export import export_query

        return export_query
    raise AttributeError(f"module 'rayal.pool' has no attribute {name!r}")
