"""Config sections and the YAML / --set loader (rayal.config)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rayal.config import (ConfigError, ModelConfig, RayalConfig, ScoringConfig, apply_overrides,
                          config_from_dict, dump_config, load_config, parse_override)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_defaults_validate():
    cfg = load_config(None)
    assert isinstance(cfg, RayalConfig)
    assert cfg.scoring.mc_samples == 10
    assert cfg.scoring.dropout_p == 0.2
    assert cfg.scoring.dropout_position == "logits"
    assert cfg.scoring.dice == "macro"
    assert cfg.data.source == "synthetic"
    assert cfg.model.encoder_weights is None
    assert cfg.scoring.uses_mc
    assert config_from_dict({}) == cfg
    assert config_from_dict(None) == cfg


def test_unknown_key_named():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"scoring": {"mc_sample": 4}})
    msg = str(err.value)
    assert "scoring.mc_sample" in msg and "unknown key" in msg


def test_unknown_key_via_override_and_top_level():
    with pytest.raises(ConfigError, match=r"scoring\.mc_sample: unknown key"):
        config_from_dict({}, ["scoring.mc_sample=4"])
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"scorin": {}})
    with pytest.raises(ConfigError, match=r"data\.synthetic\.frames"):
        config_from_dict({"data": {"synthetic": {"frames": 3}}})


@pytest.mark.parametrize("key,value", [
    ("scoring.dropout_p", 1.5), ("scoring.dropout_p", 0.0), ("scoring.mc_samples", -1),
    ("scoring.dice", "micro"), ("scoring.dropout_position", "encoder"),
    ("scoring.measures", ["entropy", "bogus"]), ("scoring.measures", ["entropy", "entropy"]),
    ("ray.actors", 0), ("scoring.aggregate", ["median"]), ("device", "tpu"),
])
def test_bad_value_names_field(key, value):
    section, _, field = key.rpartition(".")
    raw = {section: {field: value}} if section else {field: value}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert key in str(err.value)


@pytest.mark.parametrize("text,path,value", [
    ("scoring.mc_samples=4", ["scoring", "mc_samples"], 4),
    ("scoring.dropout_p=0.3", ["scoring", "dropout_p"], 0.3),
    ("scoring.aggregate=[mean, max]", ["scoring", "aggregate"], ["mean", "max"]),
    ("scoring.grid=[2,3]", ["scoring", "grid"], [2, 3]),
    ("data.num_classes=null", ["data", "num_classes"], None),
    ("scoring.ovr=true", ["scoring", "ovr"], True),
    ("scoring.ovr=false", ["scoring", "ovr"], False),
    ("name=my-run", ["name"], "my-run"),
    ("data.root=/data/camvid", ["data", "root"], "/data/camvid"),
    ("data.masks={split}annot", ["data", "masks"], "{split}annot"),  # invalid YAML: a string
    ("data.images='{split}'", ["data", "images"], "{split}"),
    ("name=a=b", ["name"], "a=b"),
    ("name=", ["name"], ""),
    (" scoring.mc_samples = 4", ["scoring", "mc_samples"], 4),
])
def test_parse_override_types(text, path, value):
    got_path, got = parse_override(text)
    assert got_path == path
    assert got == value and type(got) is type(value)


def test_override_bare_braces_is_yaml_mapping():
    """Values are YAML: a bare ``{split}`` is a flow mapping, and validation says so."""
    assert parse_override("data.images={split}")[1] == {"split": None}
    with pytest.raises(ConfigError, match=r"data\.images"):
        config_from_dict({}, ["data.images={split}"])
    assert config_from_dict({}, ['data.images="{split}"']).data.images == "{split}"


@pytest.mark.parametrize("text", ["scoring.mc_samples", "=3", "...=3"])
def test_parse_override_malformed(text):
    with pytest.raises(ConfigError):
        parse_override(text)


def test_overrides_apply_and_type():
    cfg = config_from_dict({"scoring": {"mc_samples": 10}},
                           ["scoring.mc_samples=4", "scoring.dropout_p=0.3", "scoring.ovr=true",
                            "scoring.grid=[2,3]", "data.num_classes=null", "name=x",
                            "scoring.dropout_p=1e-3"])
    assert cfg.scoring.mc_samples == 4
    assert cfg.scoring.dropout_p == pytest.approx(1e-3)  # later override wins; "1e-3" coerced
    assert cfg.scoring.ovr is True
    assert cfg.scoring.grid == (2, 3)
    assert cfg.data.num_classes is None
    assert cfg.name == "x"


def test_nested_override_creates_sections():
    raw = {"name": "keep"}
    merged = apply_overrides(raw, ["data.synthetic.num_frames=5", "ray.actors=3"])
    assert merged == {"name": "keep", "data": {"synthetic": {"num_frames": 5}},
                      "ray": {"actors": 3}}
    assert raw == {"name": "keep"}  # input not mutated
    cfg = config_from_dict({}, ["data.synthetic.num_frames=5"])
    assert cfg.data.synthetic.num_frames == 5
    assert cfg.data.synthetic.height == 96  # siblings keep their defaults
    # a section given as null in YAML is replaced by a fresh one
    assert apply_overrides({"data": None}, ["data.root=/x"]) == {"data": {"root": "/x"}}


def test_override_through_scalar_rejected():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"name": "x"}, ["name.first=1"])


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_load_config_bad_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scoring: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == RayalConfig()


def test_load_config_file_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "file", "scoring": {"mc_samples": 6}}))
    cfg = load_config(path, ["scoring.mc_samples=3"])
    assert cfg.name == "file" and cfg.scoring.mc_samples == 3
    # the error message names the file
    path.write_text(yaml.safe_dump({"scoring": {"mc_sample": 6}}))
    with pytest.raises(ConfigError, match="c.yaml"):
        load_config(path)


@pytest.mark.parametrize("name", ["imagenet", "ssl", "swsl", "instagram", "noisy-student"])
def test_hub_encoder_weights_rejected(name):
    with pytest.raises(ConfigError, match="model.encoder_weights"):
        config_from_dict({"model": {"encoder_weights": name}})
    assert ModelConfig(encoder_weights="/local/weights.pth").encoder_weights == "/local/weights.pth"


@pytest.mark.parametrize("measure", ["bald", "vote_entropy", "variance", "area_disagreement"])
def test_mc_measures_need_samples(measure):
    with pytest.raises(ConfigError, match="mc_samples"):
        config_from_dict({"scoring": {"measures": ["entropy", measure], "mc_samples": 0}})
    with pytest.raises(ConfigError, match="mc_samples"):
        config_from_dict({"scoring": {"measures": [measure], "mc_samples": 1}})


def test_point_measures_without_mc():
    cfg = config_from_dict({"scoring": {"measures": ["entropy", "margin", "least_confidence"],
                                        "mc_samples": 0}})
    assert not cfg.scoring.uses_mc
    with pytest.raises(ConfigError, match="mc_mean"):
        config_from_dict({"scoring": {"measures": ["entropy"], "mc_samples": 0,
                                      "point_estimate": "mc_mean"}})


def test_data_source_needs_location():
    with pytest.raises(ConfigError, match="data.root"):
        config_from_dict({"data": {"source": "folder"}})
    with pytest.raises(ConfigError, match="data.manifest"):
        config_from_dict({"data": {"source": "manifest"}})
    assert config_from_dict({"data": {"source": "folder", "root": "/x"}}).data.root == "/x"
    with pytest.raises(ConfigError, match="class_names"):
        config_from_dict({"data": {"num_classes": 3, "class_names": ["a", "b"]}})


def test_validate_assignment():
    cfg = ScoringConfig()
    with pytest.raises(ValueError):
        cfg.dropout_p = 2.0


def test_dump_round_trip():
    cfg = config_from_dict({}, ["scoring.grid=[2,3]", "data.image_size=[64, 80]",
                                "scoring.measures=[entropy, bald]"])
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_repo_configs_load(path):
    cfg = load_config(path)
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg
