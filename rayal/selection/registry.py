"""Strategies by name, like timm's ``register_model``: one module per strategy, one entry per name.

    @register_strategy("entropy", measure="entropy")   # defaults bound to the name
    class TopK(Strategy): ...

``get_strategy("entropy", aggregate="max")`` builds it with the name's defaults
overridden by the given parameters. The registry itself lives in :mod:`rayal.core.strategy`;
every module of this package is discovered and imported on the first lookup, so a new
strategy module registers itself by existing. Plugins outside rayal are imported with
:func:`rayal.core.load_plugins` (``selection.plugins`` in the config, ``--plugin``).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from rayal.core.strategy import register_strategy, registered, strategy_entry, strategy_info  # noqa: F401
from rayal.core.strategy import Strategy  # noqa: F401

# modules of this package that hold helpers, not strategies (not imported by discovery)
_NOT_STRATEGIES = frozenset({"base", "common", "registry", "diversity", "hashing", "spill"})
_loaded = False


def strategy_modules() -> tuple[str, ...]:
    """Modules of :mod:`rayal.selection` discovered as strategy modules, sorted."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                        if m.name not in _NOT_STRATEGIES and not m.name.startswith("_")))


# kept for callers that listed the built-in modules; derived, not maintained by hand
STRATEGY_MODULES = strategy_modules()


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in strategy_modules():
        try:
            importlib.import_module(f"rayal.selection.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"rayal.selection.{module}":
                raise
    _loaded = True


def list_strategies() -> list[str]:
    """Names of every registered strategy, sorted."""
    _load_all()
    return sorted(registered())


def get_strategy(name: str, **params) -> Strategy:
    """Instantiate the strategy registered as ``name`` with its defaults updated by ``params``.

    The batch-diversity parameters (``diversity``, ``n_candidates``, ``dedup_threshold``,
    ``sequence_key``, ... see :mod:`rayal.selection.diversity`) are taken out and, when they
    ask for anything, wrap the strategy in that stage; every strategy composes with it.

    Raises:
        ValueError: unknown ``name`` (naming the known ones) or a bad parameter.
    """
    from rayal.selection.diversity import Diverse, split_diversity_params, wants_diversity

    _load_all()
    cls, defaults = strategy_entry(name)
    params, diversity = split_diversity_params(params, cls)
    strategy = cls(**{**defaults, **params})
    strategy.name = name
    if wants_diversity(diversity):
        strategy = Diverse(strategy, **diversity)
        strategy.name = name
    return strategy


def get_strategy_info(name: str):
    """:class:`rayal.core.StrategyInfo` of ``name`` (built-in modules discovered first)."""
    _load_all()
    return strategy_info(name)


def inert_params(name: str, params: dict) -> list[tuple[str, str]]:
    """(parameter, what it needs) for each batch-diversity parameter in ``params`` that does
    nothing for strategy ``name`` without another one (``n_clusters`` without ``diversity:
    cluster_budget``; a name the strategy itself takes is its own, never inert);
    :func:`get_strategy` refuses them."""
    from rayal.selection.diversity import orphan_params, split_diversity_params

    _load_all()
    cls, _ = strategy_entry(name)
    return orphan_params(split_diversity_params(params, cls)[1])
