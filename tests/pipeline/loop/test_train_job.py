"""``rayal train`` / ``rayal evaluate`` end to end, and a trained checkpoint scored by ``rayal score``."""
import json

import pyarrow.parquet as pq
import pytest
import yaml

from rayal.cli.main import main
from rayal.selection.base import ScoreTables

CONFIG = {
    "name": "tiny", "seed": 0, "device": "cpu",
    "data": {"num_classes": 8, "synthetic": {"num_frames": 8, "height": 48, "width": 64, "eval_frames": 4}},
    "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 16]},
    "train": {"epochs": 2, "batch_size": 4, "patience": None},
    "scoring": {"measures": ["entropy", "bald"], "mc_samples": 4, "units": ["patch"], "batch_size": 4},
    "ray": {"cpus_per_actor": 0.5},
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(dict(CONFIG, output_dir=str(tmp_path / "out"))))
    return path


def test_train_split_list_then_evaluate_then_score(ray_local, config_file, tmp_path, capsys):
    ids = tmp_path / "labelled.txt"
    ids.write_text("syn_0000001\nsyn_0000004\n")
    assert main(["train", str(config_file), "--no-progress", "--set", "train.labels=split",
                 "--set", f"train.label_list={ids}"]) == 0
    out = tmp_path / "out" / "train"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labelled_frames"] == 2 and 0 <= metrics["miou"] <= 1
    assert set(metrics["per_class_iou"]) == {str(c) for c in range(8)}
    assert pq.read_table(out / "history.parquet").num_rows == 2
    assert (out / "training.png").stat().st_size > 1000
    assert "train summary" in capsys.readouterr().out

    assert main(["evaluate", str(config_file), "--checkpoint", str(out / "best.pt"),
                 "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["miou"] == pytest.approx(metrics["miou"]) and again["frames"] == 4

    assert main(["score", str(config_file), "--no-progress", "--model", str(out / "best.pt"),
                 "--set", f"output_dir={tmp_path / 'scores'}"]) == 0
    tables = ScoreTables.from_dir(str(tmp_path / "scores"))
    assert tables.num_rows("frames") == 8


def test_train_full_is_the_reference_run(ray_local, config_file, tmp_path):
    assert main(["train", str(config_file), "--full", "--no-progress", "--set", "train.epochs=1"]) == 0
    metrics = json.loads((tmp_path / "out" / "full" / "metrics.json").read_text())
    assert metrics["labelled_frames"] == 8


def test_reference_trains_loop_reference_epochs_once_and_is_cached(ray_local, tmp_path):
    from rayal.config import config_from_dict
    from rayal.pipeline.loop.reference import full_supervision_miou

    config = config_from_dict(dict(CONFIG, output_dir=str(tmp_path / "out"),
                                   loop={"reference_epochs": 3}))
    miou = full_supervision_miou(config)
    ref = tmp_path / "out" / "full"
    assert pq.read_table(ref / "history.parquet").num_rows == 3      # not train.epochs (2)
    assert json.loads((ref / "metrics.json").read_text())["miou"] == pytest.approx(miou)
    (ref / "best.pt").unlink()
    assert full_supervision_miou(config) == pytest.approx(miou)      # read from the cache


def test_evaluate_rejects_a_checkpoint_with_other_classes(ray_local, config_file, tmp_path, capsys):
    from rayal.config import config_from_dict
    from rayal.models import build_model, save_checkpoint
    ckpt = save_checkpoint(tmp_path / "c5.pt", build_model(config_from_dict(CONFIG).model, 5))
    assert main(["evaluate", str(config_file), "--checkpoint", str(ckpt)]) == 2
    assert "5 classes" in capsys.readouterr().err
