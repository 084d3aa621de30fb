"""How noisy a grid's final losses are: the scale the bootstraps of approaches 1 and 2 add.

With two or more seeds of one (size, tokens) cell the grid measures it directly: the pooled
standard deviation of log loss across seeds (Porian et al. 2024 bootstrap with seed noise;
Choshen et al. 2025 find seed variance matters). With one seed, the scatter of the points
about the Chinchilla fit stands in for it: that scatter holds the noise and any misfit of the
law's form, so it errs on the wide side, once counted against what the fit leaves of the
noise (a WSD trunk's branches share most of theirs, and the fit's size terms take up part).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.laws import ChinchillaLaw

SEEDS, RESIDUALS = "seed-to-seed spread", "scatter about the Chinchilla fit"
# A WSD branch's own share of the variance of its seed noise, the rest its trunk's (so shared
# with the trunk's other branches): 40% on a real two-seed grid of experiments/wsd.yaml's shape
# (benchmarks/seed_noise_split.py; RESULTS.md, "The WSD noise model, measured").
BRANCH_OWN_SHARE = 0.40


@dataclass(frozen=True)
class Noise:
    """The relative noise of one run's final loss (the standard deviation of log loss)."""

    relative: float
    source: str  # SEEDS or RESIDUALS
    degrees_of_freedom: int
    by_size: pd.DataFrame  # with seeds: size, params, cells, runs, relative (per size)

    def to_dict(self) -> dict:
        return {
            "relative": self.relative,
            "source": self.source,
            "degrees_of_freedom": self.degrees_of_freedom,
            "by_size": self.by_size.to_dict("records"),
        }


def _pooled(groups) -> tuple[float, int]:
    """The pooled standard deviation of log loss over groups of repeats, and its d.o.f."""
    squares, dof = 0.0, 0
    for losses in groups:
        log_loss = np.log(np.asarray(losses, float))
        squares += float(((log_loss - log_loss.mean()) ** 2).sum())
        dof += len(log_loss) - 1
    return (np.sqrt(squares / dof) if dof else np.nan), dof


def seed_spread(points: pd.DataFrame, loss: str) -> Noise | None:
    """The seed-to-seed spread, pooled over cells and per size; None without repeated cells."""
    cells = points.groupby(["params", "tokens"])[loss]
    repeated = [group for _, group in cells if len(group) >= 2]
    if not repeated:
        return None
    relative, dof = _pooled(repeated)
    rows = []
    for _, group in points.groupby("params"):
        size_cells = [g for _, g in group.groupby("tokens")[loss] if len(g) >= 2]
        if size_cells:
            spread, _ = _pooled(size_cells)
            params = float(group["params"].iloc[0])
            name = group["size"].iloc[0] if "size" in group else f"N={params:.3g}"
            runs = sum(len(g) for g in size_cells)
            rows.append([name, params, len(size_cells), runs, spread])
    by_size = pd.DataFrame(rows, columns=["size", "params", "cells", "runs", "relative"])
    return Noise(float(relative), SEEDS, dof, by_size)


def fit_scatter(params, tokens, loss, law: ChinchillaLaw, runs=None) -> Noise | None:
    """The standard deviation of log loss about `law`; None where the fit leaves no degrees of
    freedom. With `runs` (the training run each point came from: a WSD branch's trunk) the
    points of one run share all but `BRANCH_OWN_SHARE` of their noise, and the law's size
    terms take up part of each run's shared shift, so the residuals hold less of the noise than
    points less parameters (on 4 sizes x 5 budgets a fifth too little): the sum of squares is
    divided by what the fit leaves of the noise's covariance, trace((I - H)·V), with H the fit's
    hat matrix (its tangent space, in log loss) and V the points' covariance per unit noise."""
    params, tokens, loss = (np.asarray(x, float) for x in (params, tokens, loss))
    residuals = np.log(loss) - np.log(law.loss(params, tokens))
    dof = len(residuals) - 5
    if dof < 1 or not np.all(np.isfinite(residuals)):
        return None
    jacobian = _log_loss_jacobian(params, tokens, law)
    left_over = np.eye(len(residuals)) - jacobian @ np.linalg.pinv(jacobian)
    covariance = np.eye(len(residuals))
    if runs is not None:
        ids = np.asarray(runs)
        same_run = (ids[:, None] == ids[None, :]).astype(float)
        covariance = (1 - BRANCH_OWN_SHARE) * same_run + BRANCH_OWN_SHARE * covariance
    relative = float(np.sqrt((residuals**2).sum() / np.trace(left_over @ covariance)))
    return Noise(relative, RESIDUALS, dof, pd.DataFrame())


def _log_loss_jacobian(params, tokens, law: ChinchillaLaw) -> np.ndarray:
    """(points, 5): the derivatives of log L(N, D) in E, A, B, alpha and beta."""
    size_term, data_term = law.A / params**law.alpha, law.B / tokens**law.beta
    columns = [
        np.ones_like(params),
        size_term / law.A,
        data_term / law.B,
        -size_term * np.log(params),
        -data_term * np.log(tokens),
    ]
    return np.column_stack(columns) / law.loss(params, tokens)[:, None]
