"""Compute-optimal allocation: Chinchilla's approaches 1 and 2, and the held-out check of 3.

- Approach 1: the lower envelope of loss against FLOPs over every run's validation curve;
  at each compute C the run on the envelope gives N_opt(C) and D_opt(C), and power laws in C
  are fitted to them. The envelope's points are not independent (neighbours come from one
  run), so the exponents' intervals here are narrower than the truth.
- Approach 2: runs grouped by FLOP budget (an IsoFLOP grid, or points within 25% of each
  other's FLOPs); per budget a parabola of loss in log N, whose minimum is N_opt(C). A budget
  whose parabola has no minimum inside the sizes tried says so instead of extrapolating.
- Held out: approach 3 refitted without the largest model size predicts that size's loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fit import FitError, fit_chinchilla, fit_power_law
from analysis.laws import PowerLaw
from scaling.contract import VAL_LOSS

ISOFLOP_TOLERANCE = 1.25  # runs whose FLOPs are within this factor share a budget
ENVELOPE_REACH = 1.02


@dataclass
class ComputeOptimal:
    """N_opt(C) and D_opt(C) as power laws, with the points they were fitted to."""

    points: pd.DataFrame  # flops, params, tokens, loss (and the run, for approach 1)
    n_opt: PowerLaw
    d_opt: PowerLaw
    refused: list[str] = field(default_factory=list)  # budgets that could not be used, and why
    parabolas: list[dict] = field(default_factory=list)  # approach 2: one per usable budget

    def to_dict(self) -> dict:
        return {
            "n_opt": self.n_opt.to_dict(),
            "d_opt": self.d_opt.to_dict(),
            "points": self.points.drop(columns=["run_id"], errors="ignore").to_dict("records"),
            "refused": self.refused,
            "parabolas": self.parabolas,
        }


def lower_envelope(curves: dict[str, pd.DataFrame], runs: pd.DataFrame, n_points: int = 60):
    """At each of `n_points` log-spaced FLOP values, the lowest validation loss any run reached
    there (linear in log FLOPs between a run's evaluations) and the run that reached it."""
    by_id = runs.set_index("run_id")[["name", "params", "flops_per_token"]].to_dict("index")
    usable = {
        run_id: curve.sort_values("flops")
        for run_id, curve in curves.items()
        if run_id in by_id and len(curve) >= 2 and "flops" in curve
    }
    if not usable:
        raise FitError("approach 1: no finished run has a validation curve with 2 or more points")
    low = min(c["flops"].iloc[0] for c in usable.values())
    high = max(c["flops"].iloc[-1] for c in usable.values())
    rows = []
    for C in np.logspace(np.log10(low), np.log10(high), n_points):
        best = None
        for run_id, curve in usable.items():
            flops = curve["flops"].to_numpy(float)
            # A run counts up to its end, and 2% past it: runs of one IsoFLOP budget end a
            # rounding apart, and the one that ends last should not win the end by default.
            if not flops[0] <= C <= flops[-1] * ENVELOPE_REACH:
                continue
            loss = float(np.interp(np.log(C), np.log(flops), curve[VAL_LOSS].to_numpy(float)))
            if best is None or loss < best[1]:
                best = (run_id, loss)
        if best is not None:
            run = by_id[best[0]]
            rows.append(
                {
                    "flops": C,
                    "loss": best[1],
                    "run_id": best[0],
                    "name": run["name"],
                    "params": float(run["params"]),
                    "tokens": C / float(run["flops_per_token"]),
                }
            )
    return pd.DataFrame(rows)


def approach_1(curves: dict[str, pd.DataFrame], runs: pd.DataFrame) -> ComputeOptimal:
    envelope = lower_envelope(curves, runs)
    sizes = envelope["params"].unique()
    if len(sizes) < 2:
        raise FitError(
            f"approach 1: one model size (N = {sizes[0]:.3g}, run {envelope['name'].iloc[0]}) "
            "is lowest at every compute, so the grid does not show N_opt moving with compute"
        )
    return ComputeOptimal(
        envelope,
        fit_power_law(envelope["flops"], envelope["params"], "approach 1: N_opt(C)"),
        fit_power_law(envelope["flops"], envelope["tokens"], "approach 1: D_opt(C)"),
    )


def isoflop_budgets(flops) -> np.ndarray:
    """A budget label per point: points are sorted by FLOPs and a new budget starts wherever
    the next point has more than ISOFLOP_TOLERANCE times the FLOPs of the budget's first."""
    flops = np.asarray(flops, float)
    labels = np.empty(len(flops))
    order = np.argsort(flops)
    first = None
    for i in order:
        if first is None or flops[i] > first * ISOFLOP_TOLERANCE:
            first = flops[i]
            members = []
        members.append(i)
        labels[members] = np.exp(np.mean(np.log(flops[members])))  # the budget's geometric mean
    return labels


def approach_2(params, tokens, flops, loss) -> ComputeOptimal:
    """IsoFLOP parabolas. Every budget with 3 or more sizes is tried; one without an interior
    minimum is listed in `refused` with the reason. Needs 2 usable budgets for the laws."""
    points = pd.DataFrame(
        {
            "params": np.asarray(params, float),
            "tokens": np.asarray(tokens, float),
            "flops": np.asarray(flops, float),
            "loss": np.asarray(loss, float),
        }
    )
    points["budget"] = isoflop_budgets(points["flops"])
    optima: list[dict] = []
    refused: list[str] = []
    parabolas: list[dict] = []
    for budget in np.unique(points["budget"]):
        group = points[points["budget"] == budget]
        log_n = np.log(group["params"].to_numpy())
        where = f"budget {budget:.3g} FLOPs"
        if len(np.unique(log_n)) < 3:
            refused.append(f"{where}: {len(np.unique(log_n))} model size(s); a parabola needs 3")
            continue
        curvature, slope, intercept = np.polyfit(log_n, group["loss"], 2)
        vertex = -slope / (2 * curvature) if curvature > 0 else np.nan
        if not (curvature > 0 and log_n.min() < vertex < log_n.max()):
            smallest = group["params"].to_numpy()[group["loss"].to_numpy().argmin()]
            refused.append(
                f"{where}: no interior minimum (lowest loss at N = {smallest:.3g}, an end of "
                "the sizes tried), so N_opt lies outside the grid"
            )
            continue
        # Tokens at the optimum: log D is linear in log N along an IsoFLOP line.
        d_slope, d_intercept = np.polyfit(log_n, np.log(group["tokens"]), 1)
        n_opt = float(np.exp(vertex))
        optima.append(
            {
                "flops": float(budget),
                "params": n_opt,
                "tokens": float(np.exp(d_intercept + d_slope * vertex)),
                "loss": float(np.polyval([curvature, slope, intercept], vertex)),
            }
        )
        parabolas.append(
            {"flops": float(budget), "coefficients": [curvature, slope, intercept], "n_opt": n_opt}
        )
    if len(optima) < 2:
        raise FitError(_approach_2_refusal(refused, len(optima)))
    best = pd.DataFrame(optima)
    return ComputeOptimal(
        best,
        fit_power_law(best["flops"], best["params"], "approach 2: N_opt(C)", min_points=2),
        fit_power_law(best["flops"], best["tokens"], "approach 2: D_opt(C)", min_points=2),
        refused,
        parabolas,
    )


def _approach_2_refusal(refused: list[str], usable: int) -> str:
    """One readable reason: budgets short of sizes are counted, the others quoted."""
    few = [r for r in refused if "a parabola needs 3" in r]
    other = [r for r in refused if r not in few]
    parts = [f"{usable} budget(s) usable"]
    if few:
        parts.append(
            f"{len(few)} of {len(refused) + usable} have fewer than 3 model sizes (runs within "
            f"{ISOFLOP_TOLERANCE:g}x of each other's FLOPs share a budget; an IsoFLOP grid, "
            "grid.compute, gives every size the same budgets)"
        )
    parts.extend(other)
    return "approach 2 needs 2 budgets with an interior minimum: " + "; ".join(parts)


@dataclass
class HeldOut:
    """Approach 3 fitted without the largest size, asked to predict that size's losses."""

    params: float
    points: pd.DataFrame  # tokens, actual, predicted, low, high, error (relative)
    resamples: int

    @property
    def mean_abs_error(self) -> float:
        return float(self.points["error"].abs().mean())

    def to_dict(self) -> dict:
        return {
            "held_out_params": self.params,
            "mean_abs_relative_error": self.mean_abs_error,
            "resamples": self.resamples,
            "points": self.points.to_dict("records"),
        }


def held_out_prediction(params, tokens, loss, bootstrap: int = 200, seed: int = 0) -> HeldOut:
    N, D, L = (np.asarray(v, float) for v in (params, tokens, loss))
    largest = N.max()
    train = N < largest
    if len(np.unique(N[train])) < 2:
        raise FitError(
            "held-out prediction: without the largest size fewer than 2 sizes remain to fit"
        )
    fit = fit_chinchilla(N[train], D[train], L[train], bootstrap=bootstrap, seed=seed)
    rows = []
    for d, actual in zip(D[~train], L[~train]):
        predicted = float(fit.law.loss(largest, d))
        interval = fit.interval(lambda law, d=d: law.loss(largest, d)) or (np.nan, np.nan)
        rows.append(
            {
                "tokens": float(d),
                "actual": float(actual),
                "predicted": predicted,
                "low": interval[0],
                "high": interval[1],
                "error": predicted / actual - 1,
            }
        )
    return HeldOut(float(largest), pd.DataFrame(rows), bootstrap)
