"""``rayal run`` end to end on a tiny synthetic pool (patch units, real Ray Data + Ray Train)."""
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from rayal.cli.main import main
from rayal.config import config_from_dict, load_config
from rayal.config.sections import PoolConfig
from rayal.data import unit_region_map
from rayal.pipeline.score.frames import DecodeFrames
from rayal.pipeline.score.self_supervised import load_self_supervised_encoder
from rayal.train.simclr import embed_frames
from rayal.data.splits import labelled_split
from rayal.pipeline.loop.reports import curve_table
from rayal.pool.coordinator import PoolCoordinator
from rayal.train.dataset import TrainingSet, specs_from_units


@pytest.fixture(scope="module")
def write(tiny_config):
    def _write(tmp_path, name):   # the "run" preset of tests/pipeline/conftest.py
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tiny_config("run", output_dir=str(tmp_path / name))))
        return path
    return _write


@pytest.fixture(scope="module")
def finished_run(ray_local, write, module_tmp):
    tmp = module_tmp("run")
    path = write(tmp, "a")
    assert main(["run", str(path), "--no-progress"]) == 0
    return tmp, path


def test_run_directory_contents(finished_run):
    tmp, _ = finished_run
    run = tmp / "a"
    summary = json.loads((run / "summary.json").read_text())
    assert {"aualc", "final_miou", "budget_to_95", "budget_to_90"} <= set(summary)
    rows = pq.read_table(run / "rounds.parquet").to_pylist()
    assert [r["round"] for r in rows] == [0, 1]
    assert [r["strategy"] for r in rows] == ["random", "entropy"]
    assert [r["selected_units"] for r in rows] == [4, 6]
    assert [r["labelled_units"] for r in rows] == [4, 10]
    assert rows[1]["labelled_fraction"] == pytest.approx(10 / 40)
    assert summary["final_miou"] == rows[1]["miou"]
    x = [r["labelled_fraction"] for r in rows]
    y = [r["miou"] for r in rows]
    assert summary["aualc"] == pytest.approx((y[0] + y[1]) / 2 * (x[1] - x[0]) / ((x[1] - x[0]) * 0.5))
    assert all(sum(r["selected_class_hist"]) == r["selected_units"] for r in rows)
    assert all(r["clicks"] >= 3 * r["selected_units"] for r in rows)   # >= one triangle per patch
    for name in ("config.yaml", "versions.json", "learning_curve.png", "class_shares.png",
                 "selected_frames.png"):
        assert (run / name).stat().st_size > 0, name
    assert load_config(str(run / "config.yaml")).seed == 3
    table = curve_table([run]).splitlines()   # what `rayal run` prints: the columns are named
    assert "fraction of the pool's units" in table[0]
    assert table[3].split()[:3] == ["1", "0.250", f"{rows[1]['miou']:.4f}"]
    assert table[-1].startswith("(AuALC: area under mIoU / full")


def test_annotator_revealed_exactly_the_selected_pixels(finished_run):
    tmp, path = finished_run
    config = load_config(str(path))
    pool = PoolCoordinator(PoolConfig(project="run", unit="patch", state_dir=str(tmp / "a" / "pool")))
    units = pool.units("labeled")
    assert units.num_rows == 10
    split = labelled_split(config.data, "train")
    ts = TrainingSet(split, specs_from_units(units, "patch"), unit="patch", scoring=config.scoring)
    picked = {}
    for f, r in zip(units.column("frame_id").to_pylist(), units.column("region_id").to_pylist()):
        picked.setdefault(f, set()).add(r)
    for i, frame_id in enumerate(ts.frame_ids):
        image, gt = split.load(frame_id)
        regions = unit_region_map(image, "patch", config.scoring)
        inside = np.isin(regions, sorted(picked[frame_id]))
        _, mask = ts.pair(i)
        assert np.array_equal(mask != 255, inside)
        assert np.array_equal(mask[inside], gt[inside])
    pool.close()


