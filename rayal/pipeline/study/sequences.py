"""Where a strategy's picks fall in a video pool: per sequence, and next to each other.

Top-B by uncertainty over a video pool can fill a round with neighbouring frames of one hard
sequence. :func:`sequence_mix` measures it for one run: units picked per sequence against the
sequence's share of the pool, and the share of picked frames whose previous or next pool frame
of the same sequence (frame-id order) was picked too. Sequences come from a ``sequence_key``
regex, as in the diversity stage (:class:`rayal.selection.sequence_cap.SequenceKey`).
"""
from __future__ import annotations

from collections import Counter, defaultdict

from rayal.selection.sequence_cap import SequenceKey

# CamVid-style ids, "0016E5_08007": the sequence is what comes before the first underscore
DEFAULT_SEQUENCE_KEY = r"^(?P<seq>[^_]+)_"


def sequence_mix(picked_frames: list[str], pool_frames: list[str],
                 sequence_key: str = DEFAULT_SEQUENCE_KEY) -> dict:
    """Picks per sequence and how many sit next to another pick.

    picked_frames: the frame of every picked unit (a frame repeats once per picked region);
    pool_frames: every frame of the pool (order does not matter). A frame whose id the regex
    does not match is a sequence of its own.

    Returns ``{"units": n, "frames": distinct picked frames, "adjacent": picked frames with a
    picked neighbour, "unmatched": pool frames the regex does not match, "by_sequence":
    {sequence: {"units", "pool_frames", "pool_share", "unit_share"}}}`` (shares in [0, 1]).

    Raises:
        ValueError: a picked frame that is not in the pool (naming it).
    """
    key = SequenceKey(sequence_key, None)

    def sequence(frame_id: str) -> str:
        return key(frame_id)[0]

    pool = sorted(set(pool_frames))
    members: dict[str, list[str]] = defaultdict(list)
    for frame in pool:
        members[sequence(frame)].append(frame)
    known = set(pool)
    stray = next((f for f in picked_frames if f not in known), None)
    if stray is not None:
        raise ValueError(f"picked frame {stray!r} is not in the pool ({len(pool)} frames)")
    units = Counter(sequence(f) for f in picked_frames)
    taken = set(picked_frames)
    adjacent = 0
    for frames in members.values():
        for i, frame in enumerate(frames):
            if frame in taken and any(0 <= j < len(frames) and frames[j] in taken for j in (i - 1, i + 1)):
                adjacent += 1
    total = max(len(picked_frames), 1)
    unmatched = 0 if key.by_frame else sum(1 for f in pool if key.regex.search(f) is None)
    return {"units": len(picked_frames), "frames": len(taken), "adjacent": adjacent,
            "unmatched": unmatched,
            "by_sequence": {s: {"units": units.get(s, 0), "pool_frames": len(f),
                                "pool_share": len(f) / len(pool), "unit_share": units.get(s, 0) / total}
                            for s, f in sorted(members.items())}}
