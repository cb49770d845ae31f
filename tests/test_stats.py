import math

import numpy as np
import pytest

from dqnrun.stats import (
    aggregate_iqm,
    bootstrap_ci,
    episodes_to_threshold,
    final_scores,
    iqm,
    normalise,
    probability_of_improvement,
    profile_band,
    run_labels,
    score_distribution,
    stratified_bootstrap,
    variant_label,
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


def run_at(path, agent=None, lecture=False):
    from pathlib import Path

    from dqnrun.config import config_from_dict
    from dqnrun.results import Run

    zero = np.zeros(1)
    file = Path(path) if lecture else Path(path) / "results.joblib"
    if lecture:
        return Run(Path(path).stem, file, zero, zero, zero, window=25, is_lecture=True)
    config = None if agent is None else config_from_dict({"variant": "dqn", "agent": agent})
    return Run(Path(path).name, file, zero, zero, zero, window=25, config=config)


def test_labels_are_the_shortest_distinguishing_path_suffix():
    runs = [run_at("/a/x/ddqn"), run_at("/b/x/ddqn"), run_at("/a/per"), run_at("/c/old.joblib", lecture=True)]
    assert run_labels(runs) == ["a/x/ddqn", "b/x/ddqn", "per", "old"]
    assert run_labels([run_at("/a/ddqn"), run_at("/a/ddqn2")]) == ["ddqn", "ddqn2"]


@pytest.mark.parametrize("agent, label", [
    ({"double": False, "dueling": False, "prioritized": False, "tau": 1.0}, "dqn"),
    ({"double": True, "dueling": False, "prioritized": True, "tau": 1.0}, "ddqn+per"),
    ({"double": True, "dueling": True, "prioritized": False, "tau": 0.01}, "ddqn+dueling+polyak"),
])
def test_variant_labels_name_the_switches(agent, label):
    assert variant_label(run_at("/r", agent)) == label


def test_variant_labels_follow_switches_added_later():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Agent:
        double: bool = True
        dueling: bool = True
        prioritized: bool = True
        noisy: bool = True
        n_step: int = 3
        tau: float = 1.0

    run = dataclasses.replace(run_at("/r", {}), config=type("C", (), {"agent": Agent()})())
    assert variant_label(run) == "ddqn+dueling+per+noisy+3-step"


def test_normalise_maps_random_to_0_and_reference_to_1():
    np.testing.assert_allclose(normalise(np.array([-500.0, -100.0, -300.0]), -500.0, -100.0), [0.0, 1.0, 0.5])


def test_stratified_bootstrap_resamples_within_each_environment():
    # Every resample keeps 3 values of the first environment and 2 of the second, so the
    # pooled mean of any resample is exactly (3 * 0 + 2 * 1) / 5.
    means = stratified_bootstrap([np.zeros(3), np.ones(2)], np.mean, reps=500)
    np.testing.assert_allclose(means, 0.4)
    point, low, high = aggregate_iqm([np.array([0.1, 0.5, 0.9, 1.0]), np.array([0.2, 0.3])])
    assert point == pytest.approx(iqm(np.array([0.1, 0.5, 0.9, 1.0, 0.2, 0.3])))
    assert low <= point <= high


def test_score_distribution_weighs_environments_equally():
    taus = np.array([0.0, 1.0, 2.0])
    # env 1: fractions above tau 1, 0.5, 0; env 2: 1, 1, 0
    np.testing.assert_allclose(score_distribution([np.array([0.5, 1.5]), np.array([2.0])], taus), [1.0, 0.75, 0.0])
    low, high = profile_band([np.array([0.5, 1.5]), np.array([2.0])], taus)
    assert (low <= [1.0, 0.75, 0.0]).all() and (high >= [1.0, 0.75, 0.0]).all()
