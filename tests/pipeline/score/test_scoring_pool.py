"""Long-lived scoring actors (rayal.pipeline.score.scoring_pool): same rows as the Ray Data job."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rayal.config import load_config
from rayal.pipeline.score.score_job import run_scoring
from rayal.pipeline.score.scoring_pool import ScoringPool


def _config(out: Path, **changes):
    base = ["data.synthetic.num_frames=10", "data.synthetic.height=48", "data.synthetic.width=64",
            "scoring.units=[superpixel]", "scoring.superpixel.n_segments=12", "scoring.batch_size=4",
            "scoring.embeddings=[frame,region]", "ray.cpus_per_actor=0.5", "ray.decode_cpus=0.25",
            "ray.actors=2", f"output_dir={out}"]
    return load_config(Path(__file__).parents[1] / "scoring.yaml", base + [f"{k}={v}" for k, v in changes.items()])


def _sorted(path: Path, table: str, keys: list[str]):
    return pq.read_table(path / table).to_pandas().sort_values(keys).reset_index(drop=True)


def test_pool_scores_equal_the_ray_data_job_and_follow_the_checkpoint(ray_local, tmp_path: Path):
    run_scoring(_config(tmp_path / "data"), progress=False)
    pool = ScoringPool(_config(tmp_path / "unused"))
    try:
        first = run_scoring(_config(tmp_path / "pool"), progress=False, pool=pool)
        again = run_scoring(_config(tmp_path / "pool2", seed=7), progress=False, pool=pool)
    finally:
        pool.close()
    assert first.frames_scored == 10 and first.frames_quarantined == 0
    a, b = _sorted(tmp_path / "data", "frames", ["frame_id"]), _sorted(tmp_path / "pool", "frames", ["frame_id"])
    assert list(a.frame_id) == list(b.frame_id)
    for col in ("entropy_mean", "bald_max", "area_disagreement"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5, atol=1e-7)
    ra = _sorted(tmp_path / "data", "regions", ["frame_id", "unit", "region_id"])
    rb = _sorted(tmp_path / "pool", "regions", ["frame_id", "unit", "region_id"])
    assert ra[["frame_id", "region_id", "pixel_count"]].equals(rb[["frame_id", "region_id", "pixel_count"]])
    # another seed is another model: the actors reloaded it (scores differ)
    c = _sorted(tmp_path / "pool2", "frames", ["frame_id"])
    assert again.frames_scored == 10 and not np.allclose(b.entropy_mean, c.entropy_mean)
