"""Multi-head (MADBAL) mode of the scoring actor: phase II -> checkpoint -> score tables ->
the ``madbal`` strategy ranks by ``maturity_score`` (no fallback to entropy)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rayal.config import ModelConfig, load_config
from rayal.config.training import MadbalConfig
from rayal.data import load_synthetic
from rayal.models import build_model, save_checkpoint
from rayal.pipeline.score.batch import FrameBatchScorer
from rayal.pipeline.score.frames import decode_frames, frame_source
from rayal.pipeline.score.score_job import run_scoring
from rayal.pipeline.score.sink import ScoreSink
from rayal.scoring.aggregate import RegionIndex
from rayal.selection import Budget, PoolView, ScoreTables, get_strategy
from rayal.train.madbal import train_phase2

REPO = Path(__file__).resolve().parents[3]
H, W, CLASSES = 64, 96, 8
MADBAL = MadbalConfig(enabled=True, head_channels=8, phase2_epochs=1)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def madbal_checkpoint(module_tmp) -> Path:
    """A tiny MadbalNet whose extra modules went through phase II on synthetic labels."""
    model = build_model(ModelConfig(arch="Unet", encoder="resnet18", decoder_channels=[16, 8, 8, 8, 8]),
                        num_classes=CLASSES, seed=0, madbal=MADBAL)
    pairs = [load_synthetic(f"synthetic://9/{i}", H, W) for i in range(4)]
    images = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float() / 255
    masks = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
    train_phase2(model, [(images[:2], masks[:2]), (images[2:], masks[2:])], MADBAL,
                 num_classes=CLASSES, ignore_index=255, seed=0)
    return save_checkpoint(module_tmp("ckpt") / "madbal.pt", model)


def multi_head_config(out: Path, checkpoint: Path, *extra: str):
    return load_config(Path(__file__).parents[1] / "scoring.yaml", [
        "data.synthetic.num_frames=6", f"data.synthetic.height={H}", f"data.synthetic.width={W}",
        "scoring.mode=multi_head", "madbal.enabled=true", "scoring.measures=[entropy]",
        "scoring.units=[superpixel,patch]", "scoring.superpixel.n_segments=20",
        "scoring.embeddings=[region]", "scoring.top_k_regions=4", "ray.cpus_per_actor=0.5",
        "ray.decode_cpus=0.25", f"model.checkpoint={checkpoint}", f"output_dir={out}", *extra])


def test_scoring_actor_writes_maturity_scores_madbal_ranks_by(madbal_checkpoint, tmp_path):
    config = multi_head_config(tmp_path / "run", madbal_checkpoint)
    source = frame_source(config.data).table
    batch = {"frame_id": np.asarray(source.column("frame_id").to_pylist()),
             "uri": np.asarray(source.column("uri").to_pylist())}
    decoded = decode_frames(batch, data=config.data, scoring=config.scoring)
    actor = FrameBatchScorer(config)  # the scoring actor, called in-process
    sink = ScoreSink(str(tmp_path / "run"), with_embeddings=True)
    sink.write(actor(decoded))
    sink.close()

    frames = pq.read_table(tmp_path / "run" / "frames").to_pandas()
    regions = pq.read_table(tmp_path / "run" / "regions").to_pandas()
    assert {"maturity_score_mean", "maturity_score_max", "entropy_mean"} <= set(frames.columns)
    assert regions.maturity_score.notna().all() and (regions.maturity_score > 0).all()
    # the region column is the superpixel mean of the scorer's pixel map u
    images = torch.from_numpy(decoded["image"]).permute(0, 3, 1, 2).float() / 255
    u = actor.scorer(images, list(batch["frame_id"])).maps["maturity_score"]
    np.testing.assert_allclose(frames.maturity_score_mean, u.mean(dim=(1, 2)).numpy(), rtol=1e-5)
    spx = torch.from_numpy(decoded["regions_superpixel"])
    means = RegionIndex(spx, int(spx.max()) + 1).reduce(u, "mean")
    rows = regions[regions.unit == "superpixel"]
    frame_index = {f: i for i, f in enumerate(batch["frame_id"])}
    expected = [means[frame_index[f], r].item() for f, r in zip(rows.frame_id, rows.region_id)]
    np.testing.assert_allclose(rows.maturity_score, expected, rtol=1e-5)
    # top-k pruning keeps each frame's 4 highest-maturity superpixels
    top = means[0].nan_to_num(nan=-1).topk(4).indices.tolist()
    kept = set(rows[rows.frame_id == batch["frame_id"][0]].region_id)
    assert set(top) <= kept

    tables = ScoreTables.from_dir(str(tmp_path / "run"))
    query = get_strategy("madbal", num_clusters=2).select(
        tables, PoolView.fresh(batch["frame_id"].tolist()), Budget(units=5), seed=0)
    assert query.extras["score_column"] == "maturity_score"
    assert len(query) == 5 and set(query.unit) == {"superpixel"}


def test_multi_head_refuses_a_plain_checkpoint(tmp_path):
    plain = build_model(ModelConfig(arch="Unet", encoder="resnet18"), num_classes=CLASSES)
    ckpt = save_checkpoint(tmp_path / "plain.pt", plain)
    with pytest.raises(ValueError, match="holds no MADBAL modules"):
        FrameBatchScorer(multi_head_config(tmp_path / "x", ckpt))


def test_rayal_score_in_multi_head_mode(ray_local, madbal_checkpoint, tmp_path):
    """The Ray job end to end: actor pool, sink, tables with maturity scores."""
    summary = run_scoring(multi_head_config(tmp_path / "ray", madbal_checkpoint,
                                            "data.synthetic.num_frames=4", "scoring.batch_size=2"),
                          progress=False)
    assert summary.frames_scored == 4
    regions = pq.read_table(tmp_path / "ray" / "regions").to_pandas()
    assert regions.maturity_score.notna().all()
    assert ScoreTables.from_dir(str(tmp_path / "ray")).columns("regions").count("maturity_score") == 1