def test_resume_after_an_interrupted_round_equals_the_uninterrupted_run(finished_run, capsys):
    tmp, path = finished_run
    # round 1 was selected, annotated and trained, then the run "died" before recording it
    shutil.copytree(tmp / "a", tmp / "b")
    rows = pq.read_table(tmp / "b" / "rounds.parquet")
    pq.write_table(rows.slice(0, 1), tmp / "b" / "rounds.parquet")
    (tmp / "b" / "summary.json").unlink()
    (tmp / "b" / "round_001" / "train" / "last.pt").unlink()   # training restarts from scratch
    assert main(["run", str(path), "--no-progress", "--set", f"output_dir={tmp / 'b'}"]) == 2
    # rounds measured on other frames are not continued (nor the folder's config.yaml rewritten)
    written = (tmp / "b" / "config.yaml").read_bytes()
    assert main(["run", str(path), "--no-progress", "--resume", "--set", f"output_dir={tmp / 'b'}",
                 "--set", "data.eval_split=val[1:]"]) == 2
    assert "differs in ['data.eval_split']" in capsys.readouterr().err
    assert (tmp / "b" / "config.yaml").read_bytes() == written
    assert main(["run", str(path), "--no-progress", "--resume", "--set", f"output_dir={tmp / 'b'}"]) == 0
    a = pq.read_table(tmp / "a" / "rounds.parquet").to_pylist()
    b = pq.read_table(tmp / "b" / "rounds.parquet").to_pylist()
    for ra, rb in zip(a, b):
        for key in ("selected_units", "labelled_units", "clicks", "miou", "selected_class_hist"):
            assert ra[key] == rb[key], key
    assert json.loads((tmp / "b" / "summary.json").read_text())["aualc"] == pytest.approx(
        json.loads((tmp / "a" / "summary.json").read_text())["aualc"])


def test_representative_start_and_diverse_rounds(ray_local, tiny_config, tmp_path):
    """Round 0 by TypiClust on the untrained model's embeddings, later rounds entropy through
    the diversity stage: the run finishes with the right units and round strategies."""
    cfg = tiny_config("run", output_dir=str(tmp_path / "typ"), pool={"unit": "image"},
                      scoring={"units": [], "embeddings": ["frame"]},
                      selection={"strategy": "entropy", "budget": 3,
                                 "params": {"aggregate": "mean", "diversity": "kcenter", "n_candidates": 6}},
                      loop={"initial": 3, "initial_strategy": "typiclust",
                            "initial_params": {"k_neighbours": 2, "min_cluster_size": 1}})
    path = tmp_path / "typ.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--no-progress"]) == 0
    rounds = pq.read_table(tmp_path / "typ" / "rounds.parquet").to_pylist()
    assert [r["strategy"] for r in rounds] == ["typiclust", "entropy"]
    assert [r["labelled_units"] for r in rounds] == [3, 6]


def test_representative_picks_in_a_self_supervised_space(ray_local, tiny_config, tmp_path):
    """scoring.embedding_model self_supervised: the run trains one SimCLR encoder beside its
    reference, before round 0, and TypiClust (round 0) and ProbCover (later) pick in its space."""
    cfg = tiny_config("run", output_dir=str(tmp_path / "ssl"), pool={"unit": "image"},
                      scoring={"units": [], "embeddings": ["frame"], "embedding_model": "self_supervised",
                               "self_supervised": {"epochs": 2, "batch_size": 4}},
                      selection={"strategy": "probcover", "budget": 3, "params": {"n_clusters": 2}},
                      loop={"initial": 3, "initial_strategy": "typiclust",
                            "initial_params": {"k_neighbours": 2, "min_cluster_size": 1}})
    cfg["selection"]["params"] = {"n_clusters": 2}   # not merged with the tiny entropy's
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--no-progress"]) == 0
    rounds = pq.read_table(tmp_path / "ssl" / "rounds.parquet").to_pylist()
    assert [r["strategy"] for r in rounds] == ["typiclust", "probcover"]
    assert [r["labelled_units"] for r in rounds] == [3, 6]
    encoders = list((tmp_path / "ssl" / "ssl_cache").glob("simclr-*.pt"))
    assert len(encoders) == 1
    record = json.loads(encoders[0].with_suffix(".json").read_text())
    assert record["frames"] == 10 and len(record["losses"]) == 2
    # round 0 selected in that encoder's space: its scores hold the encoder's embeddings
    emb = pq.read_table(tmp_path / "ssl" / "round_000" / "scores" / "embeddings").to_pylist()
    net, size = load_self_supervised_encoder(str(encoders[0]))
    run = config_from_dict(cfg)
    uri = pq.read_table(tmp_path / "ssl" / "round_000" / "scores" / "frames").to_pylist()
    uri = {r["frame_id"]: r["uri"] for r in uri}[emb[0]["frame_id"]]
    image = DecodeFrames(run.data, run.scoring).load(emb[0]["frame_id"], uri)
    want = embed_frames(net, torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255, size)[0]
    np.testing.assert_allclose(np.asarray(emb[0]["embedding"], np.float32), want.numpy(),
                               rtol=2e-3, atol=2e-3)
