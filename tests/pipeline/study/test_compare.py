"""``rayal compare`` on a tiny synthetic pool: 2 strategies x 1 seed, real Ray Data + Ray Train."""
import json

import pyarrow.parquet as pq
import pytest
import yaml

from rayal.cli.main import main
from rayal.config import ConfigError, load_config
from rayal.errors import RayalWarning
from rayal.pipeline.study.compare import run_configs

COMPARE = {   # on the "sweep" preset of tests/pipeline/conftest.py
    "name": "tiny-compare", "data": {"synthetic": {"num_frames": 16, "eval_frames": 8}},
    "compare": {"strategies": ["random", "entropy"], "seeds": [0],
                "params": {"entropy": {"aggregate": "max"}}},
}


@pytest.fixture(scope="module")
def write(tiny_config):
    def _write(tmp_path):
        cfg = tiny_config("sweep", **COMPARE, output_dir=str(tmp_path / "cmp"))
        path = tmp_path / "cmp.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path
    return _write


@pytest.fixture(scope="module")
def compared(ray_local, write, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    path = write(tmp)
    assert main(["compare", str(path), "--no-progress"]) == 0
    return tmp, path


def test_comparison_outputs(compared, capsys):
    tmp, _ = compared
    out = tmp / "cmp"
    rows = pq.read_table(out / "comparison.parquet").to_pylist()
    # one row per strategy x seed x round: rounds 0 (4 initial) and 1 (+4 = max_labelled 8)
    assert sorted((r["strategy"], r["seed"], r["round"]) for r in rows) == [
        ("entropy", 0, 0), ("entropy", 0, 1), ("random", 0, 0), ("random", 0, 1)]
    assert {r["round_strategy"] for r in rows if r["round"] == 0} == {"random"}
    for strategy in ("random", "entropy"):
        run = out / strategy / "seed0"
        summary = json.loads((run / "summary.json").read_text())
        own = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["round"])
        assert [r["labelled_units"] for r in own] == [4, 8]
        assert all(r["aualc"] == pytest.approx(summary["aualc"]) for r in own)
        y = [r["miou"] for r in own]
        assert summary["aualc"] == pytest.approx((y[0] + y[1]) / 2 / 0.5)   # span-normalised trapezoid
        assert all(r["full_miou"] == 0.5 and r["run_dir"] == str(run) for r in own)
    assert load_config(out / "entropy" / "seed0" / "config.yaml").selection.params == {"aggregate": "max"}
    assert load_config(out / "random" / "seed0" / "config.yaml").selection.params == {}
    table = (out / "comparison.md").read_text()
    for strategy in ("random", "entropy"):
        line = next(ln for ln in table.splitlines() if ln.startswith(f"| {strategy} |"))
        aualc = json.loads((out / strategy / "seed0" / "summary.json").read_text())["aualc"]
        assert f"{aualc:.4f} ± 0.0000" in line and "/1 |" in line
    assert "ranking by mean AuALC" in table
    assert (out / "comparison.png").stat().st_size > 5000


def test_rerun_skips_finished_runs_and_resumes_unfinished_ones(compared, capsys):
    tmp, path = compared
    run, other = tmp / "cmp" / "random" / "seed0", tmp / "cmp" / "entropy" / "seed0"
    stamp = (run / "rounds.parquet").stat().st_mtime_ns
    summary = json.loads((other / "summary.json").read_text())
    (other / "summary.json").unlink()   # as if stopped after its last round
    capsys.readouterr()
    assert main(["compare", str(path), "--no-progress"]) == 0
    assert (run / "rounds.parquet").stat().st_mtime_ns == stamp   # not rerun
    resumed = json.loads((other / "summary.json").read_text())
    assert {k: resumed[k] for k in ("aualc", "final_miou", "rounds")} == {
        k: summary[k] for k in ("aualc", "final_miou", "rounds")}
    assert "| random | 1 |" in capsys.readouterr().out


