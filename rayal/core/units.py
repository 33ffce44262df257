"""The annotation-unit registry: every unit kind once, with what the rest of rayal needs to know.

A unit is ``(frame_id, region_id)``; ``region_id = -1`` for a whole image. A :class:`UnitSpec`
says at which **level** a unit is ranked (``"image"``: rows of the ``frames`` score table;
``"region"``: rows of the ``regions`` table whose ``unit`` column is the unit's name), how its
**region map** is computed from a frame, how it is **labelled** (``"full"``: the true pixels of
the unit; ``"dominant"``: its dominant class, one click) and what a label **costs** in clicks.

Add a unit with one call (hooks may be ``"package.module:function"`` strings, imported on use)::

    from rayal.core import register_unit

    register_unit("stripe", level="region", label="full",
                  region_map=lambda image, scoring: (np.arange(image.shape[0])[:, None] * 4
                                                     // image.shape[0]).repeat(image.shape[1], 1),
                  regions_per_frame=lambda scoring: 4)

numpy layer: imports nothing from the rest of rayal; config, data, selection, pool, train and
pipeline derive their unit lists and branches from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from rayal.core.names import NameView
from rayal.core.plugins import load_env_plugins, resolve

__all__ = ["REGION_UNITS", "UNITS", "UnitSpec", "get_unit", "register_unit", "unit_names"]

Hook = Callable | str | None
LEVELS = ("image", "region")
LABEL_RULES = ("full", "dominant")


@dataclass(frozen=True)
class UnitSpec:
    """One annotation unit kind.

    name: the unit's name (``pool.unit``, ``scoring.units``, the ``unit`` column of tables).
    level: ``"image"`` (one unit per frame, region_id -1) or ``"region"``.
    label: ``"full"`` (train on the unit's true pixels) or ``"dominant"`` (its dominant class).
    region_map: ``(image uint8 (H, W, 3), scoring config) -> int32 (H, W)`` consecutive region
        ids 0..R-1; None for image-level units (one region).
    regions_per_frame: ``(scoring config) -> int`` regions per frame; exact when
        ``exact_count`` (a grid), nominal otherwise (superpixels are counted in the score tables).
    clicks: ``(mask (H, W), region_map (H, W) | None, region_ids (N,), ignore_index) -> (N,)``
        estimated clicks per unit; None: 1 per unit for ``dominant``, polygon clicks
        (:func:`rayal.data.oracle.unit_clicks`) for ``full``.
    """

    name: str
    level: Literal["image", "region"]
    label: Literal["full", "dominant"] = "full"
    region_map: Hook = None
    regions_per_frame: Hook = None
    clicks: Hook = None
    exact_count: bool = True

    @property
    def table(self) -> str:
        """Score table whose rows are units of this kind: ``"frames"`` or ``"regions"``."""
        return "frames" if self.level == "image" else "regions"

    @property
    def embedding_unit(self) -> str:
        """Value of the embeddings table's ``unit`` column for this kind (``"frame"`` for image)."""
        return "frame" if self.level == "image" else self.name

    def compute_region_map(self, image: np.ndarray, scoring) -> np.ndarray:
        """int32 (H, W) region map of ``image`` (H, W, 3) under ``scoring`` (ScoringConfig)."""
        if self.level == "image":
            return np.zeros(np.asarray(image).shape[:2], np.int32)
        return np.asarray(resolve(self.region_map)(image, scoring), np.int32)

    def units_per_frame(self, scoring) -> int:
        """Regions per frame under ``scoring`` (1 for image-level units)."""
        if self.level == "image":
            return 1
        return int(resolve(self.regions_per_frame)(scoring))

    def unit_clicks(self, mask: np.ndarray, region_map: np.ndarray | None, region_ids,
                    ignore_index: int) -> np.ndarray:
        """(N,) estimated clicks to label the listed units of one frame."""
        if self.clicks is not None:
            return np.asarray(resolve(self.clicks)(mask, region_map, region_ids, ignore_index))
        if self.label == "dominant":
            return np.ones(len(region_ids), np.int64)
        unit_clicks = resolve("rayal.data.oracle:unit_clicks")
        return np.asarray(unit_clicks(mask, region_map, region_ids, "full", ignore_index))


_UNITS: dict[str, UnitSpec] = {}


def register_unit(name: str, *, level: str, label: str = "full", region_map: Hook = None,
                  regions_per_frame: Hook = None, clicks: Hook = None,
                  exact_count: bool = True) -> UnitSpec:
    """Register (or identically re-register) a unit kind; returns its :class:`UnitSpec`.

    Raises:
        ValueError: bad name / level / label rule, a region unit without ``region_map`` and
            ``regions_per_frame``, or ``name`` already registered with another definition.
    """
    if not isinstance(name, str) or not name.isidentifier() or name == "frame":
        raise ValueError(f"unit name must be an identifier other than 'frame', got {name!r}")
    if level not in LEVELS:
        raise ValueError(f"unit {name!r}: level must be one of {list(LEVELS)}, got {level!r}")
    if label not in LABEL_RULES:
        raise ValueError(f"unit {name!r}: label must be one of {list(LABEL_RULES)}, got {label!r}")
    if level == "region" and (region_map is None or regions_per_frame is None):
        raise ValueError(f"unit {name!r}: a region unit needs region_map and regions_per_frame hooks")
    spec = UnitSpec(name, level, label, region_map, regions_per_frame, clicks, exact_count)
    if name in _UNITS and _UNITS[name] != spec:
        raise ValueError(f"unit {name!r} is already registered with another definition")
    _UNITS[name] = spec
    return spec


def get_unit(name: str) -> UnitSpec:
    """The :class:`UnitSpec` of ``name``; ValueError naming it and the known units otherwise."""
    if isinstance(name, str) and name not in _UNITS:
        load_env_plugins()   # a worker process: the driver's plugins may register it
    try:
        return _UNITS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown unit {name!r}; choose from {list(_UNITS)}") from None


def unit_names(level: str | None = None) -> tuple[str, ...]:
    """Registered unit names (registration order), optionally only those of one ``level``."""
    return tuple(n for n, s in _UNITS.items() if level is None or s.level == level)


UNITS = NameView(unit_names)                              # every unit, live
REGION_UNITS = NameView(lambda: unit_names("region"))     # region-level units, live

register_unit("image", level="image", label="full")
register_unit("patch", level="region", label="full",
              region_map="rayal.data.regions:patch_region_map",
              regions_per_frame=lambda scoring: int(np.prod(scoring.grid)))
register_unit("superpixel", level="region", label="dominant",
              region_map="rayal.data.regions:superpixel_region_map",
              regions_per_frame=lambda scoring: int(scoring.superpixel.n_segments), exact_count=False)
