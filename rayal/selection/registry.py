"""Strategies by name, like timm's ``register_model``: one module per strategy, one entry per name.

    @register_strategy("entropy", measure="entropy")   # defaults bound to the name
    class TopK(Strategy): ...

``get_strategy("entropy", aggregate="max")`` builds it with the name's defaults
overridden by the given parameters.
"""
from __future__ import annotations

import importlib
from typing import Callable

from rayal.selection.base import Strategy

_REGISTRY: dict[str, tuple[type[Strategy], dict]] = {}

# modules that register strategies when imported (one strategy per module)
STRATEGY_MODULES = ("random", "topk", "oreal", "madbal", "meal", "ceal", "suggestive",
                    "coreset", "density", "cereals", "vaal", "typiclust")


def register_strategy(name: str, **defaults) -> Callable[[type[Strategy]], type[Strategy]]:
    def wrap(cls: type[Strategy]) -> type[Strategy]:
        if name in _REGISTRY and _REGISTRY[name][0] is not cls:
            raise ValueError(f"strategy {name!r} is already registered by {_REGISTRY[name][0]}")
        _REGISTRY[name] = (cls, dict(defaults))
        return cls
    return wrap


def _load_all() -> None:
    for module in STRATEGY_MODULES:
        try:
            importlib.import_module(f"rayal.selection.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"rayal.selection.{module}":
                raise


def list_strategies() -> list[str]:
    """Names of every registered strategy, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_strategy(name: str, **params) -> Strategy:
    """Instantiate the strategy registered as ``name`` with its defaults updated by ``params``.

    The batch-diversity parameters (``diversity``, ``n_candidates``, ``dedup_threshold``,
    ``sequence_key``, ... see :mod:`rayal.selection.diversity`) are taken out and, when they
    ask for anything, wrap the strategy in that stage; every strategy composes with it.
    """
    from rayal.selection.diversity import Diverse, split_diversity_params, wants_diversity

    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; choose from {sorted(_REGISTRY)}")
    cls, defaults = _REGISTRY[name]
    params, diversity = split_diversity_params(params, cls)
    strategy = cls(**{**defaults, **params})
    strategy.name = name
    if wants_diversity(diversity):
        strategy = Diverse(strategy, **diversity)
        strategy.name = name
    return strategy
