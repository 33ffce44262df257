"""rayal tune's resources: trials at once (honoured in a real Tune run), the up-front fit check
and the stall watchdog (real Tune runs on the session's local Ray)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from rayal.config import load_config
from rayal.errors import ResourceError
from rayal.pipeline.study.tune_resources import (StallWatchdog, check_trial_fits, plan_concurrency,
                                           trial_cpus)

CONFIG = {
    "name": "res", "data": {"num_classes": 8},
    "ray": {"actors": 1, "cpus_per_actor": 0.5, "decode_cpus": 0.25},
    "tune": {"search_space": {"selection.strategy": {"grid": ["random", "entropy"]}},
             "num_samples": 2, "cpus_per_trial": 0.25, "scheduler": "fifo"},
}


def _config(tmp_path, *overrides):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dict(CONFIG, output_dir=str(tmp_path / "out"))))
    return load_config(path, overrides)


def test_trial_needs_its_own_cpus_plus_its_nested_work(tmp_path):
    assert trial_cpus(_config(tmp_path)) == (0.25, 0.75)          # actor 0.5 + decode 0.25
    # persistent scoring actors live through training: Train workers come on top
    config = _config(tmp_path, "train.num_workers=2", "train.cpus_per_worker=1")
    assert trial_cpus(config) == (0.25, 2.75)
    # per-round scoring jobs and training take turns: the larger phase
    config = _config(tmp_path, "train.num_workers=2", "train.cpus_per_worker=1", "loop.persistent_scoring=false")
    assert trial_cpus(config) == (0.25, 2.0)


def test_max_concurrent_trials_is_honoured_and_capped_when_it_would_starve(tmp_path):
    assert plan_concurrency(_config(tmp_path), 4.0, 0.0) == (4, None)
    assert plan_concurrency(_config(tmp_path, "tune.max_concurrent_trials=1"), 4.0, 0.0) == (1, None)
    n, warning = plan_concurrency(_config(tmp_path, "tune.max_concurrent_trials=3"), 2.0, 0.0)
    assert n == 2 and "tune.max_concurrent_trials 3 capped at 2" in warning and "1 CPUs" in warning


def test_a_trial_that_cannot_fit_is_refused_naming_the_fields(tmp_path):
    config = _config(tmp_path, "tune.cpus_per_trial=1", "ray.actors=2", "ray.cpus_per_actor=1")
    with pytest.raises(ResourceError, match=r"3.5 CPUs \(tune.cpus_per_trial 1, ray.actors 2 x "
                                            r"\(ray.cpus_per_actor 1 \+ ray.decode_cpus 0.25\)\) but "
                                            r"the Ray cluster has 2 CPUs"):
        check_trial_fits(config, 2.0)
    check_trial_fits(config, 3.5)   # exactly fits
    with pytest.raises(ResourceError, match=r"\+ train.num_workers 4 x train.cpus_per_worker 1"):
        check_trial_fits(_config(tmp_path, "train.num_workers=4", "train.cpus_per_worker=1"), 4.0)
    with pytest.raises(ResourceError, match="tune.gpus_per_trial 1"):
        check_trial_fits(_config(tmp_path, "tune.gpus_per_trial=1"), 8.0, 0.0)


def _overlap_trial(config: dict) -> None:
    """A trial that records how many trials were running while it ran."""
    from ray import tune

    marks = Path(config["dir"])
    mine = marks / f"running-{tune.get_context().get_trial_id()}"
    mine.touch()
    time.sleep(1.5)
    seen = len(list(marks.glob("running-*")))
    mine.unlink()
    tune.report({"aualc": 0.5, "round": 0, "seen": seen})


def test_sweep_runs_at_most_max_concurrent_trials_at_once(ray_local, tmp_path):
    """Ray Tune drops TuneConfig.max_concurrent_trials when a search_alg is given; rayal's
    limit lives in the search algorithm, so 4 trials of 0.25 CPU on 4 CPUs run one by one."""
    from ray import tune

    from rayal.pipeline.study.tune import _tuner

    config = _config(tmp_path, "tune.max_concurrent_trials=1", "tune.stall_timeout_s=null",
                     'tune.search_space={"selection.strategy": {"grid": [random, entropy]}, '
                     '"dir": {"choice": ["' + str(tmp_path) + '"]}}')
    trainable = tune.with_resources(_overlap_trial, {"cpu": 0.25})
    tuner, restored = _tuner(config, trainable, str(tmp_path / "exp" / "tune"), progress=False)
    grid = tuner.fit()
    assert not restored and len(grid) == 4 and not grid.errors
    assert [r.metrics["seen"] for r in grid] == [1, 1, 1, 1]


def _silent_trial(config: dict) -> None:
    time.sleep(60)   # never reports: the watchdog must end the sweep first


def test_watchdog_fails_a_sweep_that_makes_no_progress(ray_local, tmp_path):
    from ray import tune

    tuner = tune.Tuner(tune.with_resources(_silent_trial, {"cpu": 0.25}),
                       tune_config=tune.TuneConfig(num_samples=1),
                       run_config=tune.RunConfig(name="stall", storage_path=str(tmp_path), verbose=0,
                                                 callbacks=[StallWatchdog(2.0)]))
    # (the trial may still be starting: PENDING counts as waiting too)
    with pytest.raises(ResourceError, match=r"no progress for 2 s \(tune.stall_timeout_s\): "
                                            r"\d trial\(s\) RUNNING, \d PENDING, [\d.]+ CPUs free"):
        tuner.fit()


def test_watchdog_clock_restarts_when_unpickled():
    import pickle

    dog = StallWatchdog(5.0)
    dog._last = 1.0
    again = pickle.loads(pickle.dumps(dog))
    assert again.timeout_s == 5.0 and again._last is None
