import numpy as np
import pytest

from dqnrun.schedules import EpsilonSchedule, linear, log_epsilons, per_beta


def lecture_epsilons(max_, min_, decay_steps):
    """The lecture's create_epsilons, verbatim."""
    values = np.logspace(start=0, stop=-2, num=decay_steps, base=10)
    values = (values - values.min()) / (values.max() - values.min())
    return (max_ - min_) * values + min_


def test_log_epsilons_equal_the_lecture():
    np.testing.assert_array_equal(log_epsilons(1.0, 0.3, 20_000), lecture_epsilons(1.0, 0.3, 20_000))


def test_epsilon_schedule_endpoints_and_tail():
    eps = EpsilonSchedule(1.0, 0.3, 100)
    assert eps(0) == 1.0
    assert eps(99) == pytest.approx(0.3)
    assert eps(100) == 0.3 and eps(10**9) == 0.3
    values = [eps(t) for t in range(100)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # Log-space: after 1/2 of the steps, values are at 10^-1 of the way: (0.1 - 0.01) / 0.99.
    mid = log_epsilons(1.0, 0.0, 201)[100]
    assert mid == pytest.approx((0.1 - 0.01) / 0.99)


def test_single_step_decay():
    assert EpsilonSchedule(0.9, 0.1, 1)(0) == 0.9 and EpsilonSchedule(0.9, 0.1, 1)(1) == 0.1


def test_linear_clips_progress():
    assert linear(0.4, 1.0, -1) == 0.4
    assert linear(0.4, 1.0, 0.5) == pytest.approx(0.7)
    assert linear(0.4, 1.0, 2.0) == 1.0


def test_per_beta_by_steps_or_by_run_progress():
    assert per_beta(0.4, 1.0, step=500, beta_steps=1000, run_progress=0.0) == pytest.approx(0.7)
    assert per_beta(0.4, 1.0, step=5000, beta_steps=1000, run_progress=0.0) == 1.0
    assert per_beta(0.4, 1.0, step=10**6, beta_steps=None, run_progress=0.25) == pytest.approx(0.55)


def test_linear_epsilon_is_sb3s_schedule():
    from dqnrun.schedules import LinearEpsilon, epsilon_schedule

    eps = epsilon_schedule("linear", 1.0, 0.1, 1000)
    assert isinstance(eps, LinearEpsilon)
    assert eps(0) == 1.0 and eps(1000) == eps(5000) == 0.1
    assert abs(eps(500) - 0.55) < 1e-12 and abs(eps(120) - (1.0 - 0.9 * 0.12)) < 1e-12


@pytest.mark.parametrize("eps_max, eps_min, decay_steps", [
    (1.0, 0.3, 20_000),  # every shipped config
    (1.0, 0.3, 200), (0.9, 0.1, 2), (1.0, 0.05, 12_345), (0.5, 0.5, 7),
])
def test_the_schedule_gives_bitwise_the_table_without_storing_it(eps_max, eps_min, decay_steps):
    eps = EpsilonSchedule(eps_max, eps_min, decay_steps)
    table = lecture_epsilons(eps_max, eps_min, decay_steps)
    values = np.array([eps(t) for t in range(decay_steps)])
    np.testing.assert_array_equal(values, table)  # exact, not approximate
    assert not any(isinstance(v, np.ndarray) for v in vars(eps).values())


def test_a_huge_decay_costs_nothing():
    eps = EpsilonSchedule(1.0, 0.3, 10**11)
    assert eps(0) == 1.0 and eps(10**11 - 1) == 0.3 and eps(10**11) == 0.3
    assert 0.3 < eps(10**10) < 1.0
