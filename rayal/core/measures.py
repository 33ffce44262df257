"""The uncertainty-measure registry: every measure once; config validation, the top-k
strategies and the scoring engine's outputs derive from it.

A :class:`MeasureSpec` says whether a measure is a **pixel** map (reduced to frames and regions
by each of ``AGGREGATES``; score column ``{name}_{aggregate}``) or a **frame** score (one value
per frame; column ``{name}``), and whether it needs MC samples. ``compute`` is its reference
implementation in torch: pixel measures map ``p`` (B, C, H, W) softmax probabilities — or, when
``needs_mc``, samples (T, B, C, H, W) — to (B, H, W); frame measures to (B,).

Add a measure with one call; it is then a valid ``scoring.measures`` entry, the engine
computes it, and a top-k strategy of the same name ranks by it::

    from rayal.core import register_measure

    register_measure("top1_gap", compute=lambda p: 1 - p.max(dim=1).values)

Built-in measures are computed by the engine's fused kernel (``native``); their ``compute``
names the reference in :mod:`rayal.scoring.measures`. numpy layer: no torch import here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from rayal.core.names import NameView
from rayal.core.plugins import load_env_plugins, resolve

__all__ = ["AGGREGATES", "FRAME_MEASURES", "MC_MEASURES", "MeasureSpec", "PIXEL_MEASURES",
           "get_measure", "measure_names", "on_measure_registered", "register_measure", "score_column"]

AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class MeasureSpec:
    """One uncertainty measure.

    name: config / table name.  kind: ``"pixel"`` (a map, reduced per unit) or ``"frame"``.
    needs_mc: computed from MC samples (needs ``scoring.mc_samples >= 2``).
    aggregations: pixel-to-unit reductions it supports (``()`` for frame measures).
    compute: torch reference, see the module docstring; ``"module:function"`` allowed.
    native: computed by the scoring engine's own kernels (built-ins only).
    """

    name: str
    kind: Literal["pixel", "frame"] = "pixel"
    needs_mc: bool = False
    aggregations: tuple[str, ...] = AGGREGATES
    compute: Callable | str | None = None
    native: bool = False

    def columns(self, aggregates=AGGREGATES) -> list[str]:
        """Score-table column names of this measure for the configured ``aggregates``."""
        if self.kind == "frame":
            return [self.name]
        return [score_column(self.name, a) for a in aggregates if a in self.aggregations]

    def function(self) -> Callable:
        """The compute function (imported now when given as a string)."""
        if self.compute is None:
            raise ValueError(f"measure {self.name!r} has no compute function")
        return resolve(self.compute)


_MEASURES: dict[str, MeasureSpec] = {}
_LISTENERS: list[Callable[[MeasureSpec], None]] = []


def score_column(measure: str, aggregate: str | None = None) -> str:
    """Column of a measure in the score tables: ``{measure}_{aggregate}`` for pixel measures,
    ``{measure}`` for frame measures (e.g. ``area_disagreement``) and unknown ones without an
    aggregate."""
    spec = _MEASURES.get(measure)
    if (spec is not None and spec.kind == "frame") or aggregate is None:
        return measure
    return f"{measure}_{aggregate}"


def register_measure(name: str, *, compute: Callable | str, kind: str = "pixel",
                     needs_mc: bool = False, aggregations=AGGREGATES,
                     native: bool = False) -> MeasureSpec:
    """Register (or identically re-register) a measure; returns its :class:`MeasureSpec`.

    Listeners (the top-k strategy family) are told of every new measure.

    Raises:
        ValueError: bad name / kind / aggregations, or ``name`` taken by another definition.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"measure name must be an identifier, got {name!r}")
    if kind not in ("pixel", "frame"):
        raise ValueError(f"measure {name!r}: kind must be 'pixel' or 'frame', got {kind!r}")
    aggregations = () if kind == "frame" else tuple(aggregations)
    bad = [a for a in aggregations if a not in AGGREGATES]
    if bad or (kind == "pixel" and not aggregations):
        raise ValueError(f"measure {name!r}: aggregations must be a non-empty subset of "
                         f"{list(AGGREGATES)}, got {list(aggregations)}")
    spec = MeasureSpec(name, kind, bool(needs_mc), aggregations, compute, native)
    if name in _MEASURES:
        if _MEASURES[name] != spec:
            raise ValueError(f"measure {name!r} is already registered with another definition")
        return spec
    _MEASURES[name] = spec
    for listener in list(_LISTENERS):
        listener(spec)
    return spec


def on_measure_registered(listener: Callable[[MeasureSpec], None]) -> None:
    """Call ``listener(spec)`` for every measure registered so far and every later one."""
    _LISTENERS.append(listener)
    for spec in list(_MEASURES.values()):
        listener(spec)


def get_measure(name: str) -> MeasureSpec:
    """The :class:`MeasureSpec` of ``name``; ValueError naming it and the known measures."""
    if isinstance(name, str) and name not in _MEASURES:
        load_env_plugins()   # a worker process: the driver's plugins may register it
    try:
        return _MEASURES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown measure {name!r}; choose from {list(_MEASURES)}") from None


def measure_names(kind: str | None = None, *, needs_mc: bool | None = None,
                  native: bool | None = None) -> tuple[str, ...]:
    """Registered measure names (registration order) filtered by kind / needs_mc / native."""
    return tuple(n for n, s in _MEASURES.items()
                 if (kind is None or s.kind == kind) and (needs_mc is None or s.needs_mc == needs_mc)
                 and (native is None or s.native == native))


PIXEL_MEASURES = NameView(lambda: measure_names("pixel"))
FRAME_MEASURES = NameView(measure_names)   # every measure a config may name (pixel + frame)
MC_MEASURES = NameView(lambda: measure_names(needs_mc=True))

_REF = "rayal.scoring.measures:"
for _name, _mc in (("entropy", False), ("margin", False), ("least_confidence", False),
                   ("bald", True), ("vote_entropy", True), ("variance", True)):
    register_measure(_name, compute=_REF + _name, needs_mc=_mc, native=True)
register_measure("area_disagreement", compute=_REF + "area_disagreement", kind="frame",
                 needs_mc=True, native=True)
del _name, _mc
