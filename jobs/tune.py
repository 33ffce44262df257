"""Ray job entry point for `rayal tune` (a Ray Tune sweep of simulated AL runs).

    ray job submit --working-dir . -- python jobs/tune.py --config configs/demo.yaml [--set KEY=VALUE ...]

Arguments other than ``--config`` / ``--set`` are passed on to ``rayal tune`` unchanged.
"""
from __future__ import annotations

import sys

from rayal.cli.main import job_entry

if __name__ == "__main__":
    sys.exit(job_entry("tune"))
