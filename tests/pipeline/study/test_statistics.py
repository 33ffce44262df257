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
