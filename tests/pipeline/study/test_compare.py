"""``rayal compare`` on a tiny synthetic pool: 2 strategies x 1 seed, real Ray Data + Ray Train."""
import json

import pyarrow.parquet as pq
import pytest

from rayal.cli.main import main
from rayal.config import ConfigError, load_config
from rayal.errors import RayalWarning
from rayal.pipeline.study.compare import run_configs

@pytest.fixture(scope="module")
def compared(ray_local, write, module_tmp):
    tmp = module_tmp("compare")
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
    # another eval split: every run is named at once (the cached reference too, when there is
    # one: tests/pipeline/loop/test_reference.py), before anything is written
    stamp = (tmp / "cmp" / "config.yaml").stat().st_mtime_ns
    assert main(["compare", str(path), "--no-progress", "--set", "data.eval_split=val[1:]"]) == 2
    err = capsys.readouterr().err
    runs = len(list((tmp / "cmp").glob("*/seed*/config.yaml")))
    assert runs == 2 and f"{runs} folder(s) of this comparison were made with another setting" in err
    assert err.count("differs in ['data.eval_split']") == runs
    assert (tmp / "cmp" / "config.yaml").stat().st_mtime_ns == stamp
    # an interim table names them all too
    assert main(["compare", str(path), "--no-progress", "--finished-only",
                 "--set", "data.eval_split=val[1:]"]) == 2
    assert capsys.readouterr().err.count("differs in ['data.eval_split']") == runs


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


def test_a_run_dir_from_before_a_new_field_is_still_the_same_setting(write, tmp_path):
    """Resuming a comparison after an upgrade: a field the old config.yaml lacks takes its
    default; a value that really differs is still refused."""
    import yaml as _yaml

    from rayal.config import dump_config
    from rayal.pipeline.runtime import check_same_config

    config = load_config(write(tmp_path), [f"output_dir={tmp_path / 'run'}"])
    (tmp_path / "run").mkdir()
    old = _yaml.safe_load(dump_config(config))
    del old["loop"]["annotation"], old["loop"]["reference_epochs"]    # written before they existed
    (tmp_path / "run" / "config.yaml").write_text(_yaml.safe_dump(old))
    check_same_config(config)
    old["output_dir"] = "/somewhere/else/run"   # the folder was copied or moved: still the run
    (tmp_path / "run" / "config.yaml").write_text(_yaml.safe_dump(old))
    check_same_config(config)
    old["train"]["lr"] = 0.5
    (tmp_path / "run" / "config.yaml").write_text(_yaml.safe_dump(old))
    with pytest.raises(ConfigError, match=r"differs in \['train.lr'\]"):
        check_same_config(config)


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


def test_more_training_draws_reuse_the_finished_runs_as_draw_0(compared):
    """compare.draws=2 on a finished one-draw comparison: only the draw-1 runs are trained
    (train.seed_offset + 1, the same initial set), and the statistics average the draws."""
    tmp, path = compared
    out = tmp / "cmp"
    stamp = (out / "random" / "seed0" / "rounds.parquet").stat().st_mtime_ns
    assert main(["compare", str(path), "--no-progress", "--set", "compare.draws=2"]) == 0
    assert (out / "random" / "seed0" / "rounds.parquet").stat().st_mtime_ns == stamp
    draw1 = load_config(out / "random" / "seed0_draw1" / "config.yaml")
    assert draw1.train.seed_offset == 1000 and draw1.seed == 0
    rows = pq.read_table(out / "comparison.parquet").to_pylist()
    assert sorted({(r["strategy"], r["draw"]) for r in rows}) == [
        ("entropy", 0), ("entropy", 1), ("random", 0), ("random", 1)]
    first = {(r["draw"], r["round"]): r for r in rows if r["strategy"] == "random"}
    assert first[0, 0]["labelled_units"] == first[1, 0]["labelled_units"] == 4
    verdicts = json.loads((out / "verdicts.json").read_text())
    noise = abs(first[0, 0]["aualc"] - first[1, 0]["aualc"]) / 2 ** 0.5   # one seed, two draws
    assert noise > 0                                # another training draw, another curve
    assert verdicts["random"]["training_noise_sd"] == pytest.approx(noise)
    assert verdicts["entropy"]["draws"] == 2 and verdicts["entropy"]["seeds"] == 1
    # an interim table while a strategy's draw 1 is unfinished: that strategy is left out
    from rayal.pipeline.study.compare import run_comparison

    (out / "entropy" / "seed0_draw1" / "summary.json").unlink()
    result = run_comparison(load_config(path, ["compare.draws=2"]), progress=False,
                            finished_only=True)
    assert "1 strategies x 1 seed(s) x 2 training draws" in result["table"]
    with pytest.raises(ConfigError, match=r"in all 3 training draws \(compare.draws\)"):
        run_comparison(load_config(path, ["compare.draws=3"]), progress=False, finished_only=True)


