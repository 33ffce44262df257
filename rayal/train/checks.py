"""Label-space checks run before training: degenerate data is refused, suspicious data warned of.

- A split (the labelled training set, or the validation split) with **no labelled pixel** at
  all (every mask pixel is ``ignore_index``) raises :class:`DegenerateSplitError` naming the
  split: training on it does nothing, validating on it gives a NaN mIoU every epoch.
- A split whose labelled pixels are **all background** (class 0) gets a
  :class:`~rayal.data.decode.DataWarning` naming the split, the classes that never occur and
  the mask values seen; when many pixels are ``ignore_index`` it says so, which is the usual
  cause (0/255 binary masks with the default ``ignore_index`` 255 turn every foreground pixel
  into void).
- Otherwise, frames labelled as a whole whose pixels are all background are named (with their
  mask values), a few per process.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from rayal.data.decode import DataWarning, warn_data

__all__ = ["DegenerateSplitError", "LabelStats", "label_stats", "check_labels"]

_IGNORED_HINT = 0.2     # share of ignore_index pixels above which the 0/255 hint is given
_LISTED = 3


class DegenerateSplitError(ValueError):
    """A split that cannot be trained or validated on (no labelled pixel); names the split."""


@dataclass
class LabelStats:
    """Pixel statistics of one split's masks: ``counts`` (C,) labelled pixels per class,
    ``ignored`` pixels equal to ``ignore_index``, ``values`` every mask value seen, and
    ``background_only`` ``(frame_id, values)`` of whole-frame labels with no non-background pixel."""

    name: str
    num_classes: int
    ignore_index: int
    frames: int = 0
    counts: np.ndarray = None
    ignored: int = 0
    values: set = field(default_factory=set)
    background_only: list = field(default_factory=list)

    def __post_init__(self):
        if self.counts is None:
            self.counts = np.zeros(self.num_classes, np.int64)


def label_stats(name: str, items: Iterable[tuple[str, np.ndarray, bool]], num_classes: int,
                ignore_index: int) -> LabelStats:
    """Statistics of ``(frame_id, mask (H, W), whole_frame)`` items; ``name`` names the split
    in messages (e.g. ``"validation split 'val'"``)."""
    stats = LabelStats(name, int(num_classes), int(ignore_index))
    for frame_id, mask, whole in items:
        mask = np.asarray(mask)
        present, freq = np.unique(mask, return_counts=True)
        values = {int(v) for v in present}
        stats.frames += 1
        stats.values |= values
        for v, n in zip(present.tolist(), freq.tolist()):
            if v == ignore_index:
                stats.ignored += int(n)
            elif 0 <= v < num_classes:
                stats.counts[v] += int(n)
        labelled = values - {ignore_index}
        if whole and num_classes > 1 and labelled <= {0}:
            stats.background_only.append((frame_id, sorted(values)))
    return stats


def _values(values, ignore_index: int) -> str:
    return ", ".join(f"{v} (ignore_index)" if v == ignore_index else str(v) for v in sorted(values))


def check_labels(stats: LabelStats, class_names: Sequence[str] | None = None, *,
                 warn: bool = True) -> None:
    """Raise :class:`DegenerateSplitError` when ``stats`` has no labelled pixel; warn (when
    ``warn``) when it has no pixel of any non-background class, or name frames that have none."""
    ii = stats.ignore_index
    if stats.frames and int(stats.counts.sum()) == 0:
        raise DegenerateSplitError(
            f"{stats.name}: none of its {stats.frames} frame(s) has a labelled pixel (mask values: "
            f"{_values(stats.values, ii)}); every pixel is ignore_index {ii}. Check the masks and "
            "data.ignore_index")
    if not warn or stats.num_classes < 2 or not stats.frames:
        return
    names = list(class_names) if class_names else [f"class {c}" for c in range(stats.num_classes)]
    if int(stats.counts[1:].sum()) == 0:
        absent = ", ".join(f"{names[c]} ({c})" for c in range(1, stats.num_classes))
        total = int(stats.counts.sum()) + stats.ignored
        share = stats.ignored / total if total else 0.0
        hint = ""
        if share >= _IGNORED_HINT:
            hint = (f"; {share:.0%} of its pixels are ignore_index {ii}: if {ii} marks a class "
                    f"(0/{ii} binary masks), map it to a class id or set data.ignore_index")
        warnings.warn(f"{stats.name}: no pixel of any class but {names[0]} (0) in "
                      f"{stats.frames} frame(s); {absent} never "
                      f"{'occurs' if stats.num_classes == 2 else 'occur'} (mask values: "
                      f"{_values(stats.values, ii)}){hint}", DataWarning, stacklevel=2)
        return
    for frame_id, values in stats.background_only[:_LISTED]:
        warn_data("background_only", f"{stats.name}: frame {frame_id} has no pixel of any class "
                                     f"but {names[0]} (0); its mask values are "
                                     f"{_values(values, ii)}")