def test_changed_setting_is_not_mixed_into_a_finished_run(compared, capsys):
    tmp, path = compared
    assert main(["compare", str(path), "--no-progress", "--set", "train.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "train.lr" in err


def test_bad_strategy_params_named_before_any_run(write, tmp_path):
    config = load_config(write(tmp_path), ["compare.params={entropy: {aggregat: max}}"])
    with pytest.raises(ConfigError, match=r"compare\.params\['entropy'\].*aggregat"):
        run_configs(config)
    config = load_config(write(tmp_path), ["compare.strategies=[random, entropyy]", "compare.params={}"])
    with pytest.raises(ConfigError, match="unknown strategy 'entropyy'"):
        run_configs(config)
    with pytest.warns(RayalWarning, match=r"compare.params has entries for \['meal'\].*ignored"):
        config = load_config(write(tmp_path), ["compare.params={meal: {}}"])
    assert "meal" not in config.compare.params   # a strategy no longer compared: its entry dropped


def test_table_means_sample_std_and_reach_counts(write, tmp_path):
    from rayal.pipeline.study.compare import comparison_table, mean_curves, strategy_stats

    config = load_config(write(tmp_path), ["compare.seeds=[0,1,2]"])
    base = {"unit": "image", "units_total": 16, "full_miou": 0.5, "budget_to_90": None, "seconds": 60.0}
    summaries = [dict(base, strategy="random", seed=k, aualc=a, final_miou=m, budget_to_95=b)
                 for k, (a, m, b) in enumerate([(0.6, 0.40, None), (0.7, 0.44, 0.5), (0.8, 0.48, 0.25)])]
    summaries += [dict(base, strategy="entropy", seed=k, aualc=0.9, final_miou=0.5, budget_to_95=0.25)
                  for k in range(3)]
    stats = {e["strategy"]: e for e in strategy_stats(config, summaries)}
    assert stats["random"]["to_95"] == [0.5, 0.25] and stats["random"]["minutes"] == 1.0
    table = comparison_table(config, summaries)
    random_line = next(ln for ln in table.splitlines() if ln.startswith("| random |"))
    # mean 0.7, sample std sqrt(((-.1)^2 + 0 + .1^2) / 2) = 0.1; to 95%: mean of the 2 reached
    assert "| 0.7000 ± 0.1000 | - | - | 0.4400 ± 0.0400 | - | 0/3 | 0.375 ± 0.177 | 2/3 |" in random_line
    # paired per seed: 0.9 - (0.6, 0.7, 0.8) = (0.3, 0.2, 0.1) -> 0.2 ± 0.1, above random in 3/3
    entropy_line = next(ln for ln in table.splitlines() if ln.startswith("| entropy |"))
    assert "| 0.9000 ± 0.0000 | 0.2000 ± 0.1000 | 3/3 |" in entropy_line
    assert stats["entropy"]["vs_random"] == pytest.approx([0.3, 0.2, 0.1])
    assert table.splitlines()[-1] == "ranking by mean AuALC: entropy > random"
    rows = [{"strategy": "random", "seed": k, "round": r, "labelled_fraction": 0.25 * (r + 1),
             "miou": 0.1 * r + 0.02 * k} for k in range(3) for r in range(2)]
    x, y, sd = mean_curves(rows, ["random"])["random (n=3)"]
    assert x == [0.25, 0.5] and y == pytest.approx([0.02, 0.12]) and sd == pytest.approx([0.02, 0.02])


def test_a_run_dir_from_before_a_new_field_is_still_the_same_setting(write, tmp_path):
    """Resuming a comparison after an upgrade: a field the old config.yaml lacks takes its
    default; a value that really differs is still refused."""
    import yaml as _yaml

    from rayal.config import dump_config
    from rayal.pipeline.study.compare import check_same_config

    config = load_config(write(tmp_path), [f"output_dir={tmp_path / 'run'}"])
    (tmp_path / "run").mkdir()
    old = _yaml.safe_load(dump_config(config))
    del old["loop"]["annotation"], old["loop"]["reference_epochs"]    # written before they existed
    (tmp_path / "run" / "config.yaml").write_text(_yaml.safe_dump(old))
    check_same_config(config)
    old["train"]["lr"] = 0.5
    (tmp_path / "run" / "config.yaml").write_text(_yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=r"differs in \['train.lr'\]"):
        check_same_config(config)


def test_verdicts_json_and_variants(write, tmp_path):
    """verdicts.json holds the contract's keys; a variant label runs its registered strategy
    with its own params, under its own label."""
    from rayal.pipeline.study.compare import run_configs, run_labels, strategy_verdicts

    config = load_config(write(tmp_path), [
        "compare.seeds=[0,1,2]", "compare.strategies=[random, entropy, entropy_kcenter]",
        "compare.variants={entropy_kcenter: entropy}",
        "compare.params={entropy_kcenter: {diversity: kcenter, n_candidates: 8}}",
        "scoring.embeddings=[frame]"])   # k-center picks in frame embedding space
    configs = run_configs(config)
    labels = run_labels(config)
    variant = [c for c, lab in zip(configs, labels) if lab == "entropy_kcenter"]
    assert len(variant) == 3 and all(c.selection.strategy == "entropy" for c in variant)
    assert variant[0].selection.params == {"diversity": "kcenter", "n_candidates": 8}
    assert variant[0].output_dir.endswith("entropy_kcenter/seed0")
    base = {"unit": "image", "units_total": 16, "full_miou": 0.5, "budget_to_90": None,
            "budget_to_95": None, "seconds": 60.0, "final_miou": 0.4}
    summaries = [dict(base, strategy="random", seed=k, aualc=0.7) for k in range(3)]
    summaries += [dict(base, strategy="entropy", seed=k, aualc=0.6 + 0.2 * k) for k in range(3)]
    summaries += [dict(base, strategy="entropy_kcenter", seed=k, aualc=0.75 + 0.01 * k) for k in range(3)]
    verdicts = strategy_verdicts(config, summaries)
    keys = {"paired_aualc_mean", "ci_low", "ci_high", "seeds_above", "seeds", "verdict"}
    assert keys <= set(verdicts["entropy"]) and keys <= set(verdicts["entropy_kcenter"])
    assert verdicts["entropy"]["verdict"] == "not distinguishable"       # -0.1, 0, +0.1
    assert verdicts["entropy_kcenter"]["verdict"] == "better than random"
    assert verdicts["entropy_kcenter"]["seeds_above"] == 3


def test_finished_only_writes_the_table_of_finished_runs_and_runs_nothing(compared):
    """An interrupted comparison's interim table: the finished runs only, on the seeds all of
    its strategies finished; a seed or strategy that never ran is left out, nothing is run.
    (Last in this file: it rewrites the shared comparison's table.)"""
    from rayal.pipeline.study.compare import run_comparison

    tmp, path = compared
    out = tmp / "cmp"
    config = load_config(path, ["compare.seeds=[0,1]", "compare.strategies=[random, entropy, margin]"])
    result = run_comparison(config, progress=False, finished_only=True)
    assert not (out / "margin").exists() and not (out / "random" / "seed1").exists()
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert verdicts["entropy"]["seeds"] == 1 and "verdict" not in verdicts["random"]
    assert "2 strategies x 1 seed(s)" in result["table"]


def test_a_new_reference_remeasures_finished_runs_and_a_low_one_is_flagged(compared, capsys):
    """A reference changed since the runs finished (here loop.full_miou; likewise one retrained
    longer) is the same setting: the runs are read back, not rerun, and their AuALC and budgets
    are recomputed against it; a reference below the runs' final mIoU is called out."""
    tmp, path = compared
    out = tmp / "cmp"
    run = out / "random" / "seed0"
    stamp = (run / "rounds.parquet").stat().st_mtime_ns
    before = json.loads((run / "summary.json").read_text())
    capsys.readouterr()
    low = before["final_miou"] / 2
    assert main(["compare", str(path), "--no-progress", "--set", f"loop.full_miou={low}"]) == 0
    assert (run / "rounds.parquet").stat().st_mtime_ns == stamp   # read back, not rerun
    rows = [r for r in pq.read_table(out / "comparison.parquet").to_pylist() if r["strategy"] == "random"]
    assert all(r["full_miou"] == pytest.approx(low) for r in rows)
    assert rows[0]["aualc"] == pytest.approx(before["aualc"] * 0.5 / low)
    assert rows[0]["budget_to_95"] == pytest.approx(rows[0]["labelled_fraction"])  # reached at once
    printed = capsys.readouterr().out
    assert "WARNING" in printed and "not a ceiling" in printed
