"""How noisy a grid's final losses are: the scale the bootstraps of approaches 1 and 2 add.

With two or more seeds of one (size, tokens) cell the grid measures it directly: the pooled
standard deviation of log loss across seeds (Porian et al. 2024 bootstrap with seed noise;
Choshen et al. 2025 find seed variance matters). With one seed, the scatter of the points
about the Chinchilla fit stands in for it: that scatter holds the noise and any misfit of the
law's form, so it errs on the wide side.
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


def fit_scatter(params, tokens, loss, law: ChinchillaLaw) -> Noise | None:
    """The standard deviation of log loss about `law`, with the law's 5 parameters taken out
    of the degrees of freedom; None where fewer than 6 points leave none."""
    residuals = np.log(np.asarray(loss, float)) - np.log(law.loss(params, tokens))
    dof = len(residuals) - 5
    if dof < 1 or not np.all(np.isfinite(residuals)):
        return None
    relative = float(np.sqrt((residuals**2).sum() / dof))
    return Noise(relative, RESIDUALS, dof, pd.DataFrame())
