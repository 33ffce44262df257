"""What ``rayal compare`` writes from its runs: the table, verdicts.json, labels saved."""
import pytest

from rayal.config import load_config
from rayal.pipeline.study.compare import run_configs, run_keys
from rayal.pipeline.study.report import (comparison_table, mean_curves, run_curves, strategy_stats,
                                         strategy_verdicts, training_noise)


def test_table_means_sample_std_and_reach_counts(write, tmp_path):
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


def test_verdicts_json_and_variants(write, tmp_path):
    """verdicts.json holds the contract's keys; a variant label runs its registered strategy
    with its own params, under its own label."""
    config = load_config(write(tmp_path), [
        "compare.seeds=[0,1,2]", "compare.strategies=[random, entropy, entropy_kcenter]",
        "compare.variants={entropy_kcenter: entropy}",
        "compare.params={entropy_kcenter: {diversity: kcenter, n_candidates: 8}}",
        "scoring.embeddings=[frame]"])   # k-center picks in frame embedding space
    configs = run_configs(config)
    labels = [label for label, _ in run_keys(config)]
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


def _rows(strategy, seed, fractions, mious):
    return [{"strategy": strategy, "seed": seed, "round": r, "labelled_fraction": x, "miou": y}
            for r, (x, y) in enumerate(zip(fractions, mious))]


def test_labels_saved_to_reach_random_final_miou(write, tmp_path):
    """Per seed: random ends at 0.40 at 40 %; entropy reaches 0.40 half way between its 20 %
    (0.30) and 30 % (0.50) rounds, at 25 % -> saves 1 - 0.25 / 0.40 = 37.5 %; on seed 1 it
    never reaches random's 0.45 (first reached at 40 %), so it enters at its bound, 0, and the
    figures are flagged as an upper bound."""
    config = load_config(write(tmp_path), ["compare.seeds=[0,1]"])
    x = [0.1, 0.2, 0.3, 0.4]
    rows = (_rows("random", 0, x, [0.1, 0.2, 0.3, 0.4]) + _rows("entropy", 0, x, [0.1, 0.3, 0.5, 0.5])
            + _rows("random", 1, x, [0.1, 0.2, 0.3, 0.45]) + _rows("entropy", 1, x, [0.1, 0.2, 0.3, 0.44]))
    assert run_curves(rows, "entropy")[0] == (x, [0.1, 0.3, 0.5, 0.5])
    base = {"unit": "image", "units_total": 10, "full_miou": 0.5, "budget_to_90": None,
            "budget_to_95": None, "seconds": 60.0, "final_miou": 0.4}
    summaries = [dict(base, strategy=s, seed=k, aualc=0.7) for s in ("random", "entropy") for k in (0, 1)]
    saved = strategy_verdicts(config, summaries, rows)["entropy"]["match_random"]
    assert saved["mean"] == pytest.approx(0.375 / 2) and saved["reached"] == 1 and saved["seeds"] == 2
    assert saved["upper_bound"]
    assert "match_random" not in strategy_verdicts(config, summaries, rows).get("random", {})
    line = next(ln for ln in comparison_table(config, summaries, rows).splitlines()
                if ln.startswith("| entropy |"))
    assert line.endswith("| at most +19% (upper 95% bound +38%), reached 1/2 |")
    assert "match_random" not in strategy_verdicts(config, summaries)["entropy"]   # no rows: no curves
    # rows in any order give the same curves; seed 0 alone reads as a plain interval
    shuffled = rows[::-1]
    assert run_curves(shuffled, "entropy") == run_curves(rows, "entropy")
    alone = load_config(write(tmp_path), ["compare.seeds=[0]"])
    line = next(ln for ln in comparison_table(alone, summaries[::2], shuffled).splitlines()
                if ln.startswith("| entropy |"))
    assert line.endswith("| +38% [+38%, +38%], reached 1/1 |")
    # a seed without an AuALC on one side is paired for neither figure
    summaries[3] = dict(summaries[3], aualc=None)   # entropy seed 1
    saved = strategy_verdicts(config, summaries, rows)["entropy"]["match_random"]
    assert saved["seeds"] == 1 and not saved["upper_bound"]


