"""Run metadata: versions.json ties a run to the code that made it."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from rayal.config import RayalConfig
from rayal.pipeline.runtime import source_revision, write_run_metadata

ROOT = Path(__file__).resolve().parents[2]


def test_versions_json_records_the_source_commit(tmp_path):
    write_run_metadata(RayalConfig(seed=7), str(tmp_path))
    meta = json.loads((tmp_path / "versions.json").read_text())
    assert meta["seed"] == 7 and meta["versions"]["rayal"]
    if (ROOT / ".git").exists() and shutil.which("git"):   # a checkout: HEAD's commit, maybe +dirty
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert meta["versions"]["rayal_source"].split("+")[0] == head == source_revision().split("+")[0]


def test_a_run_resumed_in_another_environment_keeps_the_earlier_ones(tmp_path, monkeypatch):
    from rayal.pipeline import environment
    from rayal.pipeline.runtime import run_environment

    a, b = {"numerics_probe": "aa", "torch_threads": 2}, {"numerics_probe": "bb"}
    current = [a]
    monkeypatch.setattr(environment, "environment_record", lambda threads=None: dict(current[0]))
    write_run_metadata(RayalConfig(), str(tmp_path))
    write_run_metadata(RayalConfig(), str(tmp_path))      # resumed in the same environment
    assert run_environment(str(tmp_path)) == a
    current[0] = dict(a, python="3.12.1")                 # only what does not decide the numbers
    write_run_metadata(RayalConfig(), str(tmp_path))
    assert run_environment(str(tmp_path)) == current[0]   # one environment still, newest record
    current[0] = a
    write_run_metadata(RayalConfig(), str(tmp_path))
    current[0] = b
    write_run_metadata(RayalConfig(), str(tmp_path), computes=False)   # finished: read back only
    assert run_environment(str(tmp_path)) == a
    write_run_metadata(RayalConfig(), str(tmp_path))      # resumed elsewhere, rounds left
    current[0] = a
    write_run_metadata(RayalConfig(), str(tmp_path))      # and back where it started
    meta = json.loads((tmp_path / "versions.json").read_text())
    assert meta["earlier_environments"] == [a, b]
    assert run_environment(str(tmp_path)) == {"segments": [a, b, a]}    # oldest first
