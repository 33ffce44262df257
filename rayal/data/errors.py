"""Errors for bad input items (frames, masks).

A bad item must never be reported anonymously: every error carries the frame
id and/or URI it concerns, so the pool coordinator can quarantine exactly that
item with a readable reason.
"""

from __future__ import annotations

__all__ = ["FrameError", "LabelError"]


class FrameError(Exception):
    """A frame (image) that cannot be read or decoded.

    Attributes:
        frame_id: the frame's id, or None if unknown.
        uri: where the frame was read from, or None (decoded from bytes).
        reason: a short, human-readable cause, e.g. ``"missing file"``.

    ``str(e)`` names the item first, e.g.
    ``"frame 0001TP_006690 (/data/train/0001TP_006690.png): missing file"``.
    """

    kind = "frame"

    def __init__(self, reason: str, *, frame_id: str | None = None, uri: str | None = None):
        self.reason = str(reason)
        self.frame_id = None if frame_id is None else str(frame_id)
        self.uri = None if uri is None else str(uri)
        super().__init__(self._format())

    def item(self) -> str:
        """The item's name: ``"frame ID (URI)"``, ``"frame ID"``, ``"URI"`` or ``"<bytes>"``."""
        if self.frame_id is not None and self.uri is not None:
            return f"{self.kind} {self.frame_id} ({self.uri})"
        if self.frame_id is not None:
            return f"{self.kind} {self.frame_id}"
        if self.uri is not None:
            return f"{self.kind} {self.uri}"
        return f"{self.kind} <bytes>"

    def _format(self) -> str:
        return f"{self.item()}: {self.reason}"

    def __str__(self) -> str:  # keep in sync if attributes are edited after creation
        return self._format()

    def __reduce__(self):
        # Exceptions with keyword-only args do not pickle by default; Ray ships
        # errors between processes, so make them round-trip.
        return (_rebuild, (type(self), self.reason, self.frame_id, self.uri))


class LabelError(FrameError):
    """A label mask that is unreadable, of the wrong shape/size, or holds unknown class ids."""

    kind = "mask of frame"

    def item(self) -> str:
        if self.frame_id is None:
            return "mask " + (self.uri if self.uri is not None else "<bytes>")
        return super().item()


def _rebuild(cls, reason, frame_id, uri):
    return cls(reason, frame_id=frame_id, uri=uri)
