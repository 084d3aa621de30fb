"""Seeds as data: the seed-to-seed spread measured from a grid, and the noise scale the
bootstraps take from it (or, with one seed, from the scatter about the Chinchilla fit)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import REPO

from analysis.analyse import Refused
from analysis.fit import fit_chinchilla
from analysis.frontier import held_out_prediction
from analysis.laws import ChinchillaLaw
from analysis.noise import BRANCH_OWN_SHARE, RESIDUALS, SEEDS, fit_scatter, seed_spread

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


def test_with_one_seed_the_scatter_measures_a_wsd_runs_noise_though_its_trunk_shares_it():
    """A trunk's branches share its part of a seed's noise, and the law's size terms take up
    part of each trunk's shift, so the residuals hold less noise than points less parameters:
    the scatter counts only what the fit leaves of the noise, as the study's grids split it.
    (Its variance is the noise's on average: the root mean square over grids.)"""
    measured, by_points = [], []
    for seed in range(12):
        grid = wsd_grid(seed, seeds=1, shared=1 - BRANCH_OWN_SHARE, own=BRANCH_OWN_SHARE)
        N, D, L = grid["params"], grid["tokens"], grid["val_loss"]
        law = fit_chinchilla(N, D, L).law
        measured.append(fit_scatter(N, D, L, law, runs=grid["trunk"]).relative / 0.008)
        by_points.append(fit_scatter(N, D, L, law).relative / 0.008)
    assert np.sqrt(np.mean(np.square(measured))) == pytest.approx(1, abs=0.1)
    assert np.sqrt(np.mean(np.square(by_points))) < 0.9


def test_a_bootstrap_at_the_seeds_noise_covers_the_law():
    """Approach 3's parametric bootstrap: the fitted law's losses with the seeds' noise."""
    grid = seeded_grid(seeds=2, noise=0.005, seed=3)
    noise = seed_spread(grid, "val_loss").relative
    fit = fit_chinchilla(grid["params"], grid["tokens"], grid["val_loss"], 200, noise=noise)
    assert fit.noise == noise and fit.resamples == 200
    for name in ("alpha", "beta", "a"):
        low, high = fit.interval(lambda law, n=name: getattr(law, n))
        assert low <= getattr(LAW, name) <= high, name
    # Without resamples no noise was added, and fits.json says so.
    plain = fit_chinchilla(grid["params"], grid["tokens"], grid["val_loss"], 0, noise=noise)
    assert plain.to_dict()["bootstrap_noise"] is None


def wsd_grid(
    seed: int, noise: float = 0.008, seeds: int = 2, shared: float = 1.0, own: float = 1 / 16
) -> pd.DataFrame:
    """4 sizes x 5 budgets as WSD branches, each size trained from `seeds` trunks: a trunk's
    branches share `shared` of its noise's variance, and each has `own` of it of its own."""
    rng = np.random.default_rng(seed)
    trunks = [(N, s) for s in range(seeds) for N in np.logspace(7, 9, 4)]
    shifts = noise * np.sqrt(shared) * rng.standard_normal(len(trunks))
    rows = [
        {
            "params": N,
            "tokens": D,
            "trunk": f"N{N:.0e}-trunk-s{s}",
            "val_loss": LAW.loss(N, D)
            * np.exp(shift + noise * np.sqrt(own) * rng.standard_normal()),
        }
        for (N, s), shift in zip(trunks, shifts)
        for D in np.logspace(9, 11, 5)
    ]
    return pd.DataFrame(rows)


def test_with_seeds_a_trunks_branches_are_shifted_together_in_the_bootstrap():
    """At the seeds' noise, shifting each branch on its own misses the law's a here; shifting
    each trunk's branches together by the trunk's share of it, and each branch by its own,
    holds it."""
    grid = wsd_grid(seed=11, shared=1 - BRANCH_OWN_SHARE, own=BRANCH_OWN_SHARE)
    noise = seed_spread(grid, "val_loss").relative
    N, D, L = grid["params"], grid["tokens"], grid["val_loss"]
    each_point = fit_chinchilla(N, D, L, 200, noise=noise)
    by_trunk = fit_chinchilla(N, D, L, 200, noise=noise, runs=grid["trunk"])
    assert by_trunk.runs_share_noise and not each_point.runs_share_noise
    low, high = each_point.interval(lambda law: law.a)
    assert not low <= LAW.a <= high
    low, high = by_trunk.interval(lambda law: law.a)
    assert low <= LAW.a <= high
    assert by_trunk.to_dict()["runs_share_noise"] is True


def test_with_one_seed_a_wsd_grids_bootstrap_adds_the_scatter_split_between_trunk_and_branch():
    """A trunk's branches are no independent draws to resample: with one seed the bootstrap
    adds the scatter about the fit (counted against what the fit leaves of a trunk's shared
    noise), each trunk's share to its branches together and each branch's own to it. Here
    resampled points miss the loss the law predicts at 100x the budget; the split holds it."""
    grid = wsd_grid(seed=2, seeds=1, shared=1 - BRANCH_OWN_SHARE, own=BRANCH_OWN_SHARE)
    N, D, L = grid["params"], grid["tokens"], grid["val_loss"]
    by_trunk = fit_chinchilla(N, D, L, 200, runs=grid["trunk"])
    points = fit_chinchilla(N, D, L, 200)
    assert by_trunk.noise == fit_scatter(N, D, L, by_trunk.law, runs=grid["trunk"]).relative
    assert by_trunk.runs_share_noise and points.noise is None
    budget = 100 * float((6 * N * D).max())
    truth = LAW.loss_opt(budget)
    low, high = points.interval(lambda law: law.loss_opt(budget))
    assert not low <= truth <= high
    low, high = by_trunk.interval(lambda law: law.loss_opt(budget))
    assert low <= truth <= high


def test_the_held_out_prediction_bootstraps_as_approach_3_does():
    """Refitted without the largest size, approach 3 keeps its bootstrap: with one seed on a
    WSD grid the scatter about that fit, split between trunk and branch; with seeds, their
    spread. fits.json says which noise it added."""
    one_seed = wsd_grid(seed=2, seeds=1, shared=1 - BRANCH_OWN_SHARE, own=BRANCH_OWN_SHARE)
    seeded = wsd_grid(seed=11, shared=1 - BRANCH_OWN_SHARE, own=BRANCH_OWN_SHARE)
    for grid, noise in (one_seed, None), (seeded, seed_spread(seeded, "val_loss").relative):
        N, D, L = (grid[c].to_numpy() for c in ("params", "tokens", "val_loss"))
        held = held_out_prediction(N, D, L, bootstrap=50, noise=noise, runs=grid["trunk"])
        train = N < N.max()
        fit = fit_chinchilla(
            N[train], D[train], L[train], 50, noise=noise, runs=grid["trunk"][train]
        )
        assert fit.runs_share_noise and held.noise == fit.noise
        assert held.to_dict()["bootstrap_noise"] == fit.noise
        point = (N.max(), held.points["tokens"].iloc[0])
        low, high = fit.interval(lambda law, point=point: law.loss(*point))
        assert (held.points["low"].iloc[0], held.points["high"].iloc[0]) == (low, high)
    assert held_out_prediction(N, D, L, bootstrap=50).noise is None  # resampled points


def record_wsd_grid(
    uri: str, folder, seeds: list[int], noise: float = 0.008, law: ChinchillaLaw = LAW
) -> str:
    """A WSD grid of 4 sizes x 5 budgets recorded as `scaling run` records one, its branches'
    losses from `law` with their trunk's noise; returns the experiment's name."""
    from helpers import tiny_spec, write_spec

    from scaling import spec as spec_lib
    from scaling.tracking import Tracker

    name = f"wsd-seeds-{len(seeds)}"
    sizes = [
        {"n_layer": n, "d_model": d, "n_head": 2} for n, d in ((1, 32), (2, 48), (2, 64), (3, 96))
    ]
    raw = tiny_spec(
        name,
        model={"sizes": sizes},
        grid={"seq_len": [64], "tokens": [32768, 65536, 131072, 262144, 524288], "seeds": seeds},
        train={"schedule": "wsd", "eval_interval_tokens": 32768},
    )
    spec_file = write_spec(folder / f"{name}.yaml", raw)
    spec, trials = spec_lib.load(spec_file)
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id(name)
    parent = tracker.start_grid(experiment_id, spec, spec_file, trials)
    rng = np.random.default_rng(len(seeds))
    trunk_shift = {t.name: noise * rng.standard_normal() for t in trials if t.kind == "trunk"}
    for trial in trials:
        run_id = tracker.start_trial(experiment_id, parent, trial)
        shift = trunk_shift[trial.name if trial.kind == "trunk" else trial.trunk]
        for tokens in (trial.branch_at + trial.tokens) / 2, trial.tokens:
            loss = law.loss(trial.params, tokens) * np.exp(
                shift + noise / 4 * rng.standard_normal()
            )
            tracker.log_metrics(run_id, {"step": int(tokens), "val_loss": loss, "lr": 1e-3})
        tracker.end_trial(run_id, "FINISHED")
    tracker.end_grid(parent)
    return name


@pytest.mark.slow  # a recorded grid in a real MLflow store, analysed as the report does
@pytest.mark.parametrize("seeds", [[0, 1], [0]])
def test_the_report_says_how_approaches_3_and_1_treat_a_trunks_branches(tmp_path, seeds):
    from analysis.analyse import analyse
    from analysis.render import markdown
    from analysis.runs import from_mlflow
    from analysis.sections import verdict

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # A law whose N_opt lies among the grid's sizes, so that approach 1 stands too.
    law = ChinchillaLaw(E=1.82, A=800.0, B=1000.0, alpha=0.35, beta=0.35)
    name = record_wsd_grid(uri, tmp_path, seeds, law=law)
    a = analyse(from_mlflow(uri, name), name, bootstrap=50)
    text = " ".join(markdown(verdict(a)).split())
    assert a.noise.source == (SEEDS if len(seeds) == 2 else RESIDUALS)
    assert a.chinchilla.runs_share_noise and a.chinchilla.noise == a.noise.relative
    assert not isinstance(a.approach_1, Refused)
    assert "and so does approach 3's" in text
    assert (
        "so approach 3's resamples and approach 1's replicates shift each trunk's branches "
        "together by the trunk's share of the noise and each branch by its own (40%"
    ) in text
    assert ("With one seed the noise is the scatter" in text) == (len(seeds) == 1)


@pytest.mark.parametrize("given", [["--tracking-uri", "sqlite:///x.db"], ["--experiment", "wsd"]])
def test_the_seed_split_benchmark_takes_a_store_and_experiment_together(given, tmp_path):
    """One without the other would measure the wrong grid, or run 15 minutes of a new one."""
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "seed_noise_split.py"), *given],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--tracking-uri and --experiment go together" in done.stderr.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []
