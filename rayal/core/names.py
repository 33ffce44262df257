"""A live, read-only tuple-like view of a registry's names (numpy-free, no rayal imports).

``UNITS = NameView(lambda: ...)`` stays current when a plugin registers a new entry after the
module that holds ``UNITS`` was imported, so ``unit in UNITS`` and ``list(UNITS)`` see it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable


class NameView(Sequence):
    """Sequence of names computed on every access by ``names()`` (registration order)."""

    def __init__(self, names: Callable[[], tuple[str, ...]]):
        self._names = names

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, item) -> bool:
        return item in self._names()

    def __add__(self, other) -> tuple:
        return tuple(self._names()) + tuple(other)

    def __radd__(self, other) -> tuple:
        return tuple(other) + tuple(self._names())

    def __eq__(self, other) -> bool:
        return tuple(self._names()) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._names()))

    def __repr__(self) -> str:
        return repr(tuple(self._names()))
