"""jobs/selection_mix.py over pool journals laid out as a comparison folder."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from rayal.config.sections import PoolConfig
from rayal.pool.coordinator import PoolCoordinator
from rayal.pool.labels import summary_table

JOB = Path(__file__).parents[2] / "jobs" / "selection_mix.py"
FRAMES = [f"S1_{i:03d}" for i in range(6)] + [f"S2_{i:03d}" for i in range(2)]


def _job():
    spec = importlib.util.spec_from_file_location("selection_mix", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: Path, strategy: str, seed: int, rounds: list[list[str]]) -> None:
    """A finished run's pool: every frame registered, ``rounds[r]`` labelled in round r."""
    pool = PoolCoordinator(PoolConfig(project="run", state_dir=str(root / strategy / f"seed{seed}" / "pool")))
    try:
        pool.register(pa.table({"frame_id": FRAMES, "uri": [f"/x/{f}.png" for f in FRAMES]}))
        for r, frames in enumerate(rounds):
            counts = np.ones((len(frames), 3), np.int64)
            pool.ingest(summary_table(frames, [-1] * len(frames), [0] * len(frames), counts), r)
    finally:
        pool.close()


def test_sums_over_seeds_from_round_1(tmp_path, capsys):
    _run(tmp_path, "uncertain", 0, [["S2_000"], ["S1_000", "S1_001"]])
    _run(tmp_path, "uncertain", 1, [["S2_001"], ["S1_004", "S1_005"]])
    _run(tmp_path, "random", 0, [["S1_002"], ["S1_000", "S2_000"]])
    job = _job()
    assert job.main([str(tmp_path), "--json"]) == 0
    mixes = json.loads(capsys.readouterr().out)
    u, r = mixes["uncertain"], mixes["random"]
    assert (u["runs"], u["units"], u["frames"], u["adjacent"]) == (2, 4, 4, 4)   # round 0 not counted
    assert u["by_sequence"]["S1"]["units"] == 4 and u["by_sequence"]["S2"]["units"] == 0
    assert u["by_sequence"]["S1"]["pool_share"] == 0.75
    assert (r["units"], r["adjacent"]) == (2, 0)
    assert job.main([str(tmp_path), "--from-round", "0"]) == 0
    assert "uncertain: 6 units over 2 run(s)" in capsys.readouterr().out
    assert job.main([str(tmp_path), "--from-round", "5", "--sequence-key", "^x(?P<seq>y)"]) == 0
    err = capsys.readouterr().err
    assert "no unit labelled from round 5 on" in err and "matches no frame id" in err


def test_a_folder_without_runs_is_refused(tmp_path, capsys):
    assert _job().main([str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err
