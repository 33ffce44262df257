"""Ray job entry point for `rayal train` (training on the labelled set with Ray Train).

    ray job submit --working-dir . -- python jobs/train.py --config configs/demo.yaml [--set KEY=VALUE ...]

Arguments other than ``--config`` / ``--set`` are passed on to ``rayal train`` unchanged.
"""
from __future__ import annotations

import sys

from rayal.cli.main import job_entry

if __name__ == "__main__":
    sys.exit(job_entry("train"))
