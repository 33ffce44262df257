"""``rayal tune``: a 2-trial ASHA sweep of whole simulated runs (Ray Tune + nested Ray Train)."""
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from rayal.cli.main import main
from rayal.config import ConfigError, load_config
from rayal.pipeline.study.tune import (rank_trials, running_aualc, run_tune,
                                 trial_config, validate_search_space)
from rayal.pipeline.study.tune_resources import default_concurrency

TUNE = {   # on the "sweep" preset of tests/pipeline/conftest.py
    "name": "tiny-tune", "data": {"synthetic": {"num_frames": 12, "eval_frames": 4}},
    "train": {"epochs": 1}, "ray": {"decode_cpus": 0.25},
    "tune": {"search_space": {"selection.strategy": {"grid": ["random", "entropy"]},
                              "selection.params.aggregate": {"choice": ["max"]}},
             "num_samples": 1, "cpus_per_trial": 0.25, "grace_period": 1},
}


@pytest.fixture(scope="module")
def config_of(tiny_config):
    def _config(tmp_path, *overrides):
        path = tmp_path / "tune.yaml"
        path.write_text(yaml.safe_dump(tiny_config("sweep", **TUNE, output_dir=str(tmp_path / "sweep"))))
        return path, load_config(path, overrides)
    return _config


@pytest.fixture(scope="module")
def swept(ray_local, config_of, module_tmp):
    path, config = config_of(module_tmp("tune"))
    return path, config, run_tune(config, progress=False)


def test_sweep_completes_and_ranks_trials_by_aualc(swept):
    _, config, result = swept
    out = Path(config.output_dir)
    rows = pq.read_table(out / "tune_results.parquet").to_pylist()
    assert len(rows) == 2 and [r["rank"] for r in rows] == [1, 2]
    assert sorted(r["selection.strategy"] for r in rows) == ["entropy", "random"]
    assert {r["status"] for r in rows} <= {"completed", "stopped"} and rows[0]["status"] == "completed"
    for row in rows:   # the objective is the run's own final AuALC
        run = Path(row["run_dir"])
        assert run.parent.name == "runs" and run.name == row["trial_id"]
        curve = pq.read_table(run / "rounds.parquet").to_pylist()
        assert [r["labelled_units"] for r in curve] == [4, 8][:len(curve)]
        expected = running_aualc([(r["labelled_fraction"], r["miou"]) for r in curve], 0.5)
        assert row["aualc"] == pytest.approx(expected)
        if row["status"] == "completed":
            assert json.loads((run / "summary.json").read_text())["aualc"] == pytest.approx(expected)
    # random takes no aggregate: left out of that trial, kept for entropy
    random_row = next(r for r in rows if r["selection.strategy"] == "random")
    assert random_row["inactive"] == "selection.params.aggregate"
    entropy_run = next(r for r in rows if r["selection.strategy"] == "entropy")["run_dir"]
    assert load_config(Path(entropy_run) / "config.yaml").selection.params == {"aggregate": "max"}
    completed = [r for r in rows if r["status"] == "completed"]
    assert [r["aualc"] for r in completed] == sorted((r["aualc"] for r in completed), reverse=True)
    assert (out / "tune.png").stat().st_size > 5000
    assert "rank" in result["table"] and rows[0]["trial_id"] in result["table"]


def test_best_config_holds_the_best_trial(swept):
    _, config, result = swept
    best = load_config(Path(config.output_dir) / "best_config.yaml")
    assert best.selection.strategy == result["best"]["selection.strategy"] == result["rows"][0]["selection.strategy"]
    assert best.selection.params == ({} if best.selection.strategy == "random" else {"aggregate": "max"})
    assert best.loop.reference_dir == str(Path(config.output_dir).resolve() / "full")
    assert best.train.epochs == 1 and best.output_dir.endswith("best")


def test_rerun_restores_the_finished_sweep(swept, capsys):
    path, config, result = swept
    stamps = {r["trial_id"]: (Path(r["run_dir"]) / "rounds.parquet").stat().st_mtime_ns for r in result["rows"]}
    assert main(["tune", str(path), "--no-progress"]) == 0
    again = pq.read_table(Path(config.output_dir) / "tune_results.parquet").to_pylist()
    assert [(r["trial_id"], r["aualc"]) for r in again] == [(r["trial_id"], r["aualc"]) for r in result["rows"]]
    for r in again:   # no trial ran again
        assert (Path(r["run_dir"]) / "rounds.parquet").stat().st_mtime_ns == stamps[r["trial_id"]]
    assert result["rows"][0]["trial_id"] in capsys.readouterr().out
    assert run_tune(config, progress=False)["restored"]


