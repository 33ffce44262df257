"""jobs/paired_across.py: one strategy's runs against another comparison's, paired by seed."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayal.pipeline.study.statistics import bootstrap_ci

SCRIPT = Path(__file__).parents[2] / "jobs" / "paired_across.py"


def _comparison(folder: Path, strategy: str, aualc: dict[int, float | None], full: float = 0.4,
                start: float = 0.02, drop: str | None = None) -> Path:
    rows = [{"strategy": strategy, "seed": s, "round": r, "labelled_fraction": start + 0.025 * r,
             "miou": (a or 0.0) / 2 + 0.01 * r, "aualc": a, "final_miou": a and a / 2,
             "full_miou": full}
            for s, a in aualc.items() for r in range(3)]
    if drop:
        rows = [{k: v for k, v in r.items() if k != drop} for r in rows]
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "comparison.parquet")
    return folder


def _job():
    spec = importlib.util.spec_from_file_location("paired_across", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JOB = _job()


def _run(*args: str) -> subprocess.CompletedProcess:
    """The job's ``main`` in this process, read back as the command's exit status and streams
    (as Python's own exit handling reports a ``SystemExit``). One test runs the real command;
    a subprocess per call cost ~5 s of imports each, most of this module's time."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            JOB.main(list(args))
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
                code = 1
            else:
                code = stop.code or 0
    return subprocess.CompletedProcess([str(SCRIPT), *args], code, out.getvalue(), err.getvalue())


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def test_paired_by_seed_over_the_common_seeds(tmp_path: Path):
    own = _comparison(tmp_path / "a", "entropy", {0: 0.50, 1: 0.46, 2: 0.52, 3: 0.40})
    base = _comparison(tmp_path / "b", "random", {0: 0.45, 1: 0.47, 2: 0.49, 4: 0.30})
    done = _command(f"{own}:entropy", f"{base}:random")   # the real command line, once
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    diffs = [0.05, -0.01, 0.03]   # seeds 0-2: 3 and 4 are each in one run only
    low, high = bootstrap_ci(diffs)
    assert entry["seeds"] == 3 and entry["seeds_above"] == 2
    assert entry["paired_aualc_mean"] == pytest.approx(np.mean(diffs))
    assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((low, high))
    assert entry["verdict"] == "not distinguishable" and low < 0 < high
    assert "seed 1: -0.0100" in done.stdout
    assert "seeds [3, 4] are in one run only" in done.stderr
    # labels saved to reach random's final mIoU (its last round, at 7 %, where random first
    # reaches it): seed 0 is there from round 0 (2 %), seed 2 half way to round 1 (3.25 %),
    # seed 1 never (0.25 < 0.255): it enters at its bound, 1 - 0.07 / 0.07 = 0
    saved = entry["match_baseline"]
    assert saved["reached"] == 2 and saved["seeds"] == 3 and saved["upper_bound"]
    assert saved["mean"] == pytest.approx(((1 - 0.02 / 0.07) + 0 + (1 - 0.0325 / 0.07)) / 3)
    assert ("seed 1: -0.0100   final mIoU 0.230 vs 0.235   labels saved to the baseline's final "
            "mIoU: never reached (at most +0%)") in done.stdout


def test_seeds_without_aualc_are_left_out_and_the_verdict_names_the_baseline(tmp_path: Path):
    own = _comparison(tmp_path / "a", "entropy", {0: 0.50, 1: 0.46, 2: 0.52, 3: None})
    base = _comparison(tmp_path / "b", "entropy_kcenter", {0: 0.45, 1: 0.40, 2: 0.49, 3: 0.3})
    done = _run(f"{own}:entropy", f"{base / 'comparison.parquet'}:entropy_kcenter")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    assert entry["seeds"] == 3 and entry["verdict"] == "better than entropy_kcenter"
    assert "seed 3 has no AuALC" in done.stderr


@pytest.mark.parametrize("base_kwargs, needle", [
    ({"full": 0.5}, "different full-supervision references"),
    ({"start": 0.05}, "not the same initial set"),
    ({"drop": "aualc"}, "has no column 'aualc'"),
])
def test_runs_that_cannot_be_paired_are_refused(tmp_path: Path, base_kwargs, needle):
    own = _comparison(tmp_path / "a", "entropy", {0: 0.5, 1: 0.4})
    base = _comparison(tmp_path / "b", "random", {0: 0.4, 1: 0.4}, **base_kwargs)
    done = _run(f"{own}:entropy", f"{base}:random")
    assert done.returncode != 0 and needle in done.stderr


def test_unknown_strategy_names_the_ones_there(tmp_path: Path):
    own = _comparison(tmp_path / "a", "entropy", {0: 0.5})
    done = _run(f"{own}:bald", f"{own}:entropy")
    assert done.returncode != 0 and "no strategy 'bald'; it has ['entropy']" in done.stderr


def test_rounds_judges_the_curves_up_to_round_n(tmp_path: Path):
    """--rounds 1: AuALC recomputed from rounds 0-1 of each run (a longer run's first rounds
    stand in for the shorter protocol); a run without round 1 is left out."""
    from rayal.train.metrics import aualc

    own = _comparison(tmp_path / "a", "entropy", {0: 0.50, 1: 0.46, 2: 0.52})
    base = _comparison(tmp_path / "b", "random", {0: 0.44, 1: 0.47, 2: 0.40})
    table = pq.read_table(base / "comparison.parquet").to_pylist()   # seed 2 stopped at round 0
    pq.write_table(pa.Table.from_pylist([r for r in table if r["seed"] != 2 or r["round"] == 0]),
                   base / "comparison.parquet")
    done = _run(f"{own}:entropy", f"{base}:random", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout[done.stdout.index("{"):])

    def cut(a):   # the rows _comparison writes, rounds 0-1
        return aualc([0.02, 0.045], [a / 2, a / 2 + 0.01], 0.4)

    diffs = [cut(0.50) - cut(0.44), cut(0.46) - cut(0.47)]
    assert entry["seeds"] == 2 and entry["paired_aualc_mean"] == pytest.approx(np.mean(diffs))
    # labels saved on the cut curves: random's final mIoU is its round-1 value (0.23 on seed 0,
    # reached by entropy at round 0, 2 % vs 4.5 %); seed 1: 0.245, entropy 0.23 -> 0.24 never
    saved = entry["match_baseline"]
    assert saved["reached"] == 1 and saved["seeds"] == 2 and saved["upper_bound"]
    assert saved["mean"] == pytest.approx(((1 - 0.02 / 0.045) + (1 - 0.045 / 0.045)) / 2)
    assert "AuALC (rounds 0-1) per seed" in done.stdout
    assert "random seed 2 ends at round 0, before --rounds 1 (left out)" in done.stderr
    beyond = _run(f"{own}:entropy", f"{base}:random", "--rounds", "5")   # runs end at round 2
    assert beyond.returncode != 0 and "has no run to pair (every one was left out" in beyond.stderr
    for bad in ("0", "-1"):
        refused = _run(f"{own}:entropy", f"{base}:random", "--rounds", bad)
        assert refused.returncode == 2 and "needs rounds 0..N with N >= 1" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_training_draws_are_averaged_per_seed_as_verdicts_json_does(tmp_path: Path):
    """A comparison with compare.draws = 2: each seed's two draws are averaged (AuALC, curve)
    before pairing, so paired_across agrees with the comparison's own verdicts.json."""
    folder = _comparison(tmp_path / "a", "entropy", {0: 0.50, 1: 0.40, 2: 0.60})
    rows = pq.read_table(folder / "comparison.parquet").to_pylist()
    second = [dict(r, draw=1, aualc=r["aualc"] - 0.1, miou=r["miou"] - 0.05,
                   final_miou=r["final_miou"] - 0.05) for r in rows]
    pq.write_table(pa.Table.from_pylist([dict(r, draw=0) for r in rows] + second),
                   folder / "comparison.parquet")
    base = _comparison(tmp_path / "b", "random", {0: 0.40, 1: 0.40, 2: 0.40})
    done = _run(f"{folder}:entropy", f"{base}:random")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    # seed means 0.45, 0.35, 0.55 against 0.40 each
    assert entry["paired_aualc_mean"] == pytest.approx(np.mean([0.05, -0.05, 0.15]))
    assert entry["seeds"] == 3 and entry["seeds_above"] == 2
    assert "seed 1: -0.0500   final mIoU 0.175 vs 0.200" in done.stdout
    # a draw without an AuALC is left out by name, and its seed keeps the other draw
    broken = [dict(r, aualc=None) if r["seed"] == 2 and r.get("draw") == 0 else r
              for r in pq.read_table(folder / "comparison.parquet").to_pylist()]
    pq.write_table(pa.Table.from_pylist(broken), folder / "comparison.parquet")
    done = _run(f"{folder}:entropy", f"{base}:random")
    assert done.returncode == 0, done.stderr
    assert "seed 2 (entropy draw 0) has no AuALC (left out)" in done.stderr
    assert "seed 2: +0.1000" in done.stdout          # draw 1 alone: 0.50 against 0.40
    assert "averages [1, 2] training draw(s) per seed" in done.stderr   # base: [1]


def test_labels_joined_with_plus_are_training_draws_of_one_strategy(tmp_path: Path):
    """DIR:entropy+entropy_t1 averages the two labels' runs per seed, as draws."""
    rows = []
    for name, shift in (("entropy", 0.0), ("entropy_t1", -0.1), ("random", 0.0), ("random_t1", 0.02)):
        one = _comparison(tmp_path / name, name, {0: 0.50 + shift, 1: 0.40 + shift})
        rows += pq.read_table(one / "comparison.parquet").to_pylist()
    (tmp_path / "all").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "all" / "comparison.parquet")
    done = _run(f"{tmp_path / 'all'}:entropy+entropy_t1", f"{tmp_path / 'all'}:random+random_t1")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    assert entry["paired_aualc_mean"] == pytest.approx(-0.06) and entry["seeds"] == 2
    missing = _run(f"{tmp_path / 'all'}:entropy+entropy_t2", f"{tmp_path / 'all'}:random")
    assert missing.returncode != 0 and "has no strategy 'entropy_t2'" in missing.stderr
    twice = _run(f"{tmp_path / 'all'}:entropy+entropy", f"{tmp_path / 'all'}:random")
    assert twice.returncode != 0 and "names a strategy twice" in twice.stderr
    itself = _run(f"{tmp_path / 'all'}:random+entropy", f"{tmp_path / 'all'}:random")
    assert itself.returncode != 0 and "share the runs of ['random']" in itself.stderr
    uneven = _run(f"{tmp_path / 'all'}:entropy+entropy_t1", f"{tmp_path / 'all'}:random")
    assert uneven.returncode == 0 and "averages [2] training draw(s) per seed" in uneven.stderr
    assert "fewer than 3: no interval to read" in uneven.stderr      # 2 seeds


