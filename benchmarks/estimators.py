"""How the report's three estimators of the compute-optimal exponent a (N_opt ∝ C^a) fare on grids
drawn from known Chinchilla laws: their bias, and how often their 95% intervals hold the truth.

Each draw picks a law (alpha and beta uniform in [0.25, 0.45], E in [1.5, 2.5], A and B log-
uniform in [100, 1000]) and a multiplicative noise level (0.2% to 1%: each run's curve is
shifted as a whole by it, as a seed shifts a run, and each evaluation jitters by a quarter of
it; a WSD branch shares 60% of its shift's variance with its trunk's other branches, as on a
real two-seed WSD grid, or all of it in the grids named so), makes a grid's final losses and
each run's validation curve from it (under WSD, each size's curve through its branches' finals,
as the report builds it), and runs each approach as the report runs it, with the noise the
report would measure (the seeds' spread, else the scatter about the Chinchilla fit): approach 1
(one ridge through the sizes' profiles at every compute), approach 2 (IsoFLOP minima from a
parabola through each budget's lowest size and one or two neighbours each side, two being the
report's default, chosen by this study, or through every size) and approach 3 (the Chinchilla
fit with its bootstrap: resampled points with one seed of independent runs; otherwise that
noise added to each point, under WSD split between each trunk's branches together and each
branch on its own).

Grids: the shapes `experiments/` uses (smoke: 4 sizes x 3 budgets; wsd: 4 sizes x 5 budgets,
with one seed and with two, and both again with all of a branch's noise its trunk's; law: 6
sizes x 3 budgets, both WSD); IsoFLOP grids of 5 sizes spaced 2x and of 7 sizes spanning 900x,
centred on the drawn law's optimum times a random factor (a user's guess); and an IsoFLOP grid
with one ladder of 9 sizes over 1000x at every budget, as Chinchilla's and Porian et al.'s are,
so the sweeps are lopsided one way at the smallest budget and the other at the largest. Each
estimator's bias of a, and of the loss it predicts at 100x the grid's largest budget. Targets,
for each approach's default estimator: |bias of a| <= 0.01 and 95% intervals that hold the truth
90-98% of the time.

Prints one JSON object. `--draws N` (default 200): 200 draws of one grid take 5-16 minutes on a
core here (the law shape 14-16 with three jobs on two cores), the grids one per core, so all
nine take about 1.5 hours; `--grids wsd,law` studies only the grids whose names start so, and
`--seed` draws others (to add draws to a run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.analyse import annealed_curves, training_runs
from analysis.fit import FitError, fit_chinchilla
from analysis.frontier import approach_1, approach_2
from analysis.laws import ChinchillaLaw
from analysis.noise import BRANCH_OWN_SHARE, fit_scatter, seed_spread
from scaling import spec as spec_lib
from scaling.contract import VAL_LOSS
from scaling.hardware import cpu_model

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
EVALUATIONS = 8  # points on each run's simulated validation curve
JITTER = 0.25  # an evaluation's own noise, as a share of the run's
# A WSD branch's own share of its seed noise's variance is BRANCH_OWN_SHARE, as measured on a
# real grid; the "all the trunk's" grids set 0.
TARGET_BIAS, TARGET_COVERAGE = 0.01, (0.90, 0.98)


def grid_of(spec_name: str, seeds: int = 1, own_share: float = BRANCH_OWN_SHARE):
    """The (params, tokens) points of an experiment's grid at its first sequence length, the
    same for every law, each `seeds` times; under WSD each with its `trunk` (one per size and
    seed) and the branch's `own_share` of its seed noise."""
    _, trials = spec_lib.load(EXPERIMENTS / f"{spec_name}.yaml")
    first = min(t.seq_len for t in trials)
    points = {(t.params, t.tokens) for t in trials if t.seq_len == first and t.kind != "trunk"}
    grid = pd.DataFrame(sorted(points), columns=["params", "tokens"], dtype=float)
    grid = pd.concat([grid.assign(seed=seed) for seed in range(seeds)], ignore_index=True)
    if any(t.kind == "branch" for t in trials):
        grid["trunk"] = [f"trunk of {n:.3g} s{s}" for n, s in zip(grid["params"], grid["seed"])]
        grid["own_share"] = own_share
    return lambda law, rng: grid


