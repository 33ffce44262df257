"""Sequence windows and the per-window cap (rayal.selection.sequence_cap)."""
from __future__ import annotations

import pytest

from rayal.selection import LABELED, QUARANTINED, PoolView
from rayal.selection.sequence_cap import SequenceKey, WindowCap


def test_sequence_key_groups():
    assert SequenceKey(r"(?P<seq>\w+?)_(?P<index>\d+)", 10)("0001TP_006690") == ("0001TP", 669)
    assert SequenceKey("frame", None)("x.png") == ("x.png",)
    # no seq group: the first other group; only an index group: the id without the index
    assert SequenceKey(r"^([a-z]+)_(?P<index>\d+)", 10)("cam_0042") == ("cam", 4)
    assert SequenceKey(r"_(?P<index>\d+)$", 10)("cam_left_0042") == ("cam_left_", 4)
    assert SequenceKey(r"^\d+", None)("0001TP_006690") == ("0001",)
    # a window counts frame numbers: CamVid's step of 30 makes 300 ten frames
    key = SequenceKey(r"^(?P<seq>[^_]+)_f?(?P<index>\d+)", 300)
    assert key("Seq05VD_f00270") == key("Seq05VD_f00000") != key("Seq05VD_f00300")
    # an unmatched id is a window of its own, and window_of says it did not match
    assert SequenceKey(r"^\d+_", None).window_of("x.png") is None
    assert SequenceKey(r"^\d+_", None)("x.png") == ("x.png",)


@pytest.mark.parametrize("bad", ["", 5, None, "("])
def test_sequence_key_refuses_bad_patterns(bad):
    with pytest.raises(ValueError, match="sequence_key"):
        SequenceKey(bad, None)


def test_proportional_caps_by_hand():
    """10 frames: s0 0-5 (two windows of 3), s1 0-3 (windows of 3 and 1); s1_003 quarantined,
    s0_000 and s0_001 labelled, a round of 4: T + B = 6 over F = 9 frames."""
    ids = [f"s0_{i}" for i in range(6)] + [f"s1_{i}" for i in range(4)]
    pool = PoolView.from_statuses(ids, {("s0_0", -1): LABELED, ("s0_1", -1): LABELED,
                                        ("s1_3", -1): QUARANTINED})
    caps = WindowCap(SequenceKey(r"^(?P<seq>s\d)_(?P<index>\d+)", 3), "proportional", pool, "image", 4)
    # ceil(3 / 9 * 6) = 2 for the 3-frame windows; s1's last window holds only a quarantined frame
    assert [caps.cap(caps.window(f)) for f in ("s0_0", "s0_3", "s1_0", "s1_3")] == [2, 2, 2, 0]
    assert not caps.allows(caps.window("s0_2"))       # two labelled already
    assert caps.allows(caps.window("s0_4"))
    caps.take(caps.window("s0_4")), caps.take(caps.window("s0_5"))
    assert not caps.allows(caps.window("s0_3"))
    # region units: the labelled whole frames do not count against a region-level cap
    regions = WindowCap(SequenceKey(r"^(?P<seq>s\d)_(?P<index>\d+)", 3), "proportional", pool, "superpixel", 4)
    assert regions.allows(regions.window("s0_2"))
    assert WindowCap(SequenceKey("^s", None), 2, pool, "image", 4).cap(("s",)) == 2
