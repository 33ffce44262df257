"""The ``selection.params`` a strategy is built with: one rule for ``rayal run`` (every round),
``rayal pool select`` and the up-front checks of ``run`` / ``compare`` / ``tune``.

The unit a strategy selects is the pool's: ``selection.params.unit`` defaults to ``pool.unit``
for every strategy that takes a ``unit``, and a different explicit value is refused (the pool
state holds units of one kind only). A strategy that takes ``committee`` (``suggestive``) is told
how many committee members scored the tables (``train.committee.members`` in
``scoring.mode: committee``, else 0).
"""
from __future__ import annotations

import inspect

from rayal.config import ConfigError, RayalConfig

__all__ = ["check_initial", "check_run", "check_selection", "check_strategy_params",
           "check_strategy_tables", "selection_params", "strategy_class", "strategy_takes"]


def strategy_class(name: str) -> type:
    """The registered class of strategy ``name`` (ValueError naming it when unknown)."""
    from rayal.selection import get_strategy, list_strategies

    if name not in list_strategies():
        raise ConfigError(f"unknown strategy {name!r}; choose from {list_strategies()}")
    return type(get_strategy(name))


def strategy_takes(name: str) -> set[str]:
    """Parameters (``selection.params`` keys) strategy ``name`` takes: its constructor's and the
    batch-diversity stage's (:mod:`rayal.selection.diversity`), which every strategy accepts."""
    from rayal.selection.diversity import PARAMS

    return (set(inspect.signature(strategy_class(name).__init__).parameters) - {"self"}) | set(PARAMS)


def check_strategy_params(name: str, params: dict, where: str,
                          config: RayalConfig | None = None, strategy_where: str | None = None) -> None:
    """Build the strategy once so that a bad parameter fails now, naming ``where``; with
    ``config``, also refuse a strategy that reads embeddings the scoring does not write
    (:func:`check_strategy_tables`; named ``strategy_where``, default ``where``)."""
    from rayal.selection import get_strategy

    unknown = sorted(set(params) - strategy_takes(name))
    if unknown:
        raise ConfigError(f"{where}: strategy {name!r} takes no parameter(s) {unknown}; it takes "
                          f"{sorted(strategy_takes(name))}")
    try:
        strategy = get_strategy(name, **params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    if config is not None:
        check_strategy_tables(strategy, params.get("unit", config.pool.unit),
                              strategy_where or where, config)


def check_strategy_tables(strategy, unit: str, where: str, config: RayalConfig) -> None:
    """A strategy that reads ``unit`` embeddings (``needs_embeddings``: TypiClust, ProbCover,
    core-set, the diversity stage, ...) with ``scoring.embeddings`` lacking that level is refused
    now, before a reference or a round is trained, instead of failing at its first selection.

    Raises:
        ConfigError: naming ``where``, the strategy and the setting to add.
    """
    from rayal.core.units import get_unit

    if not getattr(strategy, "needs_embeddings", False):
        return
    unit = getattr(strategy, "unit", unit)
    level = "frame" if get_unit(unit).level == "image" else "region"
    if level == "region" and config.scoring.embedding_model == "self_supervised":
        raise ConfigError(f"{where}: strategy {strategy.name!r} picks in {unit} embedding space, "
                          "which scoring.embedding_model 'self_supervised' does not give (frame "
                          "embeddings only): set scoring.embedding_model: model and add 'region' "
                          "to scoring.embeddings")
    if level not in config.scoring.embeddings:
        raise ConfigError(f"{where}: strategy {strategy.name!r} picks in {unit} embedding space; "
                          f"add '{level}' to scoring.embeddings (now {config.scoring.embeddings})")


def selection_params(config: RayalConfig, strategy: str | None = None,
                     params: dict | None = None) -> dict:
    """``params`` (default ``config.selection.params``) for ``strategy`` (default
    ``config.selection.strategy``) with ``unit`` set to ``config.pool.unit`` when the strategy
    takes a unit and the params do not name one.

    Raises:
        ConfigError: ``selection.params.unit`` names another unit than ``pool.unit``.
    """
    strategy = strategy or config.selection.strategy
    out = dict(config.selection.params if params is None else params)
    unit = out.get("unit")
    if unit is not None and unit != config.pool.unit:
        raise ConfigError(f"selection.params.unit {unit!r} differs from pool.unit "
                          f"{config.pool.unit!r}: the pool holds {config.pool.unit} units; drop "
                          f"selection.params.unit or set pool.unit")
    if unit is None and "unit" in strategy_takes(strategy):
        out["unit"] = config.pool.unit
    if "committee" not in out and "committee" in strategy_takes(strategy):
        # members on the score tables' MC axis (scoring.mode committee), 0 otherwise
        out["committee"] = config.train.committee.members if config.scoring.mode == "committee" else 0
    return out


def check_selection(config: RayalConfig, check_tables: bool = True) -> None:
    """Build ``selection.strategy`` with :func:`selection_params` once, so that an unknown
    strategy or a parameter it does not take (e.g. ``aggregate`` left in ``selection.params``
    after ``--set selection.strategy=random``) is a :class:`ConfigError` naming
    ``selection.params`` before any work starts. ``check_tables``: also refuse embeddings the
    config's scoring does not write (off for ``rayal pool select``, whose score directory may
    come from another config)."""
    strategy = config.selection.strategy
    try:
        strategy_class(strategy)
    except ConfigError as err:
        raise ConfigError(f"selection.strategy: {err}") from None
    params = selection_params(config)
    unknown = sorted(set(params) - strategy_takes(strategy))
    if unknown:   # typically left from the config's own strategy after --set selection.strategy=
        raise ConfigError(f"selection.params: strategy {strategy!r} takes no parameter(s) {unknown} "
                          f"(--set selection.params={{}} clears them); it takes "
                          f"{sorted(strategy_takes(strategy))}")
    check_strategy_params(strategy, params, "selection.params", config if check_tables else None,
                          strategy_where="selection.strategy")


def check_run(config: RayalConfig) -> None:
    """:func:`check_selection`, then :func:`check_initial`, before a simulated run starts."""
    check_selection(config)
    check_initial(config)


def check_initial(config: RayalConfig) -> None:
    """The cold-start strategy (``loop.initial_strategy`` with ``loop.initial_params``) checked
    as :func:`check_selection` checks the rounds' one, tables included."""
    initial = config.loop.initial_strategy
    try:
        strategy_class(initial)
    except ConfigError as err:
        raise ConfigError(f"loop.initial_strategy: {err}") from None
    check_strategy_params(initial, selection_params(config, initial, config.loop.initial_params),
                          "loop.initial_params", config, strategy_where="loop.initial_strategy")
