"""Selection strategies over score tables (pure numpy / sklearn / umap, no Ray)."""
from rayal.selection.base import (LABELED, QUARANTINED, QUEUED, UNLABELED, Budget, PoolView, Query,
                                  ScoreTables, Strategy, split_keys, unit_keys)
from rayal.selection.registry import get_strategy, list_strategies, register_strategy

__all__ = ["LABELED", "QUARANTINED", "QUEUED", "UNLABELED", "Budget", "PoolView", "Query",
           "ScoreTables", "Strategy", "get_strategy", "list_strategies", "register_strategy",
           "split_keys", "unit_keys"]
