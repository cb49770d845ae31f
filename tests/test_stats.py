import math

import numpy as np
import pytest

from dqnrun.stats import (
    bootstrap_ci,
    episodes_to_threshold,
    final_scores,
    iqm,
    probability_of_improvement,
)


def test_final_scores_use_each_seeds_own_last_episodes():
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, np.nan, np.nan]])
    np.testing.assert_allclose(final_scores(scores, 2), [3.5, 15.0])


def test_iqm_by_hand():
    # sorted: -50, 1, 2, 3, 4, 5, 6, 100; the middle 50% are 2, 3, 4, 5
    assert iqm(np.array([100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0])) == pytest.approx(3.5)
    assert iqm(np.array([2.0, 2.0, 2.0, 2.0])) == 2.0


def test_probability_of_improvement_counts_pairs():
    x, y = np.array([3.0, 5.0]), np.array([1.0, 3.0, 6.0])
    # pairs x > y: (3,1), (5,1), (5,3) = 3; ties (3,3) = 0.5 -> 3.5 / 6
    assert probability_of_improvement(x, y) == pytest.approx(3.5 / 6)
    assert probability_of_improvement(y, x) == pytest.approx(1 - 3.5 / 6)
    assert probability_of_improvement(np.ones(5), np.ones(5)) == 0.5


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    values = np.array([400.0, 450.0, 480.0, 500.0, 500.0])
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    assert low >= values.min() and high <= values.max()
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci(np.array([500.0] * 5)) == (500.0, 500.0)
    assert bootstrap_ci(np.array([7.0])) == (7.0, 7.0)


def test_episodes_to_threshold_is_the_end_of_the_first_window_that_reaches_it():
    smoothed = np.array([10.0, 200.0, 480.0, 490.0])
    assert episodes_to_threshold(smoothed, 475.0, window=25) == 2 + 25
    assert math.isnan(episodes_to_threshold(smoothed, 500.0, window=25))
