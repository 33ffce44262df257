"""Ray job entry point for `rayal run` (the whole active-learning loop (score, select, label, retrain per round)).

    ray job submit --working-dir . -- python jobs/run.py --config configs/demo.yaml [--set KEY=VALUE ...]

Arguments other than ``--config`` / ``--set`` are passed on to ``rayal run`` unchanged.
"""
from __future__ import annotations

import sys

from rayal.cli.main import job_entry

if __name__ == "__main__":
    sys.exit(job_entry("run"))