def isoflop_grid(ratios: np.ndarray, off_by: float):
    """5 budgets 10x apart; at each, sizes spaced by `ratios` around the law's own optimum
    times a random factor within `off_by` either way, as a user's guess would place them (so
    a budget's sweep is lopsided around its minimum)."""

    def make(law: ChinchillaLaw, rng: np.random.Generator) -> pd.DataFrame:
        offset = np.exp(rng.uniform(-np.log(off_by), np.log(off_by)))
        rows = []
        for C in 10.0 ** np.arange(15, 19):
            for N in float(law.n_opt(C)) * offset * ratios:
                rows.append({"params": N, "tokens": C / (6 * N)})
        return pd.DataFrame(rows)

    return make


def ladder_grid(law: ChinchillaLaw, rng: np.random.Generator) -> pd.DataFrame:
    """9 sizes over 1000x at each of 4 budgets 10x apart, the ladder centred on the middle
    budgets' optimum times a random factor within 2x: the same sizes at every budget."""
    C = 10.0 ** np.arange(15, 19)
    centre = float(law.n_opt(np.sqrt(C[0] * C[-1]))) * np.exp(rng.uniform(-np.log(2), np.log(2)))
    sizes = centre * 1000.0 ** np.linspace(-0.5, 0.5, 9)
    return pd.DataFrame([{"params": N, "tokens": c / (6 * N)} for c in C for N in sizes])


GRIDS = {
    "smoke (4 sizes x 3 budgets)": grid_of("smoke"),
    "wsd (4 sizes x 5 budgets)": grid_of("wsd"),
    "wsd with 2 seeds (4 sizes x 5 budgets x 2 seeds)": grid_of("wsd", seeds=2),
    "wsd, all noise the trunk's (4 sizes x 5 budgets)": grid_of("wsd", own_share=0),
    "wsd with 2 seeds, all noise the trunk's": grid_of("wsd", seeds=2, own_share=0),
    "law (6 sizes x 3 budgets)": grid_of("law"),
    "isoflop 4 budgets x 5 sizes 2x apart, centre off by up to 2x": isoflop_grid(
        2.0 ** np.arange(-2, 3), 2
    ),
    "isoflop 4 budgets x 7 sizes over 900x, centre off by up to 5x": isoflop_grid(
        30.0 ** np.linspace(-1, 1, 7), 5
    ),
    "isoflop 4 budgets x one ladder of 9 sizes over 1000x": ladder_grid,
}


def draw_law(rng: np.random.Generator) -> tuple[ChinchillaLaw, float]:
    law = ChinchillaLaw(
        E=rng.uniform(1.5, 2.5),
        A=float(np.exp(rng.uniform(np.log(100), np.log(1000)))),
        B=float(np.exp(rng.uniform(np.log(100), np.log(1000)))),
        alpha=rng.uniform(0.25, 0.45),
        beta=rng.uniform(0.25, 0.45),
    )
    return law, rng.uniform(0.002, 0.01)


def simulate(law: ChinchillaLaw, noise: float, grid: pd.DataFrame, rng: np.random.Generator):
    """Final losses and validation curves of the grid's runs, with multiplicative noise: a
    run's seed shifts its whole curve; a WSD grid's branches share their trunk's shift, but
    for their `own_share` of its variance, which is each branch's own."""
    runs = grid.assign(
        run_id=[f"r{i}" for i in range(len(grid))],
        name=[f"r{i}" for i in range(len(grid))],
        size=[f"N={n:.3g}" for n in grid["params"]],
        flops_per_token=6 * grid["params"],
    )
    if "seed" not in runs:
        runs["seed"] = 0
    seeds = runs["trunk"] if "trunk" in runs else runs["run_id"]
    seed_shift = {seed: rng.standard_normal() for seed in seeds.unique()}
    own_shares = runs["own_share"] if "own_share" in runs else np.zeros(len(runs))
    curves = {}
    for run, seed, own in zip(runs.itertuples(), seeds, own_shares):
        tokens = run.tokens * np.arange(1, EVALUATIONS + 1) / EVALUATIONS
        run_shift = seed_shift[seed]
        if own:  # (drawn only here, so grids without it keep their draws)
            run_shift = np.sqrt(1 - own) * run_shift + np.sqrt(own) * rng.standard_normal()
        shift = noise * (run_shift + JITTER * rng.standard_normal(EVALUATIONS))
        loss = law.loss(run.params, tokens) * np.exp(shift)
        curves[run.run_id] = pd.DataFrame({"flops": 6 * run.params * tokens, VAL_LOSS: loss})
    runs["loss"] = [curves[r][VAL_LOSS].iloc[-1] for r in runs["run_id"]]
    if "trunk" in runs:
        # What the report's approach 1 takes from a WSD grid: each size's curve through its
        # branches' final losses (a branch is annealed only at its end).
        finals = runs.assign(flops=6 * runs["params"] * runs["tokens"])
        curves = annealed_curves(finals.rename(columns={"loss": VAL_LOSS}))
    return runs, curves


