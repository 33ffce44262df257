"""The full-supervision reference trains as long as a warm-started run does (a real ceiling)."""
from rayal.config import RayalConfig
from rayal.pipeline.reference import reference_epochs


def _config(**loop) -> RayalConfig:
    return RayalConfig.model_validate({"train": {"epochs": 5}, "loop": loop})


def test_warm_started_fixed_rounds_get_the_run_total():
    assert reference_epochs(_config(rounds=3)) == 20          # 4 trainings x 5 epochs


def test_explicit_value_wins_and_cold_or_open_ended_runs_use_train_epochs():
    assert reference_epochs(_config(rounds=3, reference_epochs=7)) == 7
    assert reference_epochs(_config(rounds=None, max_labelled=0.5)) == 5
    cold = RayalConfig.model_validate({"train": {"epochs": 5, "warm_start": False}, "loop": {"rounds": 3}})
    assert reference_epochs(cold) == 5