def _with_environment(folder: Path, keys: dict[int, str | None]) -> None:
    table = pq.read_table(folder / "comparison.parquet").to_pylist()
    rows = [dict(r, environment=keys[r["seed"]]) for r in table]
    pq.write_table(pa.Table.from_pylist(rows), folder / "comparison.parquet")


def test_pairs_made_in_different_numerical_environments_are_flagged(tmp_path: Path):
    own = _comparison(tmp_path / "a", "entropy", {0: 0.50, 1: 0.46, 2: 0.52})
    base = _comparison(tmp_path / "b", "random", {0: 0.45, 1: 0.47, 2: 0.49})
    _with_environment(own, {0: "e1", 1: "e1", 2: "e1"})
    _with_environment(base, {0: "e1", 1: "e1", 2: "e1"})
    done = _run(f"{own}:entropy", f"{base}:random")
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    assert entry["environments_match"] is True and "environment" not in done.stderr
    _with_environment(base, {0: "e1", 1: "e2", 2: "e2"})
    done = _run(f"{own}:entropy", f"{base}:random")
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    assert entry["environments_match"] is False
    assert "warning: seeds [1, 2]" in done.stderr and "different numerical environments" in done.stderr


def test_tables_without_an_environment_column_pair_as_before_with_a_note(tmp_path: Path):
    own = _comparison(tmp_path / "a", "entropy", {0: 0.50, 1: 0.46})
    base = _comparison(tmp_path / "b", "random", {0: 0.45, 1: 0.47})
    done = _run(f"{own}:entropy", f"{base}:random")
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    assert done.returncode == 0 and entry["environments_match"] is None
    assert "recorded no numerical environment" in done.stderr


