"""Paired bootstrap intervals and verdicts (rayal.pipeline.study.statistics), against hand-computed cases."""
import pytest

from rayal.pipeline.study.statistics import (BETTER, UNCLEAR, WORSE, bootstrap_ci, budget_interval,
                                       strategy_verdict, verdict)


def test_bootstrap_by_hand():
    # n = 2: resampled means are a, (a+b)/2, b with probabilities 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are a and b
    assert bootstrap_ci([0.1, 0.3]) == pytest.approx((0.1, 0.3))
    # n = 3: the smallest mean (all three draws 0.1) has probability 1/27 = 3.7% > 2.5%
    assert bootstrap_ci([0.1, 0.2, 0.3]) == pytest.approx((0.1, 0.3))
    # a constant sample has a zero-width interval; one value is its own interval
    assert bootstrap_ci([0.05] * 5) == pytest.approx((0.05, 0.05))
    assert bootstrap_ci([0.2]) == (0.2, 0.2)
    low, high = bootstrap_ci([0.0, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5], seed=3)
    assert 0.0 < low < 0.1857 < high < 0.4   # brackets the mean 0.1857, narrower than the range


def test_same_seed_same_interval():
    values = [0.01, -0.02, 0.03, 0.04, 0.00]
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)


def test_verdicts_read_from_the_interval_not_the_mean():
    assert verdict(0.01, 0.05, 5) == BETTER
    assert verdict(-0.05, -0.01, 5) == WORSE
    assert verdict(-0.01, 0.09, 5) == UNCLEAR        # mean may be well above 0: still unclear
    assert verdict(0.01, 0.05, 1) == UNCLEAR         # one pair is no evidence
    assert verdict(0.01, 0.05, 2) == UNCLEAR         # two: the bootstrap is the two values


def test_strategy_verdict_pairs_by_seed():
    own = {0: 0.80, 1: 0.82, 2: 0.85, 3: 0.90}
    base = {0: 0.70, 1: 0.72, 2: 0.75, 4: 0.99}      # seed 3 and 4 unpaired: left out
    v = strategy_verdict(own, base)
    assert v["seeds"] == 3 and v["seeds_above"] == 3
    assert v["paired_aualc_mean"] == pytest.approx(0.1)
    assert v["ci_low"] == pytest.approx(0.1) and v["ci_high"] == pytest.approx(0.1)
    assert v["verdict"] == BETTER
    b = budget_interval([0.2, None, 0.4])
    assert b["reached"] == 2 and b["mean"] == pytest.approx(0.3)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((0.2, 0.4))
    assert budget_interval([None])["mean"] is None


def test_verdict_names_the_baseline_it_was_read_against():
    assert verdict(0.01, 0.03, 5, against="entropy_kcenter") == "better than entropy_kcenter"
    assert verdict(-0.03, -0.01, 5, against="entropy") == "worse than entropy"
    assert verdict(0.01, 0.03, 5) == BETTER and verdict(-0.03, -0.01, 5) == WORSE


def test_fraction_to_reach_interpolates_the_first_crossing():
    from rayal.pipeline.study.statistics import fraction_to_reach

    x = [0.1, 0.2, 0.3, 0.4]
    assert fraction_to_reach(x, [0.1, 0.3, 0.5, 0.2], 0.4) == pytest.approx(0.25)   # first crossing
    assert fraction_to_reach(x, [0.5, 0.6, 0.7, 0.8], 0.4) == 0.1                   # round 0 reaches it
    assert fraction_to_reach(x, [0.1, 0.3, 0.5, 0.2], 0.5) == pytest.approx(0.3)    # exactly at a round
    assert fraction_to_reach(x, [0.1, 0.2, 0.3, 0.35], 0.4) is None
    with pytest.raises(ValueError, match="must not decrease"):
        fraction_to_reach([0.2, 0.1], [0.1, 0.2], 0.15)
    with pytest.raises(ValueError, match="equal 1-d curves"):
        fraction_to_reach([0.1, 0.2], [0.1], 0.15)


def test_label_saving_against_the_baselines_own_first_reach():
    """Random peaks at 30 % (0.42) and ends at 0.40 at 40 %: it first reaches 0.40 at 29.1 %,
    so the saving is taken against that, not against 40 %; a strategy that never reaches 0.40
    enters at the most it could have saved (its last fraction), flagged as a bound."""
    from rayal.pipeline.study.statistics import label_saving, saving_interval

    x = [0.1, 0.2, 0.3, 0.4]
    base = (x, [0.1, 0.2, 0.42, 0.40])
    f_base = 0.2 + 0.1 * 0.2 / 0.22        # 0.2 + 0.1 * (0.40 - 0.2) / (0.42 - 0.2)
    own = (x, [0.1, 0.38, 0.45, 0.45])
    f_own = 0.2 + 0.1 * 0.02 / 0.07        # 0.2 + 0.1 * (0.40 - 0.38) / (0.45 - 0.38)
    saving, reached = label_saving(own, base)
    assert reached and saving == pytest.approx(1 - f_own / f_base)
    assert label_saving(base, base) == (pytest.approx(0.0), True)
    bound, reached = label_saving((x, [0.1, 0.2, 0.3, 0.39]), base)    # never reaches 0.40
    assert not reached and bound == pytest.approx(1 - 0.4 / f_base) and bound < 0
    worse, reached = label_saving((x, [0.1, 0.2, 0.3, 0.40]), base)    # reaches it at 40 %
    assert reached and worse == pytest.approx(1 - 0.4 / f_base)
    never = (x, [0, 0, 0, 0])
    out = saving_interval({0: own, 1: base, 2: never}, {0: base, 1: base, 2: base, 3: base})
    assert out["seeds"] == 3 and out["reached"] == 2 and out["upper_bound"]
    assert out["mean"] == pytest.approx((1 - f_own / f_base + 0 + 1 - 0.4 / f_base) / 3)
    assert out["ci_low"] is None                          # seed 2 is anywhere below its bound
    assert out["ci_high"] == pytest.approx(1 - f_own / f_base)   # the best resample: seed 0 x3
    clean = saving_interval({0: own, 1: base}, {0: base, 1: base})
    assert clean["reached"] == 2 and not clean["upper_bound"]
    assert (clean["ci_low"], clean["ci_high"]) == pytest.approx((0.0, 1 - f_own / f_base))
    assert saving_interval({}, {0: base})["mean"] is None
    assert saving_interval({0: own, 1: base}, {0: base, 1: base}, seeds=[1])["seeds"] == 1


def test_label_saving_refuses_what_it_cannot_read():
    """A NaN mIoU (no class present in a round) or an empty curve is refused by label_saving
    and left out by saving_interval, counted; a baseline reaching its mIoU at 0 labels too."""
    from rayal.pipeline.study.statistics import label_saving, saving_interval

    x = [0.1, 0.2, 0.3]
    good, nan_last = (x, [0.1, 0.2, 0.3]), (x, [0.1, 0.2, float("nan")])
    with pytest.raises(ValueError, match="baseline's curve is empty or holds a NaN"):
        label_saving(good, nan_last)
    with pytest.raises(ValueError, match="strategy's curve is empty"):
        label_saving(([], []), good)
    with pytest.raises(ValueError, match="labelled fraction of 0.0"):
        label_saving(good, ([0.0, 0.1], [0.3, 0.2]))
    out = saving_interval({0: good, 1: (x, [float("nan"), 0.5, 0.5])}, {0: good, 1: good})
    assert out["seeds"] == 1 and out["left_out"] == 1 and out["mean"] == pytest.approx(0.0)
