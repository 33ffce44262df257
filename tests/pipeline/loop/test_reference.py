"""The full-supervision reference trains as long as a warm-started run does (a real ceiling)."""
import json

import pytest

from rayal.config import ConfigError, RayalConfig
from rayal.pipeline.loop.reference import REFERENCE_FILE, cached_reference_miou, reference_epochs


def _config(**loop) -> RayalConfig:
    return RayalConfig.model_validate({"train": {"epochs": 5}, "loop": loop})


def test_warm_started_fixed_rounds_get_the_run_total():
    assert reference_epochs(_config(rounds=3)) == 20          # 4 trainings x 5 epochs


def test_reference_factor_multiplies_the_derived_epochs():
    assert reference_epochs(_config(rounds=3, reference_factor=4)) == 80
    cold = RayalConfig.model_validate({"train": {"epochs": 5, "warm_start": False},
                                       "loop": {"rounds": 3, "reference_factor": 3}})
    assert reference_epochs(cold) == 15


def test_explicit_value_wins_and_cold_or_open_ended_runs_use_train_epochs():
    assert reference_epochs(_config(rounds=3, reference_epochs=7)) == 7
    assert reference_epochs(_config(rounds=None, max_labelled=0.5)) == 5
    cold = RayalConfig.model_validate({"train": {"epochs": 5, "warm_start": False}, "loop": {"rounds": 3}})
    assert reference_epochs(cold) == 5


def test_a_cached_reference_of_another_length_is_refused_by_name(tmp_path):
    ref = tmp_path / "full"
    ref.mkdir()
    (ref / "metrics.json").write_text(json.dumps({"miou": 0.4}))
    (ref / REFERENCE_FILE).write_text(json.dumps({"epochs": 20, "miou": 0.4}))
    same = _config(rounds=3, reference_dir=str(ref))
    assert cached_reference_miou(same) == pytest.approx(0.4)
    with pytest.raises(ConfigError, match=r"trained with epochs 20, this setting asks 80"):
        cached_reference_miou(_config(rounds=3, reference_factor=4, reference_dir=str(ref)))
    assert cached_reference_miou(_config(rounds=3, reference_dir=str(tmp_path / "none"))) is None


def test_a_cached_reference_on_other_frames_is_refused_by_name(tmp_path):
    """A reference evaluated (or validated) on other frames normalises AuALC wrongly."""
    from rayal.pipeline.loop.reference import reference_record

    ref = tmp_path / "full"
    ref.mkdir()
    (ref / "metrics.json").write_text(json.dumps({"miou": 0.4}))
    config = RayalConfig.model_validate({"train": {"epochs": 5, "val_split": "val[:4]"},
                                         "data": {"eval_split": "val[4:]"},
                                         "loop": {"rounds": 3, "reference_dir": str(ref)}})
    (ref / REFERENCE_FILE).write_text(json.dumps(dict(reference_record(config), miou=0.4)))
    assert cached_reference_miou(config) == pytest.approx(0.4)
    whole = config.model_copy(deep=True)
    whole.data.eval_split, whole.train.val_split = "val", None
    with pytest.raises(ConfigError, match=r"eval_split 'val\[4:\]', this setting asks 'val'"):
        cached_reference_miou(whole)
    longer = config.model_copy(deep=True)
    longer.train.val_limit = 2
    with pytest.raises(ConfigError, match=r"val_limit None, this setting asks 2"):
        cached_reference_miou(longer)
    last = config.model_copy(deep=True)
    last.train.patience = None
    last.train.select_epoch = "last"
    with pytest.raises(ConfigError, match=r"select_epoch 'best', this setting asks 'last'"):
        cached_reference_miou(last)
    old_record = {k: v for k, v in reference_record(config).items() if k != "select_epoch"}
    (ref / REFERENCE_FILE).write_text(json.dumps(dict(old_record, miou=0.4)))
    assert cached_reference_miou(config) == pytest.approx(0.4)   # older records kept the best
    with pytest.raises(ConfigError, match=r"select_epoch 'best', this setting asks 'last'"):
        cached_reference_miou(last)