def test_training_draws_are_averaged_per_seed_before_pairing(write, tmp_path):
    """compare.draws: draw d of a seed trains with train.seed_offset + d into seed<k>_draw<d>;
    the verdict pairs each seed's mean over draws, and the training noise is the pooled
    within-seed std: random draws (0.6, 0.8) and (0.7, 0.7) -> sqrt((0.02 + 0) / 2) = 0.1."""
    config = load_config(write(tmp_path), ["compare.seeds=[0,1]", "compare.draws=2",
                                           "train.seed_offset=3"])
    configs = run_configs(config)
    assert [(lab, d) for lab, d in run_keys(config)][:4] == [("random", 0), ("random", 1)] * 2
    assert [c.output_dir.rsplit("/", 2)[-2:] for c in configs[:4]] == [
        ["random", "seed0"], ["random", "seed0_draw1"], ["random", "seed1"], ["random", "seed1_draw1"]]
    # draws train far from the other seeds' training draws (seed 0 draw 1 is not seed 1)
    assert [(c.seed, c.train.seed_offset) for c in configs[:4]] == [(0, 3), (0, 1003), (1, 3), (1, 1003)]
    base = {"unit": "image", "units_total": 16, "full_miou": 0.5, "budget_to_90": None,
            "budget_to_95": 0.5, "seconds": 60.0, "final_miou": 0.4}
    random = {(0, 0): 0.6, (0, 1): 0.8, (1, 0): 0.7, (1, 1): 0.7}
    entropy = {(0, 0): 0.9, (0, 1): 0.9, (1, 0): 0.8, (1, 1): 0.6}
    summaries = [dict(base, strategy=name, seed=k, draw=d, aualc=a)
                 for name, table in (("random", random), ("entropy", entropy))
                 for (k, d), a in table.items()]
    summaries[-1]["budget_to_95"] = None        # entropy seed 1, draw 1 never reached 95 %
    verdicts = strategy_verdicts(config, summaries)
    # seed means: random 0.7, 0.7; entropy 0.9, 0.7 -> paired +0.2, 0.0
    assert verdicts["entropy"]["paired_aualc_mean"] == pytest.approx(0.1)
    assert verdicts["entropy"]["seeds"] == 2 and verdicts["entropy"]["seeds_above"] == 1
    assert verdicts["random"]["training_noise_sd"] == pytest.approx(0.1)
    assert training_noise(summaries, "entropy") == pytest.approx(0.1)   # (0, 0.02) pooled
    assert verdicts["entropy"]["draws"] == 2
    assert verdicts["entropy"]["to_95"]["reached"] == 1                  # seed 1 not on every draw
    stats = {e["strategy"]: e for e in strategy_stats(config, summaries)}
    assert stats["entropy"]["runs"] == 4 and stats["entropy"]["aualc"] == pytest.approx([0.9, 0.7])
    table = comparison_table(config, summaries)
    assert "x 2 training draws" in table.splitlines()[0]
    entropy_line = next(ln for ln in table.splitlines() if ln.startswith("| entropy |"))
    assert entropy_line.startswith("| entropy | 4 |") and "| 1/2 | 0." in entropy_line  # of 2 seeds
    assert "training noise (AuALC std between draws of one seed): random 0.1000, entropy 0.1000" in table
    rows = _rows("random", 0, [0.1, 0.2], [0.1, 0.3]) + _rows("random", 0, [0.1, 0.2], [0.2, 0.5])
    assert run_curves(rows, "random") == {0: ([0.1, 0.2], [pytest.approx(0.15), pytest.approx(0.4)])}
    # the plot's band is the spread over seeds of their draw means, not over every draw
    rows += _rows("random", 1, [0.1, 0.2], [0.0, 0.3]) + _rows("random", 1, [0.1, 0.2], [0.3, 0.5])
    x, y, sd = mean_curves(rows, ["random"])["random (n=2)"]
    assert y == pytest.approx([0.15, 0.4]) and sd == pytest.approx([0.0, 0.0])
    assert training_noise(summaries[:1], "random") is None                # one draw: no noise figure
