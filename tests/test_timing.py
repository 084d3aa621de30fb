"""Time laws and the two cost claims, on timings made from known laws."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.fit import FitError
from analysis.timing import (
    claim_exponential,
    claim_quadratic,
    fit_power_law,
    fit_seq_len_cost,
)
from scaling.contract import steady_step_time


def test_a_power_law_and_its_interval_are_recovered():
    rng = np.random.default_rng(0)
    N = np.logspace(5, 8, 12)
    t = 3e-9 * N**0.9 * np.exp(rng.normal(0, 0.05, N.size))
    law = fit_power_law(N, t)
    assert law.exponent == pytest.approx(0.9, abs=0.05)
    low, high = law.exponent_ci95
    assert low < 0.9 < high and high - low < 0.2


def test_a_trials_step_time_is_its_median_step_and_a_stall_shows_in_its_spread():
    # The first 10% of steps (warm-up) are left out; a steady run varies little.
    assert steady_step_time([5.0] + [0.1] * 9) == (0.1, 1.0)
    # A machine shared for a third of the run: ten times slower there. The median step is the
    # trial's own speed (the mean would be 0.4 s), and the 90th over the 10th percentile step
    # says how far its throughput varied.
    time, spread = steady_step_time([0.1] * 60 + [1.0] * 30)
    assert time == pytest.approx(0.1) and spread == pytest.approx(10)
    assert steady_step_time([]) is None  # a trial resumed at its last step times nothing


def test_the_sequence_length_split_finds_the_linear_and_quadratic_parts():
    T = np.array([128, 256, 512, 1024, 2048])
    a, b = 2e-6, 2.5e-9  # crossover at a/b = 800
    rng = np.random.default_rng(1)
    cost = fit_seq_len_cost(T, (a + b * T) * np.exp(rng.normal(0, 0.01, T.size)), d_model=128)
    assert cost.crossover == pytest.approx(800, rel=0.15)
    assert cost.flop_model_crossover == 768
    # Doubling costs 2x when attention is negligible and tends to 4x when it dominates.
    assert 2 < cost.doubling_ratio(128) < cost.doubling_ratio(4096) < 4
    assert cost.doubling_ratio(cost.length_where_doubling_costs(3.6)) == pytest.approx(3.6)


def test_the_quadratic_claim_gets_a_plain_verdict():
    cost = fit_seq_len_cost(
        [256, 512, 1024], [1.0e-6 + 1e-10 * T for T in (256, 512, 1024)], d_model=256
    )
    text = claim_quadratic(cost, [256, 512])
    assert text.startswith("Doubling the sequence length quadruples the cost: not true here.")
    assert "within 10% of 4x only from T ≈ 40,000" in text


def test_with_two_lengths_the_quadratic_claim_cannot_be_tested():
    # Two lengths fix a and b exactly: no degree of freedom is left to test the form with.
    cost = fit_seq_len_cost([128, 128, 512, 512], [1.3e-5, 1.2e-5, 1.5e-5, 1.6e-5], d_model=64)
    text = claim_quadratic(cost, [128])
    assert text.startswith(
        "Doubling the sequence length quadruples the cost: cannot be tested here. Only 2 "
        "lengths were timed (128 and 512)"
    )
    assert "x from T=" not in text  # no doubling ratio is printed


def test_the_exponential_claim_is_judged_by_aic():
    N = np.logspace(5, 8, 10)
    text = claim_exponential(N, 1e-9 * N**0.95)
    assert text.startswith("Doubling the model size increases training time exponentially: false.")
    assert "N^0.95" in text and "the power law fits better by AIC" in text
    exponential = claim_exponential(np.linspace(1, 10, 10), np.exp(0.7 * np.linspace(1, 10, 10)))
    assert "supported by these timings" in exponential
    # Over a narrow range both forms fit: the verdict says the timings cannot decide.
    narrow = np.linspace(1e6, 1.3e6, 6)
    undecided = claim_exponential(narrow, 1e-9 * narrow**0.9 * (1 + 0.01 * np.sin(narrow)))
    assert "not decided by these timings" in undecided and "fit about equally" in undecided


def test_timings_that_fall_with_size_do_not_judge_the_exponential_claim():
    # The smoke grid's T=512 times per token (µs): the 12K-parameter model is the slowest.
    N = np.array([12384, 55536, 98624, 332448] * 3, float)
    t = np.array([129, 35, 31, 34, 131, 36, 30, 33, 127, 34, 32, 35]) * 1e-6
    text = claim_exponential(N, t)
    assert text.startswith(
        "Doubling the model size increases training time exponentially: not tested by these "
        "timings."
    )
    assert "falls as N grows" in text and "grows as" not in text


def test_too_little_data_is_refused():
    with pytest.raises(FitError, match="needs at least 3 points, got 2"):
        fit_power_law([1e6, 2e6], [1.0, 2.0])
    with pytest.raises(FitError, match="all points have the same x"):
        fit_seq_len_cost([512, 512, 512], [1.0, 1.1, 0.9], d_model=64)
