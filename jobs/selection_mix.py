"""Where each strategy of a ``rayal compare`` took its units in a video pool.

    python jobs/selection_mix.py runs/camvid_image [--sequence-key REGEX] [--from-round 1]

For every run under DIR (``<strategy>/seed<k>[_draw<d>]/pool/<project>``, read from the journal without
the lease, so copied folders and finished runs work), the units labelled in rounds
``--from-round`` and later (round 0 is the shared random start) are counted per sequence
(:func:`rayal.pipeline.study.sequences.sequence_mix`) and summed over the runs (seeds and
training draws). Printed per
strategy: units per sequence with their share (the sequence's share of the pool in brackets),
and the share of picked frames next to another picked frame. ``--json`` prints the sums.

Refused, with the reason: DIR without runs, a run without a pool journal.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from rayal.pipeline.study.sequences import DEFAULT_SEQUENCE_KEY, sequence_mix
from rayal.pool.coordinator import read_state, units_table


def run_pools(root: Path) -> dict[str, list[Path]]:
    """{strategy: [pool state dir of each seed]} under a comparison folder."""
    found: dict[str, list[Path]] = defaultdict(list)
    for journal in sorted(root.glob("*/seed*/pool/*/journal")):
        found[journal.parents[3].name].append(journal.parent)
    return dict(found)


def picked(state_dir: Path, from_round: int) -> tuple[list[str], list[str]]:
    """(frame of every unit labelled in a round >= from_round, every pool frame)."""
    state = read_state(str(state_dir))
    if state is None:
        raise ValueError(f"{state_dir}: the pool journal is empty")
    units = units_table(state, "labeled").to_pydict()
    frames = [f for f, r in zip(units["frame_id"], units["round"]) if r >= from_round]
    return frames, state.frame_ids.to_pylist()


def strategy_mix(pools: list[Path], sequence_key: str, from_round: int) -> dict:
    """Sums of :func:`sequence_mix` over one strategy's seeds."""
    total = {"runs": len(pools), "units": 0, "frames": 0, "adjacent": 0, "unmatched": 0,
             "pool_frames": 0, "by_sequence": {}}
    for state_dir in pools:
        frames, pool = picked(state_dir, from_round)
        mix = sequence_mix(frames, pool, sequence_key)
        total["pool_frames"] += len(pool)
        for name in ("units", "frames", "adjacent", "unmatched"):
            total[name] += mix[name]
        for seq, row in mix["by_sequence"].items():
            into = total["by_sequence"].setdefault(seq, {"units": 0, "pool_share": row["pool_share"]})
            into["units"] += row["units"]
    return total


def describe(strategy: str, mix: dict) -> str:
    parts = [f"{seq} {row['units']} ({row['units'] / max(mix['units'], 1):.0%}; pool {row['pool_share']:.0%})"
             for seq, row in mix["by_sequence"].items()]
    adjacent = mix["adjacent"] / max(mix["frames"], 1)
    return (f"{strategy}: {mix['units']} units over {mix['runs']} run(s): " + ", ".join(parts)
            + f"; {adjacent:.0%} of {mix['frames']} picked frames next to another")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="a rayal compare output folder")
    parser.add_argument("--sequence-key", default=DEFAULT_SEQUENCE_KEY,
                        help=f"regex naming a frame's sequence (group 'seq'); default {DEFAULT_SEQUENCE_KEY!r}")
    parser.add_argument("--from-round", type=int, default=1, help="first round counted (default 1)")
    parser.add_argument("--json", action="store_true", help="print the sums as JSON")
    args = parser.parse_args(argv)
    pools = run_pools(args.dir)
    if not pools:
        print(f"error: no runs under {args.dir} (expected <strategy>/seed<k>/pool/<project>/journal)",
              file=sys.stderr)
        return 2
    try:
        mixes = {s: strategy_mix(p, args.sequence_key, args.from_round) for s, p in pools.items()}
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for strategy, mix in mixes.items():
        if mix["units"] == 0:
            print(f"note: {strategy}: no unit labelled from round {args.from_round} on", file=sys.stderr)
        if mix["unmatched"] == mix["pool_frames"]:
            print(f"note: --sequence-key {args.sequence_key!r} matches no frame id: every frame "
                  f"is its own sequence", file=sys.stderr)
            break
    if args.json:
        print(json.dumps(mixes, indent=2))
    else:
        for strategy, mix in mixes.items():
            print(describe(strategy, mix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
