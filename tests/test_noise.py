"""Seeds as data: the seed-to-seed spread measured from a grid, and the noise scale the
bootstraps take from it (or, with one seed, from the scatter about the Chinchilla fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.fit import fit_chinchilla
from analysis.laws import ChinchillaLaw
from analysis.noise import RESIDUALS, SEEDS, fit_scatter, seed_spread

LAW = ChinchillaLaw(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)


def seeded_grid(seeds: int, noise: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {
            "size": f"N{N:.0e}",
            "params": N,
            "tokens": D,
            "seed": s,
            "val_loss": LAW.loss(N, D) * np.exp(noise * rng.standard_normal()),
        }
        for N in np.logspace(7, 9, 5)
        for D in np.logspace(9, 11, 4)
        for s in range(seeds)
    ]
    return pd.DataFrame(rows)


def test_the_seed_to_seed_spread_is_measured_per_size_and_pooled():
    grid = seeded_grid(seeds=3, noise=0.005)
    noise = seed_spread(grid, "val_loss")
    assert noise.source == SEEDS and noise.degrees_of_freedom == 20 * 2
    assert noise.relative == pytest.approx(0.005, rel=0.25)
    assert list(noise.by_size["cells"]) == [4] * 5 and list(noise.by_size["runs"]) == [12] * 5
    assert seed_spread(seeded_grid(seeds=1, noise=0.005), "val_loss") is None


def test_with_one_seed_the_scatter_about_the_fit_stands_in():
    grid = seeded_grid(seeds=1, noise=0.005)
    fit = fit_chinchilla(grid["params"], grid["tokens"], grid["val_loss"])
    noise = fit_scatter(grid["params"], grid["tokens"], grid["val_loss"], fit.law)
    assert noise.source == RESIDUALS and noise.degrees_of_freedom == 15
    assert noise.relative == pytest.approx(0.005, rel=0.4)


def test_a_bootstrap_at_the_seeds_noise_covers_the_law():
    """Approach 3's parametric bootstrap: the fitted law's losses with the seeds' noise."""
    grid = seeded_grid(seeds=2, noise=0.005, seed=3)
    noise = seed_spread(grid, "val_loss").relative
    fit = fit_chinchilla(grid["params"], grid["tokens"], grid["val_loss"], 200, noise=noise)
    assert fit.noise == noise and fit.resamples == 200
    for name in ("alpha", "beta", "a"):
        low, high = fit.interval(lambda law, n=name: getattr(law, n))
        assert low <= getattr(LAW, name) <= high, name


def wsd_grid(seed: int, noise: float = 0.008):
    """4 sizes x 5 budgets as WSD branches: each size's branches share their trunk's noise,
    and each has a quarter of it of its own."""
    rng = np.random.default_rng(seed)
    N, D = np.repeat(np.logspace(7, 9, 4), 5), np.tile(np.logspace(9, 11, 5), 4)
    trunk = np.repeat([f"trunk-{k}" for k in range(4)], 5)
    shift = noise * rng.standard_normal(4).repeat(5) + noise / 4 * rng.standard_normal(20)
    return N, D, LAW.loss(N, D) * np.exp(shift), trunk


def test_a_trunks_branches_are_shifted_together_in_the_bootstrap():
    """Resampling a trunk's branches as independent points misses the law here; shifting each
    trunk's branches together (at the scatter about the fit, as one seed measures it)
    widens the interval to hold it."""
    N, D, L, trunk = wsd_grid(seed=5)
    as_points = fit_chinchilla(N, D, L, 200)
    by_trunk = fit_chinchilla(N, D, L, 200, runs=trunk)
    assert as_points.noise is None and not as_points.runs_share_noise
    assert by_trunk.runs_share_noise and by_trunk.noise > 0
    low, high = as_points.interval(lambda law: law.a)
    assert not low <= LAW.a <= high
    low, high = by_trunk.interval(lambda law: law.a)
    assert low <= LAW.a <= high
    assert by_trunk.to_dict()["runs_share_noise"] is True


def test_runs_of_one_point_each_keep_the_resampled_points():
    grid = seeded_grid(seeds=1, noise=0.005)
    labels = [f"run-{k}" for k in range(len(grid))]
    fit = fit_chinchilla(grid["params"], grid["tokens"], grid["val_loss"], 20, runs=labels)
    plain = fit_chinchilla(grid["params"], grid["tokens"], grid["val_loss"], 20)
    assert fit.noise is None and not fit.runs_share_noise
    assert fit.interval(lambda law: law.a) == plain.interval(lambda law: law.a)