# Approach 2's minimum from the lowest size and its neighbours: how many each side.
APPROACH_2 = {"approach 2 (±1 size)": 1, "approach 2 (±2 sizes)": 2, "approach 2 (every size)": 99}


def estimates(runs: pd.DataFrame, curves: dict, budget: float) -> dict:
    """Each estimator's a with its 95% interval, and the loss it predicts at `budget` with its
    interval (None where it refuses)."""
    found: dict = {}
    flops = 6 * runs["params"] * runs["tokens"]
    # As analysis/analyse.py does: the seeds' spread where there are seeds, else the scatter.
    noise = seed_spread(runs, "loss")
    trained_by = training_runs(runs)
    N, D, L = runs["params"], runs["tokens"], runs["loss"]
    fit = fit_chinchilla(
        N, D, L, bootstrap=200, noise=noise.relative if noise else None, runs=trained_by
    )
    noise = noise or fit_scatter(N, D, L, fit.law, runs=trained_by)
    scale = noise.relative if noise else None
    found["approach 3"] = (fit.law.a, fit.interval(lambda law: law.a))
    found["approach 3 loss"] = (
        float(fit.law.loss_opt(budget)),
        fit.interval(lambda law: float(law.loss_opt(budget))),
    )
    branches = "trunk" in runs  # each size's curve joins its branches' finals
    attempts = {
        "approach 1": lambda: approach_1(curves, runs, noise=scale, each_point_a_run=branches)
    }
    for name, neighbours in APPROACH_2.items():
        attempts[name] = lambda n=neighbours: approach_2(N, D, flops, L, noise=scale, neighbours=n)
    for name, attempt in attempts.items():
        try:
            result = attempt()
        except FitError:
            found[name] = found[f"{name} loss"] = None
            continue
        found[name] = (result.n_opt.exponent, result.n_opt.exponent_ci95)
        found[f"{name} loss"] = result.loss_at(budget)
    return found


def summary(errors: list[float], covered: list[bool], refused: int, draws: int) -> dict:
    return {
        "bias": round(float(np.mean(errors)), 4) if errors else None,
        "rmse": round(float(np.sqrt(np.mean(np.square(errors)))), 4) if errors else None,
        "coverage": round(float(np.mean(covered)), 3) if covered else None,
        "refused": f"{refused} of {draws}",
    }


def study(grid_name: str, draws: int, seed: int) -> dict:
    make_grid, rng = GRIDS[grid_name], np.random.default_rng(seed)
    errors: dict[str, list[float]] = {}
    covered: dict[str, list[bool]] = {}
    refused: dict[str, int] = {}
    for _ in range(draws):
        law, noise = draw_law(rng)
        grid = make_grid(law, rng)
        budget = 100 * float((6 * grid["params"] * grid["tokens"]).max())
        runs, curves = simulate(law, noise, grid, rng)
        for name, found in estimates(runs, curves, budget).items():
            is_loss = name.endswith(" loss")
            true = float(law.loss_opt(budget)) if is_loss else law.a
            if found is None:
                refused[name] = refused.get(name, 0) + 1
                continue
            value, interval = found
            # The loss's error is relative; the exponent's absolute.
            error = value / true - 1 if is_loss else value - true
            errors.setdefault(name, []).append(error)
            if interval is not None:
                covered.setdefault(name, []).append(interval[0] <= true <= interval[1])
    names = sorted(set(errors) | set(refused))
    return {
        "points": len(grid),
        "estimators": {
            name: summary(errors.get(name, []), covered.get(name, []), refused.get(name, 0), draws)
            for name in names
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--grids",
        default="",
        help="study only the grids whose names start with these, e.g. wsd,law",
    )
    args = parser.parse_args()
    wanted = [
        name for name in GRIDS if not args.grids or name.startswith(tuple(args.grids.split(",")))
    ]
    started = time.perf_counter()
    # A grid per process: the fits are numpy on one core each.
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        jobs = {name: pool.submit(study, name, args.draws, args.seed) for name in wanted}
        results = {name: job.result() for name, job in jobs.items()}
    print(
        json.dumps(
            {
                "benchmark": "estimators",
                "cpu": cpu_model(),
                "draws": args.draws,
                "grids": results,
                "target_abs_bias_a": TARGET_BIAS,
                "target_coverage": TARGET_COVERAGE,
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
