"""Split names with an optional slice: ``"val"`` or ``"val[24:]"``.

A slice takes a contiguous part of a split's frames, in the split's frame order, with Python's
slice semantics (no step; negative bounds count from the end). It is how one labelled split
serves two roles without sharing a frame: early stopping on ``train.val_split: "val[:24]"``,
evaluation on ``data.eval_split: "val[24:]"`` (the convention of TFDS's split slicing).
"""
from __future__ import annotations

import re

_SPLIT = re.compile(r"^(?P<name>[^\[\]:]+?)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")


def parse_split(split: str) -> tuple[str, slice | None]:
    """``"val[24:]"`` -> ``("val", slice(24, None))``; ``"val"`` -> ``("val", None)``.

    Raises:
        ValueError: naming the text, when it is not ``name`` or ``name[start:stop]`` (surrounding
            whitespace included: a split name is a folder or manifest key, used verbatim).
    """
    match = _SPLIT.match(split) if isinstance(split, str) and split == split.strip() else None
    if match is None:
        raise ValueError(f"split {split!r}: expected a split name, optionally sliced as "
                         f"name[start:stop], e.g. 'val' or 'val[24:]'")
    start, stop = match["start"], match["stop"]
    if start is None:
        return match["name"], None
    return match["name"], slice(int(start) if start else None, int(stop) if stop else None)


def check_split(field: str, split: str | None) -> None:
    """Config validation: ``split`` (None allowed) parses, else ValueError naming ``field``."""
    if split is None:
        return
    try:
        parse_split(split)
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from None
