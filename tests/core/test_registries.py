"""rayal.core registries: a toy unit, measure and strategy registered from a test plugin flow
through config validation, scoring (engine + score tables) and selection."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from rayal.config import RayalConfig
from rayal.core import (RoundContext, get_measure, get_unit, load_plugins, register_measure,
                        register_unit, score_column, strategy_info)
from rayal.core.strategy import round_params
from rayal.data import unit_region_map
from rayal.selection import Budget, PoolView, ScoreTables, get_strategy, list_strategies
from rayal.selection.registry import get_strategy_info

PLUGIN = str(Path(__file__).with_name("toy_plugin.py"))


@pytest.fixture(scope="module", autouse=True)
def toy():
    load_plugins([PLUGIN])


class Linear:
    """A model with the engine's interface: a fixed 1x1 convolution from the image to logits."""

    def __init__(self, num_classes: int = 3):
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(num_classes, 3, 1, 1, generator=gen) * 4

    def encode(self, images):
        return [images], images.shape[-2:]

    def decode(self, features):
        return features[-1]

    def classify(self, decoded, size):
        return torch.nn.functional.conv2d(decoded, self.weight)


def test_toy_unit_and_measure_pass_config_validation():
    config = RayalConfig.model_validate({
        "pool": {"unit": "stripe"}, "selection": {"plugins": [PLUGIN]},
        "scoring": {"measures": ["entropy", "top1_gap"], "units": ["stripe"], "mc_samples": 0}})
    assert config.pool.unit == "stripe" and config.scoring.units == ["stripe"]
    with pytest.raises(ValueError, match="unknown measure.*'top2_gap'"):
        RayalConfig.model_validate({"scoring": {"measures": ["top2_gap"], "mc_samples": 0}})
    with pytest.raises(ValueError, match="unknown unit 'strip'"):
        RayalConfig.model_validate({"pool": {"unit": "strip"}})
    with pytest.raises(ValueError, match="unknown region unit.*'image'"):
        RayalConfig.model_validate({"scoring": {"units": ["image"]}})
    with pytest.raises(ValueError, match="selection.plugins: cannot import plugin 'no_such_plugin'"):
        RayalConfig.model_validate({"selection": {"plugins": ["no_such_plugin"]}})


def test_registering_needs_valid_and_consistent_entries():
    with pytest.raises(ValueError, match="already registered"):
        register_unit("stripe", level="image")
    with pytest.raises(ValueError, match="needs region_map"):
        register_unit("blob", level="region")
    with pytest.raises(ValueError, match="kind must be"):
        register_measure("odd", compute=lambda p: p, kind="region")
    with pytest.raises(ValueError, match="unknown measure 'nope'"):
        get_measure("nope")
    assert get_unit("stripe").table == "regions" and get_unit("image").embedding_unit == "frame"
    assert score_column("top1_gap", "max") == "top1_gap_max"
    assert score_column("area_disagreement", "max") == "area_disagreement"


def test_mc_measure_needs_samples_in_config():
    register_measure("toy_sample_spread", needs_mc=True,
                     compute=lambda mc: mc.std(dim=0).mean(dim=1))
    with pytest.raises(ValueError, match=r"mc_samples must be >= 2 for \['toy_sample_spread'\]"):
        RayalConfig.model_validate({"scoring": {"measures": ["toy_sample_spread"], "mc_samples": 0}})


def test_toy_measure_and_unit_flow_through_scoring_and_selection():
    from rayal.scoring import MCDropoutScorer
    from rayal.scoring.tables import frame_columns, region_columns

    config = RayalConfig.model_validate({
        "pool": {"unit": "stripe"},
        "scoring": {"measures": ["entropy", "top1_gap"], "units": ["stripe"], "mc_samples": 0,
                    "top_k_regions": None}})
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 12, 10, generator=gen)
    ids = ["f0", "f1"]
    model = Linear()
    scores = MCDropoutScorer(model, mc_samples=0, measures=config.scoring.measures)(images, ids)
    p = torch.softmax(model.classify(images, None), dim=1)
    assert torch.allclose(scores.maps["top1_gap"], 1 - p.max(dim=1).values, atol=1e-6)

    frames = frame_columns(scores, config.scoring.measures, ["mean", "max"], 3)
    assert np.allclose(frames["top1_gap_max"], (1 - p.max(dim=1).values).amax(dim=(1, 2)).numpy())
    uint8 = (images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    maps = torch.from_numpy(np.stack([unit_region_map(im, "stripe", config.scoring) for im in uint8]))
    assert maps.shape == (2, 12, 10) and set(np.unique(maps.numpy())) == {0, 1, 2}
    cols = region_columns(scores, maps, "stripe", config.scoring.measures, ["max"], 3, None, False)
    assert len(cols["region_id"]) == 6 and set(cols["unit"]) == {"stripe"}
    expected = [float((1 - p.max(dim=1).values)[f][maps[f] == r].max())
                for f, r in zip(cols["frame_index"], cols["region_id"])]
    assert np.allclose(cols["top1_gap_max"], expected)

    regions = pa.table({"frame_id": [ids[i] for i in cols["frame_index"]], "unit": cols["unit"].tolist(),
                        "region_id": cols["region_id"], "top1_gap_max": cols["top1_gap_max"]})
    tables = ScoreTables(regions=regions)
    assert "top1_gap" in list_strategies()   # a top-k strategy per registered measure
    query = get_strategy("top1_gap", unit="stripe", aggregate="max").select(
        tables, PoolView.fresh(ids), Budget(units=2), seed=0)
    best = np.argsort(-cols["top1_gap_max"], kind="stable")[:2]
    assert list(query.region_id) == [int(cols["region_id"][i]) for i in best]
    assert set(query.unit) == {"stripe"}
    with pytest.raises(ValueError, match="aggregate must be one of"):
        get_strategy("top1_gap", unit="stripe", aggregate="median")


def test_strategy_metadata_from_the_contract():
    info = get_strategy_info("toy_lowest")
    assert info.params == ("unit", "column", "round_tag") and "stripe" in info.units
    assert get_strategy_info("vaal").score_source == "vaal"
    assert get_strategy_info("oreal").units == tuple(u for u in info.units if u != "image")
    context = RoundContext(round_index=4, seed=7, initial_scores=lambda: "runs/x/round_000/scores")
    assert round_params("toy_lowest", {}, context) == {"round_tag": 4}
    assert round_params("ceal", {"unit": "image"}, context) == {"round_index": 4, "unit": "image"}
    assert round_params("ceal", {"round_index": 1}, context) == {"round_index": 1}   # explicit wins
    assert round_params("meal", {}, context) == {"manifold_from": "runs/x/round_000/scores",
                                                 "umap_seed": 7}
    assert round_params("meal_ft", {}, context) == {}
    ceal = strategy_info("ceal").cls
    assert ceal.training_extras({"round_index": 3})["pseudo_label_threshold"] == pytest.approx(
        0.005 - 3 * 0.00033)
    with pytest.raises(ValueError, match="unknown strategy 'toy_missing'"):
        get_strategy("toy_missing")