def test_search_space_errors_name_the_key(config_of, tmp_path):
    for space, match in [
        ({"train.lrr": {"choice": [0.1]}}, r"train\.lrr.*unknown key"),
        ({"train.lr": {"uniform": [-1.0, 1.0]}}, r"tune.search_space\['train.lr'\] = -1.0"),
        ({"selection.strategy": {"choice": ["random", "entropyy"]}}, "unknown strategy 'entropyy'"),
        ({"selection.params.num_clusters": {"choice": [5]}}, "no strategy of the sweep .* 'num_clusters'"),
        ({"selection.params.aggregate": {"choice": ["median"]}}, r"aggregate.*median"),
        ({"output_dir": {"choice": ["x"]}}, "set by the sweep itself"),
    ]:
        _, config = config_of(tmp_path, f"tune.search_space={json.dumps(space)}")
        with pytest.raises(ConfigError, match=match):
            validate_search_space(config)
    for spec, match in [({"logunif": [1, 2]}, "unknown distribution 'logunif'"),
                        ({"loguniform": [0, 1]}, "loguniform needs lo > 0"),
                        ({"randint": [4, 2]}, "randint needs lo < hi"), ({"choice": []}, "choice needs a non-empty list")]:
        with pytest.raises(ConfigError, match=r"tune.search_space\['train.lr'\]: " + match):
            config_of(tmp_path, f"tune.search_space={json.dumps({'train.lr': spec})}")


def test_trial_config_applies_sampled_values(config_of, tmp_path):
    _, config = config_of(tmp_path, "tune.params={meal: {n_candidates: 20}}",
                        "tune.overrides={meal: [pool.unit=patch]}",
                        'tune.search_space={"selection.strategy": {"choice": [entropy, meal]}}',
                        "scoring.embeddings=[region]")   # MEAL picks in patch embedding space
    meal, inactive = trial_config(config, {"selection.strategy": "meal", "train.lr": 0.01,
                                           "selection.params.aggregate": "max"})
    assert (meal.selection.strategy, meal.selection.params, meal.pool.unit, meal.train.lr) == (
        "meal", {"n_candidates": 20}, "patch", 0.01)
    assert inactive == ["selection.params.aggregate"]
    entropy, inactive = trial_config(config, {"selection.params.aggregate": "max"})
    assert entropy.selection.params == {"aggregate": "max"} and inactive == []


def test_diversity_params_inert_in_a_trial_are_left_out(config_of, tmp_path):
    """n_clusters sampled beside diversity: it acts only with cluster_budget, so a trial with
    kmeans leaves it out (listed inactive) instead of failing; probcover's own n_clusters stays."""
    space = {"selection.params.diversity": {"choice": ["kmeans", "cluster_budget"]},
             "selection.params.n_clusters": {"choice": [2, 3]}}
    _, config = config_of(tmp_path, f"tune.search_space={json.dumps(space)}", "scoring.embeddings=[frame]")
    validate_search_space(config)
    kmeans, inactive = trial_config(config, {"selection.params.diversity": "kmeans",
                                             "selection.params.n_clusters": 3})
    assert kmeans.selection.params.get("n_clusters") is None and inactive == ["selection.params.n_clusters"]
    budget, inactive = trial_config(config, {"selection.params.diversity": "cluster_budget",
                                             "selection.params.n_clusters": 3})
    assert budget.selection.params["n_clusters"] == 3 and inactive == []
    probcover, inactive = trial_config(config, {"selection.strategy": "probcover",
                                                "selection.params.n_clusters": 3})
    assert probcover.selection.params["n_clusters"] == 3 and inactive == []


def test_default_concurrency_leaves_room_for_nested_work(config_of, tmp_path):
    _, config = config_of(tmp_path)
    # per trial 0.25 + max(actor 0.5 + decode 0.25, no train workers (local mode)) = 1.0 CPU
    assert default_concurrency(config, 4.0, 0.0) == 4
    _, config = config_of(tmp_path, "train.num_workers=1", "train.cpus_per_worker=2", "tune.gpus_per_trial=0.5")
    assert default_concurrency(config, 9.0, 1.0) == 2    # 0.25 + 0.75 + 2 per trial: CPUs allow 3, GPUs 2
    assert default_concurrency(config, 1.0, 0.0) == 1


def test_rank_puts_completed_first_then_by_aualc():
    rows = [{"status": "stopped", "aualc": 0.9}, {"status": "completed", "aualc": 0.5},
            {"status": "error", "aualc": None}, {"status": "completed", "aualc": 0.7},
            {"status": "completed", "aualc": math.nan}]
    ranked = rank_trials(rows)
    assert [(r["status"], r["aualc"]) for r in ranked[:4]] == [
        ("completed", 0.7), ("completed", 0.5), ("completed", ranked[2]["aualc"]), ("stopped", 0.9)]
    assert math.isnan(ranked[2]["aualc"]) and ranked[-1]["status"] == "error"
