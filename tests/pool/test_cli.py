"""``rayal pool init | select | export | ingest | status`` end to end on a tiny folder dataset."""
from __future__ import annotations

import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from rayal.cli.main import main
from rayal.config.sections import PoolConfig
from rayal.pool.coordinator import shutdown_coordinator


def run(*argv) -> int:
    """The ``rayal`` command in-process: its one error handler turns user errors into exit 2."""
    return main(list(argv))


@pytest.fixture
def project(tmp_path, h, ray_local):
    frames, masks = h.write_frames(tmp_path / "raw", 4, size=(24, 32), num_classes=3)
    (tmp_path / "ds").mkdir()
    (tmp_path / "raw" / "images").rename(tmp_path / "ds" / "train")
    (tmp_path / "raw" / "masks").rename(tmp_path / "ds" / "trainannot")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    config = {"output_dir": str(tmp_path / "run"),
              "data": {"source": "folder", "root": str(tmp_path / "ds"), "num_classes": 3},
              "pool": {"project": name, "unit": "patch", "state_dir": str(tmp_path / "state")},
              "selection": {"strategy": "pool_test_top", "params": {"level": "region"}, "budget": 5}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    yield str(path), masks
    shutdown_coordinator(PoolConfig(**config["pool"]), snapshot=False)


def test_cli_round_trip(project, h, tmp_path, capsys):
    config, masks = project
    assert run("pool", "init", config) == 0
    assert "frames=4" in capsys.readouterr().out
    assert run("pool", "init", config) == 0
    assert "registered 0 new frame(s)" in capsys.readouterr().out
    scores = h.write_scores(tmp_path / "scores", 4, regions=16)
    (tmp_path / "scores" / "quarantine").mkdir()
    pq.write_table(pa.table({"frame_id": ["f003"], "uri": ["x"], "reason": ["cannot decode image"]}),
                   tmp_path / "scores" / "quarantine" / "part-0.parquet")
    args = ("pool", "select", config, "--round", "0", "--score-dir", scores, "--plugin", h.PLUGIN)
    assert run(*args) == 0
    out = capsys.readouterr().out
    assert "quarantined 1 unreadable frame(s)" in out and "5 patch unit(s) selected" in out
    assert "f003" not in out.split("selected")[1]
    assert run(*args) == 0 and "5 patch unit(s)" in capsys.readouterr().out   # retry: same query
    assert run("pool", "export", config, "--round", "0", "--out", str(tmp_path / "q")) == 0
    exported = pq.read_table(tmp_path / "q" / "round-0000.parquet")
    assert exported.num_rows == 5 and exported.column("rle").null_count == 0
    # a mask with an unknown class id: rejected, naming the frame; nothing is ingested
    bad = tmp_path / "bad"
    bad.mkdir()
    victim = exported.column("frame_id")[0].as_py()
    mask = masks[victim].copy()
    mask[0, 0] = 9
    Image.fromarray(mask).save(bad / f"{victim}.png")
    assert run("pool", "ingest", config, "--masks", str(bad)) == 2
    assert f"mask of frame {victim}" in capsys.readouterr().err
    assert run("pool", "ingest", config, "--oracle", "--round", "0") == 0
    assert "labeled 5" in capsys.readouterr().out
    assert run("pool", "status", config, "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["labeled"], status["queued"], status["quarantined_frames"]) == (5, 0, 1)
    assert status["unlabeled"] == 64 - 5 and sum(status["per_class"]["units"]) == 5
    assert status["per_round"] == {"0": {"selected": 5, "queued": 0, "labeled": 5}}
    assert run("pool", "status", config) == 0
    table = capsys.readouterr().out
    assert "labeled" in table and "round" in table and np.all([c in table for c in "012"])


def test_cli_formats_round_trip(project, h, tmp_path, capsys):
    config, _ = project
    assert run("pool", "init", config) == 0
    scores = h.write_scores(tmp_path / "scores", 4, regions=16)
    assert run("pool", "select", config, "--round", "0", "--score-dir", scores,
               "--plugin", h.PLUGIN) == 0
    assert run("pool", "export", config, "--round", "0", "--format", "yolo") == 2
    assert "no exporter 'yolo'; export formats: parquet, coco, labelstudio" in capsys.readouterr().err
    assert run("pool", "export", config, "--round", "0", "--format", "coco", "--labels", "oracle",
               "--out", str(tmp_path / "q")) == 0
    assert "exported 5 unit(s) as coco" in capsys.readouterr().out
    path = tmp_path / "q" / "round-0000.coco.json"
    doc = json.loads(path.read_text())
    spoiled = tmp_path / "spoiled.coco.json"
    doc_bad = json.loads(path.read_text())
    doc_bad["annotations"][0]["category_id"] = 9
    spoiled.write_text(json.dumps(doc_bad))
    assert run("pool", "ingest", config, "--format", "coco", "--masks", str(spoiled)) == 2
    assert "unknown class id 9" in capsys.readouterr().err
    assert run("pool", "ingest", config, "--format", "coco", "--masks", str(path)) == 0
    assert "labeled 5" in capsys.readouterr().out and doc["annotations"]


def test_select_loads_plugins_named_in_the_config(project, h, tmp_path, capsys):
    """``selection.plugins`` works in ``pool select`` like ``--plugin``: the coordinator actor
    (another process) imports them before it builds the strategy."""
    config, _ = project
    with_plugin = tmp_path / "with_plugin.yaml"
    cfg = yaml.safe_load(open(config))
    cfg["selection"]["plugins"] = [h.PLUGIN]
    with_plugin.write_text(yaml.safe_dump(cfg))
    assert run("pool", "init", str(with_plugin)) == 0
    scores = h.write_scores(tmp_path / "scores", 4, regions=16)
    assert run("pool", "select", str(with_plugin), "--round", "0", "--score-dir", scores) == 0
    assert "5 patch unit(s) selected by pool_test_top" in capsys.readouterr().out
