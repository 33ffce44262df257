"""``rayal run`` with ``selection.plugins``: a toy unit, measure and strategy from a plugin file
drive a whole simulated round (Ray scoring workers, annotation, training, selection)."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import yaml

from rayal.cli.main import main
from rayal.config.sections import PoolConfig
from rayal.core import load_plugins
from rayal.pool.coordinator import PoolCoordinator

PLUGIN = str(Path(__file__).with_name("toy_plugin.py"))
# `rayal run` imports selection.plugins when it loads the config, before it starts Ray, so a
# local Ray's workers inherit $RAYAL_PLUGINS; the session's Ray starts in a fixture, so load
# the plugin at collection time, as the command would before ray.init.
load_plugins([PLUGIN])
CONFIG = {
    "name": "toy-run", "seed": 5, "device": "cpu",
    "data": {"num_classes": 8, "synthetic": {"num_frames": 6, "height": 32, "width": 48, "eval_frames": 2}},
    "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "scoring": {"measures": ["entropy", "top1_gap"], "mc_samples": 0, "units": ["stripe"],
                "batch_size": 8, "top_k_regions": None},
    "selection": {"strategy": "toy_lowest", "budget": 4, "plugins": [PLUGIN]},
    "pool": {"unit": "stripe"},
    "train": {"epochs": 1, "batch_size": 4, "patience": None},
    "loop": {"initial": 3, "rounds": 1, "max_labelled": None, "full_miou": 0.5, "plot_frames": 1},
    "ray": {"cpus_per_actor": 0.5},
}


def test_plugin_strategy_unit_and_measure_in_run(ray_local, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(dict(CONFIG, output_dir=str(tmp_path / "run"))))
    assert main(["run", str(path), "--no-progress"]) == 0
    rounds = pq.read_table(tmp_path / "run" / "rounds.parquet").to_pylist()
    assert [r["strategy"] for r in rounds] == ["random", "toy_lowest"]
    assert [r["labelled_units"] for r in rounds] == [3, 7]
    assert rounds[1]["labelled_fraction"] == 7 / 18   # 6 frames x 3 stripes (regions_per_frame)
    pool = PoolCoordinator(PoolConfig(project="run", unit="stripe",
                                      state_dir=str(tmp_path / "run" / "pool")))
    query = pool.query(1)
    pool.close()
    assert set(query.column("unit").to_pylist()) == {"stripe"}
    assert set(query.column("reason").to_pylist()) == {"toy round_tag=0"}   # from RoundContext
    scores = query.column("score").to_pylist()   # the plugin measure's column, lowest first
    assert scores == sorted(scores)
    regions = pq.read_table(tmp_path / "run" / "round_000" / "scores" / "regions")
    assert "top1_gap_max" in regions.column_names
    assert set(regions.column("unit").to_pylist()) == {"stripe"}
