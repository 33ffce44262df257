"""Ray job entry point: ``ray job submit -- python jobs/score.py --config configs/camvid.yaml``."""
from __future__ import annotations

import argparse
import sys

from rayal.cli.main import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="score the pool (see `rayal score --help`)")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args, rest = parser.parse_known_args()
    argv = ["score", args.config] + [x for o in args.overrides for x in ("--set", o)] + rest
    sys.exit(main(argv))
