"""The digest of a pool state: sha256 over its logical content (:meth:`PoolState.digest`).

Its own module below :mod:`rayal.pool.state` and :mod:`rayal.pool.journal`: it reads a
state's fields and imports nothing of rayal.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np


def digest_state(state) -> str:
    """sha256 over the logical content of a state: per-unit values, not internal row ids, so
    the same mutations applied in another order (owner / reason / label row numbering) match."""
    h = hashlib.sha256(json.dumps([state.unit, state.num_classes, state.seq,
                                   sorted(state.requests.items())]).encode())
    for name in ("frame_id", "uri", "mask_uri"):
        h.update("\0".join(state.frames.column(name).fill_null("\1").to_pylist()).encode())
    for array in (state.keys, *(state.cols[n] for n in ("status", "round", "expiry", "dominant"))):
        h.update(np.ascontiguousarray(array).tobytes())
    for table, ids in ((state.owners, state.cols["owner"]), (state.reasons, state.cols["reason"])):
        h.update("\0".join(np.asarray(table + ("",), dtype=object)[ids].tolist()).encode())
    rows = state.cols["label_row"]
    h.update((rows >= 0).tobytes() + np.ascontiguousarray(state.label_counts[rows[rows >= 0]]).tobytes())
    for r in sorted(state.queries):
        h.update(json.dumps([r, state.queries[r].to_pylist()], default=str).encode())
    return h.hexdigest()
