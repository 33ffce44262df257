"""sequence_mix on hand-made video pools: counts per sequence, shares, neighbours."""
import pytest

from rayal.pipeline.study.sequences import sequence_mix

POOL = [f"A_{i:03d}" for i in range(10)] + [f"B_{i:03d}" for i in range(30)]


def test_counts_shares_and_neighbours():
    picked = ["A_001", "A_002", "A_003", "A_007", "B_010", "B_010", "B_020"]   # B_010: two regions
    mix = sequence_mix(picked, list(reversed(POOL)))                          # pool order is free
    assert (mix["units"], mix["frames"]) == (7, 6)
    assert mix["adjacent"] == 3                      # A_001-A_002-A_003; A_007, B_010, B_020 alone
    a, b = mix["by_sequence"]["A"], mix["by_sequence"]["B"]
    assert (a["units"], a["pool_frames"], a["pool_share"]) == (4, 10, 0.25)
    assert (b["units"], b["unit_share"]) == (3, 3 / 7)


def test_neighbours_are_pool_neighbours_within_one_sequence():
    pool = ["A_001", "A_005", "B_001"]               # A_001 and A_005 are neighbours in the pool
    assert sequence_mix(["A_001", "A_005"], pool)["adjacent"] == 2
    assert sequence_mix(["A_005", "B_001"], pool)["adjacent"] == 0   # the sequence boundary


def test_an_unmatched_id_is_its_own_sequence_and_a_stray_pick_is_named():
    mix = sequence_mix(["odd"], ["odd", "A_001"])
    assert mix["by_sequence"]["odd"]["units"] == 1 and mix["adjacent"] == 0
    assert mix["unmatched"] == 1
    with pytest.raises(ValueError, match="picked frame 'C_001' is not in the pool"):
        sequence_mix(["C_001"], POOL)


def test_frame_key_makes_every_frame_a_sequence():
    mix = sequence_mix(["A_001", "A_002"], POOL, "frame")
    assert mix["adjacent"] == 0 and mix["unmatched"] == 0 and len(mix["by_sequence"]) == len(POOL)
