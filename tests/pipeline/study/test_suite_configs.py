"""The CamVid suite configs run unchanged on another folder dataset (only root / classes set)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rayal.cli.main import main
from rayal.config import load_config
from rayal.data import SyntheticScenes
from rayal.pipeline.study.compare import run_configs

REPO = Path(__file__).resolve().parents[3]
SUITES = ["camvid_image", "camvid_patch", "camvid_superpixel"]


@pytest.fixture(scope="module")
def other_folder(module_tmp) -> Path:
    root = module_tmp("other")
    SyntheticScenes(12, height=48, width=64, seed=1).write_folder(str(root), "train")
    SyntheticScenes(4, height=48, width=64, seed=2).write_folder(str(root), "val")
    return root


@pytest.mark.parametrize("suite", SUITES)
def test_every_run_of_a_suite_validates_on_other_data(suite, other_folder):
    with pytest.warns(UserWarning, match="class_names"):
        config = load_config(REPO / "configs" / f"{suite}.yaml",
                             [f"data.root={other_folder}", "data.num_classes=8"])
    runs = run_configs(config)
    assert len(runs) == len(config.compare.strategies) * len(config.compare.seeds)
    assert all(r.data.num_classes == 8 and r.data.class_names is None for r in runs)


def test_image_suite_diverse_run_on_a_synthetic_folder(ray_local, other_folder, tmp_path):
    out = tmp_path / "run"
    code = main(["run", str(REPO / "configs" / "camvid_image.yaml"), "--no-progress",
                 "--set", f"data.root={other_folder}", "--set", "data.num_classes=8",
                 "--set", "selection.params={aggregate: mean, diversity: kcenter, n_candidates: 6}",
                 "--set", "selection.budget=2", "--set", "loop.initial=3", "--set", "loop.rounds=1",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.val_limit=2",
                 "--set", "loop.full_miou=0.5", "--set", "loop.plot_frames=0",
                 "--set", "ray.cpus_per_actor=0.5", "--set", f"output_dir={out}"])
    assert code == 0
    rounds = pq.read_table(out / "rounds.parquet").to_pylist()
    assert [r["labelled_units"] for r in rounds] == [3, 5]
    assert json.loads((out / "summary.json").read_text())["units_total"] == 12
