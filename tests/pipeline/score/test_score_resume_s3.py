"""`rayal score --resume` with ``output_dir`` on S3 (the ``s3`` fixture: moto's server).

A real ``rayal score`` driver process, connected to this session's local Ray, dies like a
``kill -9`` (``os._exit``: no ``finally``, no destructor, no upload completed) at one of two
moments: in the middle of a part set (its part files are uploads in progress), or after a part
set's files are uploaded but before its commit marker. Every part object in the bucket is then a
whole parquet file; a resume deletes the ones without a marker and finishes the job, and the
tables hold each frame once, with the scores of an uninterrupted run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rayal.config import load_config
from rayal.data import io
from rayal.pipeline.score.score_job import run_scoring
from rayal.pipeline.score.sink import TABLES, read_markers

HERE = Path(__file__).parents[1]   # tests/pipeline: scoring.yaml
N = 24
SETTINGS = ["data.synthetic.height=32", "data.synthetic.width=48", f"data.synthetic.num_frames={N}",
            "scoring.units=[patch]", "scoring.grid=[2,2]", "scoring.embeddings=[frame]",
            "scoring.mc_samples=4", "scoring.top_k_regions=null", "scoring.batch_size=3",
            "scoring.commit_frames=6", "scoring.commit_seconds=1000",
            "ray.cpus_per_actor=0.5", "ray.decode_cpus=0.25"]

# The driver: `rayal score`, ended by os._exit(9) when it reaches the chosen moment.
DRIVER = textwrap.dedent("""
    import os, sys
    from rayal.cli.main import main
    from rayal.pipeline import storage
    from rayal.pipeline.score import sink

    where = sys.argv[1]
    if where == "mid-part":      # 2 part sets committed, rows of the 3rd written, not uploaded
        write = sink.ScoreSink.write
        def dying_write(self, batch):
            out = write(self, batch)
            if self.frames.part >= 2 and self.frames.writer is not None:
                os._exit(9)
            return out
        sink.ScoreSink.write = dying_write
    else:                        # the 3rd part set's files uploaded, its marker not written
        write_json = storage.write_json
        def dying_marker(path, payload):
            if payload.get("part") == 2:
                os._exit(9)
            write_json(path, payload)
        storage.write_json = dying_marker
    sys.exit(main(sys.argv[2:]))
""")


def _config(out: str):
    return load_config(HERE / "scoring.yaml", SETTINGS + [f"output_dir={out}"])


def _read(out: str, table: str):
    fs, path = io.resolve_filesystem(f"{out}/{table}")
    return pq.read_table(path, filesystem=fs)


def _part_objects(out: str) -> dict[str, list[str]]:
    found = {}
    for table in TABLES:
        if io.exists(f"{out}/{table}"):
            found[table] = sorted(name for name, _ in io.list_files(f"{out}/{table}"))
    return found


@pytest.fixture(scope="module")
def uninterrupted(ray_local, module_tmp):
    out = module_tmp("s3resume") / "uninterrupted"
    run_scoring(_config(str(out)), progress=False)
    return pq.read_table(out / "frames").to_pandas().sort_values("frame_id").reset_index(drop=True)


@pytest.mark.parametrize("where", ["mid-part", "before-marker"])
def test_killed_score_on_s3_resumes_without_duplicates_or_holes(s3, session_ray_env, uninterrupted,
                                                                 tmp_path: Path, where: str):
    out = f"s3://rayal-test/scores/{uuid.uuid4().hex[:8]}"
    env = session_ray_env
    args = ["score", str(HERE / "scoring.yaml"), "--no-progress",
            *[a for s in SETTINGS + [f"output_dir={out}"] for a in ("--set", s)]]
    killed = subprocess.run([sys.executable, "-c", DRIVER, where, *args], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == 9, killed.stdout[-3000:] + killed.stderr[-3000:]

    markers = read_markers(out)
    assert [m["part"] for m in markers] == [0, 1]
    objects = _part_objects(out)
    if where == "mid-part":   # the uploads in progress left no object
        assert objects["frames"] == ["part-00000.parquet", "part-00001.parquet"]
    else:                     # part 2 is uploaded whole, without its marker
        assert objects["frames"] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    fs, _ = io.resolve_filesystem(out)
    for table, names in objects.items():   # every object there is a whole parquet file
        for name in names:
            pq.read_metadata(io.resolve_filesystem(f"{out}/{table}/{name}")[1], filesystem=fs)

    summary = run_scoring(_config(out), progress=False, resume=True)
    assert summary.frames_already_done == 12 and summary.frames_scored == N - 12
    assert summary.outputs["frames"]["rows"] == N
    frames = _read(out, "frames").to_pandas().sort_values("frame_id").reset_index(drop=True)
    assert frames.frame_id.is_unique and list(frames.frame_id) == list(uninterrupted.frame_id)
    for col in ("entropy_mean", "bald_max", "margin_mean"):
        np.testing.assert_allclose(frames[col], uninterrupted[col], rtol=1e-5, atol=1e-6)
    regions = _read(out, "regions").to_pandas()
    assert len(regions) == 4 * N and not regions.duplicated(["frame_id", "region_id"]).any()
    embeddings = _read(out, "embeddings").column("frame_id").to_pylist()
    assert sorted(embeddings) == list(uninterrupted.frame_id)
    parts = {int(m["part"]) for m in read_markers(out)}
    for table, names in _part_objects(out).items():   # no object without its marker
        assert {int(n[5:10]) for n in names} <= parts, (table, names)
    saved = json.loads(io.read_bytes(f"{out}/score_summary.json"))
    assert saved["frames_already_done"] == 12 and saved["outputs"]["frames"]["rows"] == N