def test_an_override_the_shared_reference_cannot_stand_for_is_refused_before_any_run(write, tmp_path):
    """One reference normalises every run of a comparison, so a variant trained or evaluated
    otherwise (here: keeping the last epoch) is named before anything is trained."""
    from rayal.pipeline.study.compare import run_comparison

    config = load_config(write(tmp_path), [
        "compare.strategies=[random, random_last]", "compare.variants={random_last: random}",
        "compare.seeds=[0, 1]",
        "compare.overrides={random_last: [train.patience=null, train.select_epoch=last]}"])
    with pytest.raises(ConfigError, match=r"compare.overrides\['random_last'\] changes "
                                          r"select_epoch \('best' -> 'last'\)") as err:
        run_comparison(config, progress=False)
    assert str(err.value).count("random_last") == 1        # one line per strategy, not per run
    assert not (tmp_path / "cmp").exists()                  # nothing written
    # study keys inside a run's overrides mean nothing there: refused, naming the strategy
    config = load_config(write(tmp_path), ["compare.overrides={entropy: [compare.draws=3]}"])
    with pytest.raises(ConfigError, match=r"compare.overrides\['entropy'\]: \['compare.draws=3'\] "
                                          r"set the study"):
        run_configs(config)


def test_runs_made_in_two_numerical_environments_are_flagged(compared):
    """Every run records its numerical environment; a comparison whose runs were made in two
    (here: one run's record edited as if made on another CPU) writes both to
    environments.json, tags the rows and warns in the table."""
    from rayal.pipeline.study.compare import run_comparison

    tmp, path = compared
    out, versions = tmp / "cmp", tmp / "cmp" / "entropy" / "seed0" / "versions.json"
    config = load_config(path)
    run_comparison(config, progress=False, finished_only=True)
    assert len(json.loads((out / "environments.json").read_text())) == 1
    assert "**Warning:**" not in (out / "comparison.md").read_text()
    assert json.loads((out / "verdicts.json").read_text())["entropy"]["environments_match"] is True
    original = versions.read_text()
    meta = json.loads(original)
    meta["environment"]["cpu"]["isa"] += ["sve"]   # as if made on another CPU
    meta["environment"]["numerics_probe"] = "0" * 16
    versions.write_text(json.dumps(meta))
    try:
        with pytest.warns(RayalWarning, match="2 numerical environments"):
            run_comparison(config, progress=False, finished_only=True)
        environments = json.loads((out / "environments.json").read_text())
        assert sorted(len(e["runs"]) for e in environments.values()) == [1, 1]
        table = (out / "comparison.md").read_text()
        assert "**Warning:**" in table and "differs in cpu.isa +sve" in table
        assert "numerics_probe" in table and "move a run's folder away" in table
        assert json.loads((out / "verdicts.json").read_text())["entropy"]["environments_match"] is False
        keys = {r["strategy"]: r["environment"] for r in pq.read_table(out / "comparison.parquet").to_pylist()}
        assert keys["random"] != keys["entropy"] and set(keys.values()) == set(environments)
    finally:
        versions.write_text(original)
