"""Sequence windows of a video pool, and the per-window cap of the diversity stage (pure Python).

A ``sequence_key`` is a regular expression searched in each ``frame_id``. It names the frame's
video sequence by its group ``seq``; without one, by its first other group; with only an
``index`` group, by the frame id with the index cut out; with no group, by the whole match.
Its optional group ``index`` (digits) is the frame's number in the sequence: with a
``sequence_window`` w, frames numbered ``k*w .. k*w + w - 1`` form one window (w counts frame
numbers, not frames: CamVid numbers its frames in steps of 30, so 300 is 10 frames). Without an
``index`` group or a window, a window is the whole sequence. ``"frame"`` makes every frame a
window of its own. A frame id the regex does not match is a window of its own, and the stage
warns how many did not match (the proportional cap refuses a regex that matches no pool frame).

:class:`WindowCap` counts one round's picks per window against ``per_sequence``: an integer
k (at most k picks a window in this round; units labelled earlier do not count), or
``"proportional"``: a window holding f_w of the pool's F frames (quarantined frames left
out) takes a pick only while its labelled, queued and picked units number fewer than
``ceil(f_w / F * (T + B))``, T the units of this level labelled or queued before the round
(DESIGN.md, "Batch diversity"). That reads every pool frame's window once a round: one regex
search per frame, about 4 s and 300 MB per million frames on one core.
"""
from __future__ import annotations

import copy
import re
import warnings
from collections import Counter

import numpy as np

from rayal.core.query import LABELED, QUARANTINED, QUEUED, split_keys
from rayal.errors import RayalWarning

PROPORTIONAL = "proportional"


class SequenceKey:
    """frame_id -> sequence window id, from a regex (see the module docstring).

    Raises ValueError naming ``sequence_key`` for an empty, non-string or invalid regex.
    """

    def __init__(self, pattern: str, window: int | None):
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"sequence_key must be a regular expression or 'frame', got {pattern!r}")
        self.pattern, self.window = pattern, window
        self.by_frame = pattern == "frame"
        try:
            self.regex = None if self.by_frame else re.compile(pattern)
        except re.error as err:
            raise ValueError(f"sequence_key is not a valid regular expression ({err}): {pattern!r}")

    def window_of(self, frame_id: str) -> tuple | None:
        """The window of ``frame_id``: (sequence,) or (sequence, window number); None when the
        regex does not match it."""
        if self.by_frame:
            return (frame_id,)
        m = self.regex.search(frame_id)
        if m is None:
            return None
        index = m.groupdict().get("index")
        seq = self._sequence(m, frame_id)
        if self.window and index is not None and index.isdigit():
            return (seq, int(index) // self.window)
        return (seq,)

    def __call__(self, frame_id: str) -> tuple:
        """The window of ``frame_id``; an unmatched id is a window of its own."""
        window = self.window_of(frame_id)
        return window if window is not None else (frame_id,)

    @staticmethod
    def _sequence(m: re.Match, frame_id: str) -> str:
        named = m.re.groupindex
        if named.get("seq") and m.group("seq") is not None:
            return m.group("seq")
        others = [k for k in range(1, m.re.groups + 1) if k not in named.values()]
        if others and m.group(others[0]) is not None:
            return m.group(others[0])
        if "index" in named and m.group("index") is not None:
            start, end = m.span("index")
            return frame_id[:start] + frame_id[end:]
        return m.group(0)


class WindowCap:
    """One round's per-window counts and caps (see the module docstring).

    key: the :class:`SequenceKey`; per_sequence: int >= 1 or ``"proportional"``; pool: the
    :class:`rayal.selection.base.PoolView`; unit: ``"image"`` counts whole-frame units, any
    other unit counts regions; n: the round's budget B.
    """

    def __init__(self, key: SequenceKey, per_sequence: int | str, pool, unit: str, n: int):
        self.key, self.per_sequence = key, per_sequence
        self._windows: dict[str, tuple | None] = {}
        self.held: Counter = Counter()
        self.sizes: Counter = Counter()
        self.total = self.frames = 0
        if per_sequence == PROPORTIONAL:
            self._count_pool(pool, unit, n)

    def _count_pool(self, pool, unit: str, n: int) -> None:
        ids = pool.frame_ids.to_pylist()
        window = [self.window(f) for f in ids]
        frame, region = split_keys(pool.keys)
        out = set(frame[(region == -1) & (pool.status == QUARANTINED)].tolist())
        self.sizes = Counter(w for i, w in enumerate(window) if i not in out)
        level = (region == -1) if unit == "image" else (region >= 0)
        taken = frame[np.isin(pool.status, (LABELED, QUEUED)) & level]
        self.held = Counter(window[i] for i in taken.tolist())
        self.total, self.frames = len(taken) + n, max(len(ids) - len(out), 1)

    def fresh(self) -> "WindowCap":
        """A copy with this round's picks undone (the pool's counts and the window memo kept:
        the memo is shared, so :meth:`check_matches` on either sees every frame looked at)."""
        out = copy.copy(self)
        out.held = Counter(self.held)
        return out

    def window(self, frame_id: str) -> tuple:
        """The window of ``frame_id`` (memoised, so misses count each frame once)."""
        if frame_id not in self._windows:
            self._windows[frame_id] = self.key.window_of(frame_id)
        window = self._windows[frame_id]
        return window if window is not None else (frame_id,)

    def cap(self, window: tuple) -> int:
        if self.per_sequence == PROPORTIONAL:
            return -(-self.sizes.get(window, 0) * self.total // self.frames)
        return self.per_sequence

    def allows(self, window: tuple) -> bool:
        return self.held.get(window, 0) < self.cap(window)

    def take(self, window: tuple) -> None:
        self.held[window] += 1

    def check_matches(self) -> None:
        """Warn (RayalWarning) when the regex left frame ids unmatched. With the proportional
        cap, which reads every pool frame, raise ValueError naming ``sequence_key`` when it
        matched none of the pool; an integer cap sees only the candidates it looked at, and
        only warns."""
        misses = [f for f, w in self._windows.items() if w is None]
        if not misses:
            return
        looked = len(self._windows)
        pool = self.per_sequence == PROPORTIONAL
        where = f"{looked} pool frame ids" if pool else f"{looked} candidate frame ids looked at"
        if pool and len(misses) == looked:
            raise ValueError(f"sequence_key {self.key.pattern!r} matches none of the {where} "
                             f"(e.g. {misses[0]!r}): no window can be capped")
        warnings.warn(f"sequence_key {self.key.pattern!r} does not match {len(misses)} of the "
                      f"{where} (e.g. {misses[0]!r}); each of them is a window of its own",
                      RayalWarning, stacklevel=3)
