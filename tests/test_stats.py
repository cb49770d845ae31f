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
    # the optimizer's options are not the agent's switches
    ({"double": False, "dueling": False, "prioritized": False, "tau": 1.0, "rmsprop_centered": True}, "dqn"),
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


# Runs evaluated every N env steps: the hand-made two-seed run of tests_helpers.step_run_data.
# Seed 1 evaluated at steps 100, 200, 300 (scores 10, 20, 40), seed 2 at 150, 250 (30, 50).


def step_run(path="/r/stepped", **changes):
    from pathlib import Path

    from tests_helpers import step_run_data

    from dqnrun.results import run_from_data

    return run_from_data({**step_run_data(), **changes}, Path(path) / "results.joblib")


def test_evaluations_are_interpolated_onto_one_grid_without_extrapolation():
    from dqnrun.stats import eval_curve, eval_grid, eval_points, is_step_evaluated, on_grid

    run = step_run()
    assert is_step_evaluated(run)
    grid = eval_grid([run])
    np.testing.assert_array_equal(grid, [100, 150, 200, 250, 300])
    nan = np.nan
    # By hand: seed 1 at 150 is halfway from 10 to 20; seed 2 at 200 halfway from 30 to 50;
    # nothing before a seed's first or after its last evaluation.
    np.testing.assert_array_equal(on_grid(eval_points(run), grid),
                                  [[10, 15, 20, 30, 40], [nan, 30, 40, 50, nan]])
    xs, per_seed = eval_curve(run)
    np.testing.assert_array_equal(xs, [150, 200, 250])  # the steps both seeds cover
    np.testing.assert_array_equal(per_seed.mean(axis=0), [22.5, 30.0, 40.0])
    # A grid shared with another run's evaluation steps (e.g. 175) adds points, interpolated alike.
    xs, per_seed = eval_curve(run, np.array([100.0, 150.0, 175.0, 200.0, 250.0, 300.0]))
    np.testing.assert_array_equal(per_seed, [[15, 17.5, 20, 30], [30, 35, 40, 50]])


def test_final_score_of_a_step_evaluated_run_comes_from_its_evaluations():
    from dqnrun.stats import STEP_EVAL, summarize

    row = summarize(step_run(), last=None)
    assert row.kind == STEP_EVAL and row.last == 1
    np.testing.assert_array_equal(row.final_per_seed, [40.0, 50.0])  # each seed's last evaluation
    assert row.final_mean == 45.0 and row.best == 50.0
    assert row.auc == pytest.approx((10 + 20 + 40 + 30 + 50) / 5)
    assert row.final_ci == bootstrap_ci(np.array([40.0, 50.0]))
    # Threshold 35: seed 1 first reaches it at step 300, in its 3rd episode (ends 120, 260, 300);
    # seed 2 at step 250, in its 3rd episode (ends 90, 180, 260).
    assert row.to_threshold == 3 and row.reached == 2
    assert row.env_steps == (300 + 260) / 2
    assert summarize(step_run(), last=2).final_mean == ((20 + 40) / 2 + (30 + 50) / 2) / 2
    cut = summarize(step_run(), last=None, max_step=250)  # compared up to env step 250
    np.testing.assert_array_equal(cut.final_per_seed, [20.0, 50.0])
    assert cut.env_steps == (250 + 250) / 2


def test_step_evaluated_runs_are_compared_up_to_the_shortest_and_mixed_runs_each_by_its_curve():
    from dqnrun.stats import EPISODE_EVAL, STEP_EVAL, compare_runs

    short = step_run("/r/short", eval_steps=np.array([[100.0, 200.0, np.nan], [150.0, 250.0, np.nan]]))
    comparison = compare_runs([step_run(), short, episodic_run()])
    long_row, short_row, episodic = comparison.rows
    assert [r.kind for r in comparison.rows] == [STEP_EVAL, STEP_EVAL, EPISODE_EVAL]
    assert long_row.max_step == 200.0 and short_row.max_step == 200.0  # seed 1 of short: last at 200
    np.testing.assert_array_equal(long_row.final_per_seed, [20.0, 30.0])
    assert any("compared up to env step 200" in n for n in comparison.notes)
    assert episodic.final_mean == (4.0 + 3.0) / 2  # its own curve: each seed's last `window` (1) scores


def episodic_run():
    """A two-seed per-episode run of two episodes (scores 2, 4 and 1, 3), window 1."""
    import dataclasses

    run = run_at("/r/episodic")
    scores = np.array([[2.0, 4.0], [1.0, 3.0]])
    return dataclasses.replace(run, window=1, scores=scores, smoothed=scores, steps=np.array([[10.0, 20.0], [5.0, 9.0]]),
                               episodes=np.array([2, 2]), seeds=(1, 2), aggregated_seeds=(1, 2),
                               wall_time=np.array([1.0, 1.0]), status=("complete", "complete"),
                               diverged=("", ""), eval_steps=np.zeros((2, 0)), eval_scores=np.zeros((2, 0)),
                               env_id="CartPole-v1")


def test_bootstrap_ci_is_the_percentile_bootstrap_by_hand():
    # Resample the seeds with replacement (10,000 times, generator seed 0), take each resample's
    # mean and read off the 2.5th and 97.5th percentiles.
    values = np.array([469.3, 455.1, 480.2, 490.0, 470.5])
    idx = np.random.default_rng(0).integers(0, len(values), (10_000, len(values)))
    np.testing.assert_allclose(bootstrap_ci(values), np.percentile(values[idx].mean(axis=1), [2.5, 97.5]), rtol=1e-12)