def test_a_comparison_extended_with_new_seeds_is_read_from_both_tables(tmp_path: Path):
    own1 = _comparison(tmp_path / "a1", "entropy", {0: 0.50, 1: 0.46})
    own2 = _comparison(tmp_path / "a2", "entropy", {5: 0.52, 6: 0.41})
    base1 = _comparison(tmp_path / "b1", "random", {0: 0.45, 1: 0.47})
    base2 = _comparison(tmp_path / "b2", "random", {5: 0.49, 6: 0.40})
    done = _run(f"{own1},{own2}:entropy", f"{base1},{base2}:random")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout[done.stdout.index("{"):])
    assert entry["seeds"] == 4 and entry["seeds_above"] == 3
    assert entry["paired_aualc_mean"] == pytest.approx(np.mean([0.05, -0.01, 0.03, 0.01]))
    clash = _comparison(tmp_path / "a3", "entropy", {1: 0.3})
    done = _run(f"{own1},{clash}:entropy", f"{base1}:random")
    assert done.returncode != 0 and "seed 1 of entropy is in both" in done.stderr
    for bad, needle in [(f"{own1},{own1}", "twice"), (f"{own1},", "an empty path"),
                        (f"{own1},{tmp_path / 'nowhere'}", "does not exist")]:
        done = _run(f"{bad}:entropy", f"{base1}:random")
        assert done.returncode != 0 and needle in done.stderr, done.stderr
    comma = _comparison(tmp_path / "runs,v2", "entropy", {0: 0.5, 1: 0.46})   # a comma in a name
    done = _run(f"{comma}:entropy", f"{base1}:random")
    assert done.returncode == 0, done.stderr
