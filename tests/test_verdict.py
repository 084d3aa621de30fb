"""One verdict across the three approaches: the consensus, and who disagrees and why."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analysis.fit import ChinchillaFit, fit_chinchilla
from analysis.frontier import ComputeOptimal, approach_2
from analysis.laws import ChinchillaLaw, PowerLaw
from analysis.verdict import Estimate, agreement, consensus, verdict

LAW = ChinchillaLaw(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)


def test_the_consensus_weighs_each_approach_by_the_precision_of_its_interval():
    narrow, wide = (
        Estimate("approach 2", 0.50, (0.49, 0.51)),
        Estimate("approach 3", 0.60, (0.5, 0.7)),
    )
    found = consensus([narrow, wide])
    # Weights 1/0.02² and 1/0.2²: the narrow one counts 100 times as much.
    assert found.value == pytest.approx((100 * 0.50 + 0.60) / 101)
    assert found.interval == pytest.approx(((100 * 0.49 + 0.5) / 101, (100 * 0.51 + 0.7) / 101))
    assert consensus([Estimate("approach 1", 0.5, None)]) is None


def test_an_approach_whose_interval_excludes_the_others_consensus_disagrees():
    estimates = [
        Estimate("approach 1", 0.50, (0.45, 0.55)),
        Estimate("approach 2", 0.66, (0.62, 0.70)),
        Estimate("approach 3", 0.51, (0.47, 0.56)),
    ]
    assert agreement(estimates).disagreeing == ["approach 2"]
    assert agreement([estimates[0], estimates[2]]).disagreeing == []
    # Two left: they disagree only when their intervals do not overlap.
    assert agreement(estimates[:2]).disagreeing == ["approach 1", "approach 2"]


def isoflop_points(budgets, seed=0, noise=0.003, law=LAW):
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        for N in law.n_opt(C) * 2.0 ** np.arange(-3, 4):
            D = C / (6 * N)
            rows.append((N, D, C, law.loss(N, D) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["params", "tokens", "flops", "loss"])


@pytest.fixture(scope="module")
def honest():
    """An IsoFLOP grid of LAW and approach 3 fitted on it."""
    grid = isoflop_points(np.logspace(18, 21, 4))
    return grid, fit_chinchilla(grid["params"], grid["tokens"], grid["loss"], bootstrap=200)


def test_a_consistent_grid_gets_a_consistent_verdict(honest):
    grid, three = honest
    two = approach_2(grid["params"], grid["tokens"], grid["flops"], grid["loss"], noise=0.003)
    found = verdict(None, two, three, [1e22], refused={"approach 1": "no curves"})
    assert found.text.startswith("Consistent: the 2 approaches' intervals for a agree.")
    assert found.a.consensus.interval[0] <= LAW.a <= found.a.consensus.interval[1]
    assert set(found.to_dict()["loss"]) == {"1e+22"}


def test_a_budget_with_its_minimum_at_the_edge_is_named_as_the_likely_reason(honest):
    """Approach 2 on sweeps cut short of their minimum at the two largest budgets (so it
    leaves them out), on runs whose allocation differs from approach 3's: the verdict says
    they disagree and names the budgets approach 2 left out."""
    skewed = ChinchillaLaw(E=1.82, A=482.0, B=2085.0, alpha=0.19, beta=0.37)  # a = 0.66
    grid = isoflop_points(np.logspace(18, 22, 5), seed=1, law=skewed)
    cut = (grid["flops"] >= 1e21) & (grid["params"] > 0.9 * skewed.n_opt(grid["flops"]))
    kept = grid[~cut]
    two = approach_2(kept["params"], kept["tokens"], kept["flops"], kept["loss"], noise=0.003)
    assert len(two.refused) == 2
    found = verdict(None, two, honest[1], [1e22])
    assert found.a.disagreeing == ["approach 2", "approach 3"]
    assert "Approach 2 disagrees on a" in found.text
    assert (
        "2 budget(s) with the minimum at or beyond the edge of the sizes tried were left out"
        in found.text
    )


def test_a_beta_whose_interval_ends_are_far_apart_is_named_as_the_likely_reason(honest):
    """Approach 3 with beta between 0.05 and 0.2: only 0.15 wide, but 4x from end to end, so
    its a (about 0.3) is not pinned, and approach 2 (about 0.5) stands apart from it."""
    grid, _ = honest
    two = approach_2(grid["params"], grid["tokens"], grid["flops"], grid["loss"], noise=0.003)
    law = ChinchillaLaw(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.15)
    samples = [replace(law, beta=beta) for beta in np.linspace(0.045, 0.205, 41)]
    three = ChinchillaFit(law, 1e-3, 28, 4500, resamples=41, samples=samples, n_sizes=7)
    found = verdict(None, two, three, [1e22])
    assert found.a.disagreeing == ["approach 2", "approach 3"]
    assert found.reasons["approach 3"] == (
        "a loose beta (95% interval 0.049 to 0.201, its ends are 4.1x apart, more than 2x)"
    )


def test_approach_1s_likely_reason_is_how_little_compute_its_ridge_spans():
    """Approach 1's profiles come from the same few curves at every compute: a run's noise
    moves them together, the less so the more compute its ridge spans."""
    points = pd.DataFrame(
        {"flops": [1e12, 1e13, 1e14], "params": [1e5, 3e5, 1e6], "tokens": [1e6, 5e6, 2e7]}
    )
    far = PowerLaw(1.0, 0.9, (0.85, 0.95), 3, 0.0)
    found = verdict(ComputeOptimal(points, far, far), None, None, budgets=[])
    assert found.reasons["approach 1"] == (
        "its ridge brackets N_opt over 100x of compute, each profile through 3 to 5 sizes' "
        "curves, which one run's noise moves together"
    )
