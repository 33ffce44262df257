"""MADBAL one-pixel annotation: the simulated annotator labels each selected superpixel's
highest-scoring pixel, and training sees exactly those pixels."""
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from rayal.cli.main import main
from rayal.config import load_config
from rayal.config.sections import PoolConfig, RayalConfig
from rayal.data import unit_region_map
from rayal.data.splits import labelled_split
from rayal.pipeline.score.batch import FrameBatchScorer
from rayal.pipeline.loop.one_pixel import highest_pixels, point_specs
from rayal.pool.coordinator import PoolCoordinator
from rayal.train.dataset import TrainingSet, specs_from_units

CONFIG = {
    "name": "one-pixel", "seed": 5, "device": "cpu",
    "data": {"num_classes": 8, "synthetic": {"num_frames": 8, "height": 32, "width": 48, "eval_frames": 2}},
    "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["superpixel"], "batch_size": 8,
                "top_k_regions": None, "superpixel": {"n_segments": 12}},
    "selection": {"strategy": "entropy", "params": {"aggregate": "max"}, "budget": 6},
    "pool": {"unit": "superpixel"},
    "train": {"epochs": 1, "batch_size": 4, "patience": None},
    "loop": {"initial": 5, "rounds": 1, "max_labelled": None, "full_miou": 0.5, "plot_frames": 0,
             "annotation": "one_pixel"},
    "ray": {"cpus_per_actor": 0.5},
}


def test_highest_pixel_of_each_region_by_hand():
    score = np.array([[0.1, 0.9, 0.2],
                      [0.8, 0.3, 0.9]])
    regions = np.array([[0, 0, 1],
                        [0, 1, 1]])
    assert highest_pixels(score, regions, [0, 1]) == [(0, 1), (1, 2)]
    with pytest.raises(ValueError, match="region 4"):
        highest_pixels(score, regions, [4])


def test_one_pixel_needs_superpixel_units():
    with pytest.raises(ValueError, match="loop.annotation 'one_pixel' labels superpixels"):
        RayalConfig.model_validate({"loop": {"annotation": "one_pixel"}, "pool": {"unit": "patch"}})


def test_run_labels_the_highest_entropy_pixel_of_each_selected_superpixel(ray_local, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(dict(CONFIG, output_dir=str(tmp_path / "run"))))
    assert main(["run", str(path), "--no-progress"]) == 0
    config = load_config(str(path))
    run = tmp_path / "run"
    pool = PoolCoordinator(PoolConfig(project="run", unit="superpixel", state_dir=str(run / "pool")))
    split = labelled_split(config.data, "train")
    rounds = pq.read_table(run / "rounds.parquet").to_pylist()
    labelled = pool.units("labeled")
    assert rounds[0]["seconds_score"] > 0   # scored before the loop (to count superpixels), still timed
    for r, row in enumerate(rounds):
        points = pq.read_table(run / f"round_{r:03d}" / "points.parquet").to_pylist()
        assert len(points) == row["selected_units"] == row["clicks"]
        # the model the round selected with: the fresh seeded one, then round 0's best checkpoint
        checkpoint = rounds[r - 1]["checkpoint"] if r else None
        scorer = FrameBatchScorer(config.model_copy(update={
            "model": config.model.model_copy(update={"checkpoint": checkpoint})}))
        for p in points:
            image, gt = split.load(p["frame_id"])
            regions = unit_region_map(image, "superpixel", config.scoring)
            assert regions[p["y"], p["x"]] == p["region_id"] and p["label"] == gt[p["y"], p["x"]]
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            entropy = scorer.scorer(x, [p["frame_id"]]).maps["entropy"][0].numpy()
            assert entropy[p["y"], p["x"]] == pytest.approx(entropy[regions == p["region_id"]].max())
    # training sees exactly the non-void points of every labelled frame, nothing else
    specs = point_specs([str(run / f"round_{r:03d}") for r in range(len(rounds))], 255)
    ts = TrainingSet(split, specs_from_units(labelled, "superpixel", specs), unit="superpixel",
                     scoring=config.scoring)
    all_points = [p for r in range(len(rounds))
                  for p in pq.read_table(run / f"round_{r:03d}" / "points.parquet").to_pylist()]
    assert sorted(ts.frame_ids) == sorted({p["frame_id"] for p in all_points})
    for i, frame_id in enumerate(ts.frame_ids):
        _, mask = ts.pair(i)
        mine = {(p["y"], p["x"]): p["label"] for p in all_points if p["frame_id"] == frame_id and p["label"] != 255}
        assert {tuple(yx) for yx in np.argwhere(mask != 255)} == set(mine)
        assert all(mask[y, x] == c for (y, x), c in mine.items())
    pool.close()
