"""Tissue et al.'s curve law against the multi-power law, on a grid's own curves: which
predicts the grid's final losses better, from 40% prefixes and across schedules.

Both laws are asked what the report asks (analysis/curve_fits.py): each run's final loss from
the first 40% of every curve of its size, and where a size has runs under two schedules, one
schedule's finals from the other's curves. Prints, per law, the median absolute relative
error of each and the seconds its fits took.

The multi-power law (Luo et al. 2025, arXiv 2503.12811) refines Tissue et al.'s annealing term:

    L(t) = L0 + A·S1(t)^(−alpha) − B·Σ_k (η_{k−1} − η_k)·G(η_k^(−gamma)·S_k(t))
    G(x) = 1 − (C·x + 1)^(−beta),   S_k(t) = Σ_{τ=k..t} η_τ

so each LR drop pays off along its own power law in the LR area after it, where Tissue et
al.'s pays off at one fixed rate λ per step. Seven parameters against four and λ: L0, A and B
are linear once alpha, C, beta and gamma are fixed (variable projection, as for Tissue et al.'s
law), and a bounded least-squares search from 36 starts finds those four.

    python benchmarks/curve_laws.py --tracking-uri sqlite:///mlflow.db EXPERIMENT [...]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from itertools import product

import numpy as np
from scipy.optimize import least_squares, nnls

from analysis.analyse import _trunks, finished_runs, loss_law_points
from analysis.curve_fits import CurvePredictions, curve_predictions
from analysis.curve_law import Curve, annealed, fit_curve_law
from analysis.fit import FitError
from analysis.runs import from_mlflow
from scaling.hardware import cpu_model

# Starting points of (alpha, C, beta, gamma), LRs in units of the peak LR.
STARTS = list(product((0.1, 0.5, 1.0), (0.5, 2.0, 10.0), (0.3, 0.6), (0.3, 0.6)))
LOWER, UPPER = (0.01, 1e-3, 0.05, 0.0), (3.0, 1e3, 3.0, 1.5)


def annealing_sums(lr: np.ndarray, steps: np.ndarray, C: float, beta: float, gamma: float):
    """Σ_k (η_{k−1} − η_k)·G(η_k^(−gamma)·S_k(t)) at each t of `steps` (η_0 = 0, as in
    analysis/curve_law.py: a warm-up's rise counts against the loss)."""
    deltas = -np.diff(lr, prepend=0.0)
    changes = np.flatnonzero(deltas != 0)  # only the steps where the LR moved contribute
    area = np.concatenate([[0.0], np.cumsum(lr)])  # area[j]: the LR summed over steps 1..j
    after = area[steps][:, None] - area[changes][None, :]  # S_k(t), k = changes + 1
    reached = changes[None, :] < steps[:, None]
    x = np.maximum(lr[changes], 1e-12) ** -gamma * np.maximum(after, 0.0)
    gain = np.where(reached, 1 - (C * x + 1) ** -beta, 0.0)
    return gain @ deltas[changes]


@dataclass(frozen=True)
class MultiPowerLaw:
    L0: float
    A: float
    alpha: float
    B: float
    C: float
    beta: float
    gamma: float

    def loss(self, lr, steps) -> np.ndarray:
        lr, steps = np.asarray(lr, float), np.asarray(steps, int)
        S1 = np.cumsum(lr)[steps - 1]
        drops = annealing_sums(lr, steps, self.C, self.beta, self.gamma)
        return self.L0 + self.A * S1**-self.alpha - self.B * drops


@dataclass
class MultiPowerFit:
    law: MultiPowerLaw
    rms_relative: float


def fit_multi_power(curves: list[Curve], decays=None) -> MultiPowerFit:
    """One multi-power law for one size's `curves`, on relative residuals. `decays` is
    Tissue et al.'s λ, which this law has no use for."""
    curves = [c for c in curves if len(c.steps)]
    if sum(len(c.loss) for c in curves) < 8:
        raise FitError("the multi-power law has 7 parameters and needs at least 8 points")
    if not any(annealed(c) for c in curves):  # as Tissue et al.'s law refuses them
        raise FitError("no curve was measured after its LR fell: B is not identified")
    peak = max(float(c.lr.max()) for c in curves)
    loss = np.concatenate([c.loss for c in curves])
    S1 = np.concatenate([np.cumsum(c.lr / peak)[c.steps - 1] for c in curves])

    def linear_part(theta):
        """L0, A, B (each >= 0) at these alpha, C, beta, gamma, and the scaled design."""
        alpha, C, beta, gamma = theta
        drops = [annealing_sums(c.lr / peak, c.steps, C, beta, gamma) for c in curves]
        X = np.column_stack([np.ones_like(S1), S1**-alpha, -np.concatenate(drops)]) / loss[:, None]
        scale = np.linalg.norm(X, axis=0)
        scale[scale == 0] = 1.0
        coef, _ = nnls(X / scale, np.ones_like(loss))
        return coef / scale, X

    def residuals(theta):
        coef, X = linear_part(theta)
        return X @ coef - 1

    fits = []
    for start in STARTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fits.append(least_squares(residuals, start, bounds=(LOWER, UPPER), max_nfev=200))
    best = min(fits, key=lambda found: found.cost)
    (L0, A, B), _ = linear_part(best.x)
    alpha, C, beta, gamma = best.x
    # Back to absolute LRs: S1 scales by the peak, each drop by it, η^(−gamma)·S by peak^(1−gamma).
    law = MultiPowerLaw(L0, A * peak**alpha, alpha, B / peak, C * peak ** (gamma - 1), beta, gamma)
    predicted = np.concatenate([law.loss(c.lr, c.steps) for c in curves])
    return MultiPowerFit(law, float(np.sqrt(np.mean((loss / predicted - 1) ** 2))))


def errors(predictions: CurvePredictions, seconds: float) -> dict:
    def summary(table):
        median = predictions.median_error(table)
        rounded = None if median is None else round(median, 4)
        return {"runs": len(table), "median_abs_error": rounded}

    return {
        "from_prefix": summary(predictions.from_prefix),
        "across_schedules": summary(predictions.across_schedules),
        "seconds": round(seconds, 1),
    }


def compare(tracking_uri: str, experiment: str) -> dict:
    runs = from_mlflow(tracking_uri, experiment)
    _, _, points = loss_law_points(finished_runs(runs, experiment))
    trunks = _trunks(runs, points)
    found = {}
    for name, fit in (("tissue", fit_curve_law), ("multi-power", fit_multi_power)):
        started = time.perf_counter()
        predictions = curve_predictions(runs, points, trunks, fit=fit)
        found[name] = errors(predictions, time.perf_counter() - started)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    results = {name: compare(args.tracking_uri, name) for name in args.experiments}
    print(json.dumps({"benchmark": "curve_laws", "cpu": cpu_model(), "grids": results}, indent=1))


if __name__ == "__main__":
    main()
