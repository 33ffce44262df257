"""VAAL scoring step end to end (rayal.pipeline.loop.vaal_job): synthetic, folder and manifest pools."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rayal.config import RayalConfig
from rayal.data import render_scene, synthetic_uri, write_manifest
from rayal.pipeline.score.frames import FrameSource, frame_source
from rayal.pipeline.loop.vaal_job import PoolRows, run_vaal_scoring, unlabelled_positions
from rayal.selection import LABELED, Budget, PoolView, ScoreTables, get_strategy

VAAL = dict(image_size=(32, 32), latent_dim=4, base_channels=4, epochs=2, batch_size=4,
            frames_per_epoch=6)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def config(**data) -> RayalConfig:
    return RayalConfig(device="cpu", seed=1, vaal=VAAL, data=data)


SYNTHETIC = dict(source="synthetic", num_classes=8,
                 synthetic=dict(num_frames=14, height=32, width=48, seed=0))


def test_synthetic_pool_scored_and_selectable(tmp_path: Path):
    labelled = ["syn_0000000", "syn_0000003", "syn_0000005", "not_in_pool"]
    summary = run_vaal_scoring(config(**SYNTHETIC), labelled, str(tmp_path / "s"), progress=False)
    assert (summary.frames_total, summary.frames_scored, summary.frames_quarantined) == (14, 14, 0)
    assert (summary.labelled_frames, summary.labelled_not_in_pool, summary.unlabelled_frames) == (3, 1, 11)
    assert len(summary.history) == 2 and summary.history[0]["steps"] == 2  # 6 frames / batch 4
    tables = ScoreTables.from_dir(str(tmp_path / "s"))
    frames = tables.read("frames")
    assert frames.schema.field("vaal_score").type == pa.float32()
    assert sorted(frames.column("frame_id").to_pylist()) == [f"syn_{i:07d}" for i in range(14)]
    scores = frames.column("vaal_score").to_numpy()
    assert np.all((scores >= 0) & (scores <= 1))
    pool_ids = frame_source(config(**SYNTHETIC).data).table.column("frame_id").to_pylist()
    pool = PoolView.from_statuses(pool_ids, {(f, -1): LABELED for f in labelled[:3]})
    q = get_strategy("vaal").select(tables, pool, Budget(units=20), seed=0)
    assert len(q) == 11 and not set(q.frame_id) & set(labelled)
    by_id = dict(zip(frames.column("frame_id").to_pylist(), scores))
    assert np.allclose(q.score, [by_id[f] for f in q.frame_id]) and np.all(np.diff(q.score) <= 0)
    saved = json.loads((tmp_path / "s" / "vaal_summary.json").read_text())
    assert saved["frames_scored"] == 14
    # a second run into the same directory would mix two tables
    with pytest.raises(ValueError, match="empty score directory"):
        run_vaal_scoring(config(**SYNTHETIC), labelled, str(tmp_path / "s"), progress=False)
    # the same seed reproduces the scores
    run_vaal_scoring(config(**SYNTHETIC), labelled, str(tmp_path / "t"), progress=False)
    again = pq.read_table(tmp_path / "t" / "frames")
    assert again.column("vaal_score").equals(frames.column("vaal_score"))


def test_folder_pool_quarantines_corrupt_image(tmp_path: Path):
    images = tmp_path / "data" / "train"
    images.mkdir(parents=True)
    for i in range(8):
        image = render_scene(i, height=40, width=40, seed=2)[0]
        Image.fromarray(image if i < 4 else 255 - image).save(images / f"f{i}.png")
    (images / "f8_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * 10)
    cfg = config(source="folder", root=str(tmp_path / "data"), masks=None, num_classes=2)
    labelled = ["f0", "f1", "f2", "f8_corrupt"]  # a bad labelled frame is skipped in training too
    summary = run_vaal_scoring(cfg, labelled, str(tmp_path / "s"), progress=False)
    assert (summary.frames_scored, summary.frames_quarantined) == (8, 1)
    quarantine = pq.read_table(tmp_path / "s" / "quarantine").to_pylist()
    assert [r["frame_id"] for r in quarantine] == ["f8_corrupt"]
    assert "cannot decode" in quarantine[0]["reason"] and "f8_corrupt" in quarantine[0]["reason"]
    frames = ScoreTables.from_dir(str(tmp_path / "s")).read("frames")
    assert "f8_corrupt" not in frames.column("frame_id").to_pylist()


def test_bad_labelled_sets_are_clear_errors(tmp_path: Path):
    cfg = config(**SYNTHETIC)
    with pytest.raises(ValueError, match="none of the 2 labelled frame ids is in the pool"):
        run_vaal_scoring(cfg, ["a", "b"], str(tmp_path / "a"), progress=False)
    every = [f"syn_{i:07d}" for i in range(14)]
    with pytest.raises(ValueError, match="every pool frame is labelled"):
        run_vaal_scoring(cfg, every, str(tmp_path / "b"), progress=False)


def test_pool_rows_manifest_matches_table(tmp_path: Path):
    ids = [f"m{i:03d}" for i in range(23)]
    uris = [synthetic_uri(0, i) for i in range(23)]
    write_manifest({"frame_id": ids, "uri": uris}, str(tmp_path / "pool.parquet"), row_group_size=5)
    table_rows = PoolRows(FrameSource(pa.table({"frame_id": ids, "uri": uris}), None, 20))
    manifest_rows = PoolRows(FrameSource(None, str(tmp_path / "pool.parquet"), 20))  # limit 20
    positions = np.array([0, 4, 5, 13, 19])
    for rows in (table_rows, manifest_rows):
        assert rows.take(positions) == ([ids[p] for p in positions], [uris[p] for p in positions])
        assert [len(b[0]) for b in rows.batches(8)] in ([8, 8, 4], [5, 5, 5, 5])
        found, n = rows.positions_of(["m002", "m019", "m021", "m002"])  # m021 beyond the limit
        assert found.tolist() == [2, 19] and n == 2


def test_unlabelled_positions_by_hand():
    labelled = np.array([1, 3, 4, 8])
    # unlabelled rows of a 10-row pool: 0 2 5 6 7 9
    assert unlabelled_positions(np.arange(6), labelled).tolist() == [0, 2, 5, 6, 7, 9]
    assert unlabelled_positions(np.array([3]), np.zeros(0, np.int64)).tolist() == [3]
