"""`rayal score` end to end on a local Ray: real PNGs, real parquet, a real smp model."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rayal.cli.main import main
from rayal.config import load_config
from rayal.data import write_manifest
from rayal.pipeline.score.score_job import run_scoring

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def camvid_manifest(tmp_path: Path, camvid_dir: Path) -> Path:
    """3 real CamVid frames, one corrupt PNG and one missing file, as a manifest."""
    frames = sorted((camvid_dir / "train").glob("*.png"))[:3]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    ids = [f.stem for f in frames] + ["corrupt", "missing"]
    uris = [str(f) for f in frames] + [str(corrupt), str(tmp_path / "nope.png")]
    manifest = tmp_path / "pool.parquet"
    write_manifest({"frame_id": ids, "uri": uris}, str(manifest))
    return manifest


def test_score_camvid_quarantines_bad_frames(ray_local, camvid_manifest: Path, tmp_path: Path):
    out = tmp_path / "run"
    code = main(["score", str(REPO / "configs" / "camvid.yaml"), "--no-progress",
                 "--set", "data.source=manifest", "--set", f"data.manifest={camvid_manifest}",
                 "--set", "data.image_size=[96,128]", "--set", "scoring.superpixel.n_segments=30",
                 "--set", "scoring.top_k_regions=4", "--set", f"output_dir={out}"])
    assert code == 0
    frames = pq.read_table(out / "frames").to_pandas()
    quarantine = pq.read_table(out / "quarantine").to_pandas().set_index("frame_id")
    regions = pq.read_table(out / "regions").to_pandas()
    assert len(frames) == 3 and set(quarantine.index) == {"corrupt", "missing"}
    assert "missing file" in quarantine.loc["missing", "reason"]
    assert "cannot decode" in quarantine.loc["corrupt", "reason"]
    assert "corrupt" not in set(regions.frame_id)
    # entropy is bounded by log C; AD and BALD are non-negative
    assert frames.entropy_max.between(0, math.log(11) + 1e-5).all()
    assert (frames.area_disagreement >= 0).all() and (frames.bald_mean >= -1e-6).all()
    assert all(h.sum() == 96 * 128 for h in frames.pred_hist)
    patches = regions[regions.unit == "patch"]
    assert patches.region_id.between(0, 15).all()
    assert (patches.pixel_count == (96 // 4) * (128 // 4)).all()
    # per frame and unit, at most (#score keys x k) regions survive the top-k pruning
    keys = 7 * 2 - 1 + 11  # 6 pixel measures x {mean,max} + ... bounded by keys x k
    assert regions.groupby(["frame_id", "unit"]).size().max() <= keys * 4
    for name in ("config.yaml", "versions.json", "score_summary.json"):
        assert (out / name).is_file()


def _synthetic_config(out: Path, **scoring):
    base = ["data.synthetic.num_frames=12", "data.synthetic.height=64", "data.synthetic.width=96",
            "scoring.units=[patch,superpixel]", "scoring.superpixel.n_segments=20",
            "scoring.ovr=true", "scoring.embeddings=[frame,region]", "scoring.top_k_regions=3",
            "ray.cpus_per_actor=0.5", "ray.decode_cpus=0.25", f"output_dir={out}"]
    return load_config(Path(__file__).parents[1] / "scoring.yaml",
                       base + [f"scoring.{k}={v}" for k, v in scoring.items()])


def test_scores_do_not_depend_on_batching(ray_local, tmp_path: Path):
    """Counter-based dropout masks: batch size and actor count change nothing."""
    a = _synthetic_config(tmp_path / "a", batch_size=5)
    b = _synthetic_config(tmp_path / "b", batch_size=3)
    b.ray.actors = 2
    run_scoring(a, progress=False)
    run_scoring(b, progress=False)
    fa = pq.read_table(tmp_path / "a" / "frames").to_pandas().sort_values("frame_id")
    fb = pq.read_table(tmp_path / "b" / "frames").to_pandas().sort_values("frame_id")
    assert len(fa) == 12
    for col in ("entropy_mean", "bald_max", "area_disagreement"):
        np.testing.assert_allclose(fa[col].to_numpy(), fb[col].to_numpy(), rtol=1e-5, atol=1e-7)


def test_embeddings_and_region_tables(ray_local, tmp_path: Path):
    config = _synthetic_config(tmp_path / "e")
    summary = run_scoring(config, progress=False)
    regions = pq.read_table(tmp_path / "e" / "regions").to_pandas()
    emb = pq.read_table(tmp_path / "e" / "embeddings").to_pandas()
    assert summary.frames_scored == 12 and summary.frames_quarantined == 0
    assert (emb.unit == "frame").sum() == 12
    assert (emb.unit != "frame").sum() == len(regions)
    assert len(emb.embedding.iloc[0]) == 1280  # mobilenet_v2's deepest stage
    assert all(len(v) == 8 for v in regions.ovr_max)  # one OVR max per class
    # every superpixel's dominant predicted class is a valid class id
    assert regions.dominant_pred.between(0, 7).all()


def test_bad_config_exits_with_named_field(tmp_path: Path, capsys):
    code = main(["score", str(REPO / "configs" / "demo.yaml"), "--set", "scoring.mc_sample=3"])
    assert code == 2
    assert "scoring.mc_sample" in capsys.readouterr().err


def test_score_loads_a_checkpoint(ray_local, tmp_path: Path):
    """A checkpoint carries its model config: `--model ckpt.pt` scores with those weights."""
    from rayal.config import ModelConfig
    from rayal.models import build_model, save_checkpoint

    model = build_model(ModelConfig(arch="FPN", encoder="resnet18"), num_classes=8, seed=7)
    ckpt = save_checkpoint(tmp_path / "model.pt", model, meta={"round": 3})
    out = tmp_path / "ckpt-run"
    code = main(["score", str(Path(__file__).parents[1] / "scoring.yaml"), "--no-progress",
                 "--model", str(ckpt), "--set", "data.synthetic.num_frames=4",
                 "--set", "scoring.units=[patch]", "--set", "ray.cpus_per_actor=0.5",
                 "--set", f"output_dir={out}"])
    assert code == 0
    resolved = (out / "config.yaml").read_text()
    assert "model.pt" in resolved
    frames = pq.read_table(out / "frames").to_pandas().set_index("frame_id")
    assert len(frames) == 4
    # the same weights scored in-process give the same frame entropy
    import torch

    from rayal.data import render_scene
    from rayal.scoring import MCDropoutScorer

    image, _ = render_scene(0, height=96, width=128, seed=0)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    scores = MCDropoutScorer(model.eval(), mc_samples=0)(x, ["syn_0000000"])
    expected = float(scores.maps["entropy"].mean())
    assert abs(frames.loc["syn_0000000", "entropy_mean"] - expected) < 1e-4
