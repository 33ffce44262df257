"""rayal's vocabulary, held once (numpy + pyarrow only; imports nothing from the rest of rayal):
annotation units, uncertainty measures, score-table columns, queries / budgets / pool status
codes, the strategy contract and registry, and plugin loading. See ``docs/extending.md``."""
from rayal.core.measures import (AGGREGATES, FRAME_MEASURES, MC_MEASURES, PIXEL_MEASURES,
                                 MeasureSpec, get_measure, measure_names, register_measure)
from rayal.core.plugins import load_plugins, resolve
from rayal.core.query import (LABELED, QUARANTINED, QUERY_SCHEMA, QUEUED, STATUS_NAMES, UNLABELED,
                              Budget, Query, split_keys, unit_keys)
from rayal.core.strategy import (RoundContext, Strategy, StrategyInfo, register_strategy,
                                 strategy_info)
from rayal.core.tables import score_column
from rayal.core.units import REGION_UNITS, UNITS, UnitSpec, get_unit, register_unit, unit_names

__all__ = ["AGGREGATES", "FRAME_MEASURES", "LABELED", "MC_MEASURES", "PIXEL_MEASURES", "QUARANTINED",
           "QUERY_SCHEMA", "QUEUED", "REGION_UNITS", "STATUS_NAMES", "UNITS", "UNLABELED", "Budget",
           "MeasureSpec", "Query", "RoundContext", "Strategy", "StrategyInfo", "UnitSpec",
           "get_measure", "get_unit", "load_plugins", "measure_names", "register_measure",
           "register_strategy", "register_unit", "resolve", "score_column", "strategy_info",
           "unit_names"]
