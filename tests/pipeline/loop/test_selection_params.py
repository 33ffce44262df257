"""Up-front checks of a run's strategies: a strategy that picks in embedding space while the
scoring writes no embeddings of its unit is refused before any reference or round is trained."""
from __future__ import annotations

import pytest
import yaml

from rayal.cli.main import main
from rayal.config import ConfigError
from rayal.config.loader import config_from_dict
from rayal.pipeline.loop.selection_params import check_run, check_selection
from rayal.pipeline.study.compare import run_configs


def _config(tiny_config, **changes):
    return config_from_dict(tiny_config("run", **changes))


def test_cold_start_needing_embeddings_is_refused_naming_the_setting(tiny_config):
    config = _config(tiny_config, pool={"unit": "image"}, scoring={"units": [], "embeddings": []},
                     loop={"initial_strategy": "typiclust"})
    check_selection(config)   # entropy reads no embeddings
    with pytest.raises(ConfigError, match=r"loop.initial_strategy: strategy 'typiclust' picks in "
                                          r"image embedding space; add 'frame' to scoring.embeddings"):
        check_run(config)
    config.scoring.embeddings = ["frame"]
    check_run(config)


def test_the_diversity_stage_and_region_units_need_their_level(tiny_config):
    diverse = _config(tiny_config, pool={"unit": "image"}, scoring={"units": [], "embeddings": []},
                      selection={"params": {"aggregate": "mean", "diversity": "kcenter"}})
    with pytest.raises(ConfigError, match=r"selection.strategy: strategy 'entropy' .* add 'frame'"):
        check_selection(diverse)
    check_selection(diverse, check_tables=False)   # rayal pool select: its --scores decide
    windowed = _config(tiny_config, pool={"unit": "image"}, scoring={"units": [], "embeddings": []},
                       selection={"strategy": "typiclust"})
    windowed.selection.params = {"sequence_key": "frame"}   # the stage's own need is none here
    with pytest.raises(ConfigError, match=r"strategy 'typiclust' picks in image embedding space"):
        check_selection(windowed)
    regions = _config(tiny_config, scoring={"embeddings": ["frame"]}, selection={"strategy": "probcover"})
    regions.selection.params = {}   # not merged with the tiny entropy's
    with pytest.raises(ConfigError, match=r"patch embedding space; add 'region'"):
        check_selection(regions)
    regions.scoring.embedding_model = "self_supervised"   # frame embeddings only: say so
    with pytest.raises(ConfigError, match=r"set scoring.embedding_model: model and add 'region'"):
        check_selection(regions)


def test_compare_refuses_before_running_anything(tiny_config, tmp_path):
    config = config_from_dict(tiny_config(
        "sweep", output_dir=str(tmp_path / "cmp"), scoring={"units": [], "embeddings": []},
        compare={"strategies": ["random", "coreset"], "seeds": [0]}))
    with pytest.raises(ConfigError, match=r"compare.params\['coreset'\]: strategy 'coreset'"):
        run_configs(config)
    assert not (tmp_path / "cmp").exists()


def test_rayal_run_exits_with_the_message(tiny_config, tmp_path, capsys):
    raw = tiny_config("run", output_dir=str(tmp_path / "run"), pool={"unit": "image"},
                      scoring={"units": [], "embeddings": []}, loop={"initial_strategy": "probcover"})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--no-progress"]) == 2
    assert "add 'frame' to scoring.embeddings" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
