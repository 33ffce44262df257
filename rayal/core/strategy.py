"""The strategy contract and the strategy registry (timm-style: importing a module registers it).

A strategy is a class with constructor keyword arguments as its parameters (bad values raise
ValueError naming the parameter) and one method, :meth:`Strategy.select`, that maps one round's
score tables, a read-only pool view, a :class:`~rayal.core.query.Budget` and a seed to a
:class:`~rayal.core.query.Query`. Class attributes are its metadata:

- ``level`` (``"image"`` | ``"region"``) and ``units`` (supported units: ``"any"``,
  ``"region"`` = every region-level unit, or a tuple of names);
- ``supports_cost``: counts budgets in clicks as well as units;
- ``needs_embeddings``: it reads its unit's rows of the ``embeddings`` table
  (``scoring.embeddings``), checked against the config before any work starts;
- ``score_source``: whose score tables it selects from (``"model"``: the segmentation model's,
  or the name of an extra scorer the loop runs first, e.g. ``"vaal"``);
- :meth:`Strategy.round_params`: parameters it needs from the run each round (the AL round
  index, the run seed, the initial model's score tables for a manifold fitted once per run),
  read from a :class:`RoundContext`;
- :meth:`Strategy.training_extras`: what its round hands to training (e.g. CEAL's
  ``pseudo_label_threshold``).

The loop (``rayal run``) reads this metadata and never names a strategy. Register a class with
``@register_strategy("name", **defaults)``; plugins are modules that do so when imported
(:func:`rayal.core.plugins.load_plugins`, ``selection.plugins`` in the config).
numpy layer: no Ray, no torch; the table / pool argument types live in :mod:`rayal.selection`.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from rayal.core.plugins import load_env_plugins
from rayal.core.units import get_unit, unit_names

__all__ = ["RoundContext", "Strategy", "StrategyInfo", "register_strategy", "registered",
           "strategy_entry", "strategy_info"]


@dataclass
class RoundContext:
    """What the loop knows at the start of a selection round.

    round_index: AL round of the selection (0 = the first selection after the initial set).
    seed: the run's seed.
    labelled_frames: frame ids with at least one labelled unit.
    initial_scores: call to get the score directory of the initial model (round 0), scored
        on first call; for a manifold or index fitted once per run.
    """

    round_index: int
    seed: int
    labelled_frames: list = field(default_factory=list)
    initial_scores: Callable[[], str] | None = None


class Strategy(ABC):
    """Base class of every selection strategy; see the module docstring for the metadata."""

    name: ClassVar[str] = ""
    level: ClassVar[Literal["image", "region"]] = "image"
    units: ClassVar[str | tuple[str, ...]] = "any"
    supports_cost: ClassVar[bool] = False
    needs_embeddings: ClassVar[bool] = False
    score_source: ClassVar[str] = "model"

    @classmethod
    def round_params(cls, params: dict, context: RoundContext) -> dict:
        """Parameters to add for this round (the configured ``params``, defaults included, win)."""
        return {}

    @classmethod
    def training_extras(cls, params: dict) -> dict:
        """Values the round hands to training, from the strategy's parameters (e.g.
        ``{"pseudo_label_threshold": 0.004}``); empty by default."""
        return {}

    @abstractmethod
    def select(self, tables, pool, budget, seed: int):
        """(ScoreTables, PoolView, Budget, seed) -> Query; the same inputs give the same query."""


@dataclass(frozen=True)
class StrategyInfo:
    """Metadata of a registered strategy name: class, bound defaults, parameter names,
    supported units (resolved against the unit registry now), score source."""

    name: str
    cls: type
    defaults: dict
    params: tuple[str, ...]
    units: tuple[str, ...]
    score_source: str


_REGISTRY: dict[str, tuple[type, dict]] = {}


def register_strategy(name: str, **defaults) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as ``name`` with ``defaults`` bound to that name.

    Raises:
        ValueError: ``name`` is already registered by another class.
    """
    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name][0] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {_REGISTRY[name][0]}")
        _REGISTRY[name] = (cls, dict(defaults))
        return cls
    return wrap


def registered() -> dict[str, tuple[type, dict]]:
    """name -> (class, defaults) of everything registered in this process so far."""
    return dict(_REGISTRY)


def strategy_entry(name: str) -> tuple[type, dict]:
    """(class, defaults) of ``name``; ValueError naming it and the known names."""
    if name not in _REGISTRY:
        load_env_plugins()   # a worker process: the driver's plugins may register it
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose from {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def supported_units(cls: type) -> tuple[str, ...]:
    """Units a strategy class selects, resolved against the unit registry."""
    units = getattr(cls, "units", "any")
    if units == "any":
        return unit_names()
    if units == "region":
        return unit_names("region")
    for unit in units:
        get_unit(unit)
    return tuple(units)


def strategy_info(name: str) -> StrategyInfo:
    """:class:`StrategyInfo` of a registered name (import its module or plugin first)."""
    cls, defaults = strategy_entry(name)
    params = tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")
    return StrategyInfo(name, cls, dict(defaults), params, supported_units(cls),
                        getattr(cls, "score_source", "model"))


def round_params(name: str, params: dict, context: RoundContext) -> dict:
    """``params`` plus what strategy ``name`` asks of the run this round (explicit params win)."""
    cls, defaults = strategy_entry(name)
    merged = {**defaults, **params}
    extra: dict[str, Any] = cls.round_params(merged, context) if hasattr(cls, "round_params") else {}
    return {**extra, **params}
