"""The best peak learning rate of each grid cell, and how it moves with N, D and compute.

- Per cell (a model size at a token budget, trained at 3 or more LRs): a least-squares parabola
  of loss in log LR, whose vertex is LR* (marin's recipe), with a residual-bootstrap 95%
  interval. A sweep whose lowest loss sits at its smallest or largest LR has not bracketed the
  optimum: LR* is then only a bound, named as such, and the note says which way to extend.
- Across cells: LR* = k·N^x·D^y by least squares in logs, over the cells with a vertex only,
  and LR* = c·C^z (DeepSeek LLM, arXiv 2401.02954, finds η_opt = 0.3118·C^−0.125).
- Each cell's best measured LR (the lowest mean loss over its seeds) gives the points the loss
  laws should be fitted on: the other LRs measure a worse-tuned model, not the size or budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.fit import FitError, bootstrap_interval, fit_power_law
from analysis.laws import PowerLaw
from scaling.contract import VAL_LOSS

VERTEX, MEASURED = "vertex", "best measured"
COLUMNS = ("size", "params", "tokens", "flops", "lr", VAL_LOSS, "run_id")


@dataclass(frozen=True)
class Optimum:
    """LR* of one cell's sweep: a parabola's vertex, or where it cannot be, the best measured LR."""

    lr: float
    ci95: tuple[float, float] | None
    method: str  # VERTEX or MEASURED
    bracketed: bool  # the lowest loss lies strictly inside the sweep's LRs
    n_lrs: int  # distinct learning rates
    note: str | None = None  # why LR* is a bound or a measured point, for the report
    fitted: tuple[float, float] | None = None  # a vertex: the LRs its parabola was fitted over

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "ci95": list(self.ci95) if self.ci95 else None,
            "fitted": list(self.fitted) if self.fitted else None,
        }


def _check(lrs, losses) -> tuple[np.ndarray, np.ndarray]:
    lr, loss = np.asarray(lrs, float).ravel(), np.asarray(losses, float).ravel()
    if len(lr) != len(loss):
        raise FitError(f"learning-rate sweep: {len(lr)} LRs but {len(loss)} losses")
    if not len(lr):
        raise FitError("learning-rate sweep: no runs")
    if not (np.all(np.isfinite(lr)) and np.all(lr > 0)):
        raise FitError("learning-rate sweep: learning rates must be positive and finite")
    if not np.all(np.isfinite(loss)):
        raise FitError("learning-rate sweep: losses must be finite")
    return lr, loss


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([x**2, x, np.ones_like(x)])


def lr_optimum(lrs, losses, bootstrap: int = 200, seed: int = 0, beaten=()) -> Optimum:
    """LR* of one cell from its runs (several per LR allowed, e.g. seeds). `beaten`: LRs of
    the cell whose runs lost outright, DIVERGED or STOPPED as hopeless, with no final loss to
    fit; one beyond the best measured LR brackets the optimum on that side."""
    lr, loss = _check(lrs, losses)
    distinct, where = np.unique(lr, return_inverse=True)
    means = np.bincount(where, weights=loss) / np.bincount(where)
    best = int(np.argmin(means))  # with repeats, the lowest mean: one lucky seed is noise
    best_lr, n = float(distinct[best]), len(distinct)
    if n < 3:
        note = "fewer than 3 learning rates: the best measured"
        return Optimum(best_lr, None, MEASURED, False, n, note)
    above, below = (any(lr > best_lr for lr in beaten), any(lr < best_lr for lr in beaten))
    if (best == n - 1 and above) or (best == 0 and below):
        way = "above" if best == n - 1 and above else "below"
        note = f"an LR {way} it diverged or was stopped: the best measured"
        return Optimum(best_lr, None, MEASURED, True, n, note)
    if best in (0, n - 1):
        way = f"below {best_lr:.3g}" if best == 0 else f"above {best_lr:.3g}"
        note = f"optimum not bracketed: extend the sweep {way}"
        return Optimum(best_lr, None, MEASURED, False, n, note)
    # Centred log LR: the fit and the bootstrap's refits stay well conditioned.
    centre = float(np.log(distinct).mean())
    x = np.log(lr) - centre
    X = _design(x)
    solve = np.linalg.pinv(X)  # (3, points): coefficients = solve @ losses
    curvature, slope, _ = solve @ loss
    vertex = -slope / (2 * curvature) if curvature > 0 else np.nan
    # Only a parabola with no vertex in the sweep is set aside: one that places the vertex
    # nearer a neighbour of the best measured LR is, on noisy sweeps, usually right (a 3-LR
    # vertex cannot leave the best LR's half-steps; simulated, it doubled the error).
    if not curvature > 0 or not x.min() <= vertex <= x.max():
        why = "is not convex" if not curvature > 0 else "has its vertex outside the sweep"
        if n == 3:
            note = f"the parabola in log LR {why} (noise?): the best measured"
            return Optimum(best_lr, None, MEASURED, True, n, note)
        # Loss against LR is often lopsided (a steep wall of instability above the optimum):
        # the best LR and its two neighbours are then the parabola's part that holds.
        near = (lr >= distinct[best - 1]) & (lr <= distinct[best + 1])
        local = lr_optimum(lr[near], loss[near], bootstrap, seed)
        note = f"the whole sweep's parabola {why}: the vertex of the best LR and its neighbours"
        fit = (float(distinct[best - 1]), float(distinct[best + 1]))
        return Optimum(local.lr, local.ci95, local.method, True, n, note, fit)
    ci95 = None
    if len(lr) > 3 and bootstrap:  # 3 points: the parabola interpolates, no residuals to draw
        ci95 = _vertex_interval(X, solve, loss, vertex, bootstrap, seed, centre)
    fit = (float(distinct[0]), float(distinct[-1]))
    return Optimum(float(np.exp(vertex + centre)), ci95, VERTEX, True, n, None, fit)


def _vertex_interval(X, solve, loss, vertex: float, bootstrap: int, seed: int, centre: float):
    """LR*'s 95% interval by a residual bootstrap: refit to fitted + resampled residuals. The
    residuals are rescaled by 1/sqrt(1 - leverage) and centred (Davison & Hinkley 1997, §6.2):
    a 3-parameter parabola through 5 points leaves raw residuals far smaller than the noise,
    and the interval too narrow. Non-convex refits have no vertex and are left out."""
    fitted = X @ (solve @ loss)
    leverage = np.einsum("ij,ji->i", X, solve)
    spare = leverage < 1 - 1e-9  # a point the parabola must pass through says nothing of noise
    residuals = np.where(spare, (loss - fitted) / np.sqrt(np.where(spare, 1 - leverage, 1)), 0)
    residuals = residuals[spare] - residuals[spare].mean()
    rng = np.random.default_rng(seed)
    draws = fitted + rng.choice(residuals, size=(bootstrap, len(loss)))
    curvature, slope, _ = solve @ draws.T
    with np.errstate(divide="ignore", invalid="ignore"):
        vertices = np.where(curvature > 0, -slope / (2 * curvature), np.nan)
    interval = bootstrap_interval(list(vertices), float)
    if interval is None:
        return None
    # With n - 3 residual degrees of freedom the noise itself is poorly known, which the
    # percentile interval ignores: it covered a known LR* in 80% of 1,000 draws from 5 LRs, one
    # run each (2 degrees of freedom), 87% from 7 and 88% from 5 LRs x 2 seeds. Its arms about
    # the estimate are widened by t/z, as the t distribution widens an OLS interval: then 95%,
    # 95% and 93% (and 94% from 4 LRs, where t/z is 6.5).
    widen = stats.t.ppf(0.975, len(loss) - 3) / stats.norm.ppf(0.975)
    low, high = (vertex + widen * (end - vertex) + centre for end in interval)
    return float(np.exp(low)), float(np.exp(high))


def sweep_curve(lrs, losses, n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares parabola in log LR on `n` log-spaced LRs across the sweep, to plot."""
    lr, loss = _check(lrs, losses)
    if len(np.unique(lr)) < 3:
        raise FitError("learning-rate sweep: a parabola needs 3 learning rates")
    coefficients = np.polyfit(np.log(lr), loss, 2)
    grid = np.geomspace(lr.min(), lr.max(), n)
    return grid, np.polyval(coefficients, np.log(grid))


@dataclass(frozen=True)
class Sweep:
    """Every cell's LR* with its best measured run. `cells` has one row per (size, tokens):
    size, params, tokens, flops, lr_star, ci95_low, ci95_high (NaN without an interval),
    method, bracketed, n_lrs, note, best_lr (the lowest mean loss), best_run_id (its lowest
    run), best_run_ids (all its runs), best_val_loss (their mean)."""

    cells: pd.DataFrame

    @property
    def best_run_ids(self) -> list[str]:
        """The runs the loss laws should be fitted on: every seed of each cell's best
        measured LR (the lowest mean loss)."""
        return [run_id for ids in self.cells["best_run_ids"] for run_id in ids]

    @property
    def swept(self) -> bool:
        """A grid with one LR per cell has no LR axis: there is nothing to sweep."""
        return bool((self.cells["n_lrs"] >= 2).any())

    @property
    def unbracketed(self) -> pd.DataFrame:
        """The cells swept over 3+ LRs whose best sits at an edge: extend their sweep."""
        return self.cells[~self.cells["bracketed"] & (self.cells["n_lrs"] >= 3)]

    @property
    def vertices(self) -> pd.DataFrame:
        """The cells whose LR* is an estimate (a parabola's vertex), not a bound."""
        return self.cells[self.cells["method"] == VERTEX]

    def to_dict(self) -> dict:
        # NaN is not JSON: a missing interval is null.
        records = self.cells.astype(object).where(self.cells.notna(), None).to_dict("records")
        return {"swept": self.swept, "unbracketed": len(self.unbracketed), "cells": records}


def sweep(
    points: pd.DataFrame, bootstrap: int = 200, seed: int = 0, beaten: pd.DataFrame | None = None
) -> Sweep:
    """LR* per (size, tokens) cell of a table of finished runs (columns COLUMNS); `beaten`,
    the cells' DIVERGED and STOPPED runs (size, tokens, lr), bound its sweep."""
    missing = [c for c in COLUMNS if c not in points]
    if missing:
        raise FitError(f"learning-rate sweep: no column(s) {', '.join(missing)}")
    if points.empty:
        raise FitError("learning-rate sweep: no finished runs")
    rows = []
    for (size, _), cell in points.groupby(["size", "tokens"], sort=True):
        tokens = float(cell["tokens"].iloc[0])
        failed = []
        if beaten is not None:
            same_cell = (beaten["size"] == size) & (beaten["tokens"] == tokens)
            failed = list(beaten.loc[same_cell, "lr"])
        try:
            optimum = lr_optimum(cell["lr"], cell[VAL_LOSS], bootstrap, seed, failed)
        except FitError as error:
            raise FitError(f"{size} at {tokens:.3g} tokens: {error}") from None
        # The best measured LR by its mean over seeds, as `lr_optimum` ranks them: every
        # seed of it is a loss-law point, not the one luckiest run.
        means = cell.groupby("lr")[VAL_LOSS].mean()
        best_lr = float(means.index[int(np.argmin(means.to_numpy()))])
        best_runs = cell[cell["lr"] == best_lr]
        best = best_runs.iloc[int(np.argmin(best_runs[VAL_LOSS].to_numpy()))]
        low, high = optimum.ci95 or (np.nan, np.nan)
        rows.append(
            {
                "size": size,
                "params": float(cell["params"].iloc[0]),
                "tokens": tokens,
                "flops": float(cell["flops"].median()),
                "lr_star": optimum.lr,
                "ci95_low": low,
                "ci95_high": high,
                "method": optimum.method,
                "bracketed": optimum.bracketed,
                "n_lrs": optimum.n_lrs,
                "note": optimum.note,
                "fit_low": optimum.fitted[0] if optimum.fitted else np.nan,
                "fit_high": optimum.fitted[1] if optimum.fitted else np.nan,
                "best_lr": best_lr,
                "best_run_id": best["run_id"],
                "best_run_ids": tuple(best_runs["run_id"]),
                "best_val_loss": float(means.min()),
            }
        )
    return Sweep(pd.DataFrame(rows))


@dataclass(frozen=True)
class LRLaw:
    """LR* = coefficient · N^exponent_N · D^exponent_D, with 95% intervals on the exponents
    (None from 3 cells)."""

    coefficient: float
    exponent_N: float
    exponent_D: float
    exponent_N_ci95: tuple[float, float] | None
    exponent_D_ci95: tuple[float, float] | None
    n_cells: int
    left_out: int  # cells without a vertex: bounds or measured points, not estimates

    def __call__(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.coefficient * N**self.exponent_N * D**self.exponent_D

    def to_dict(self) -> dict:
        block = asdict(self)
        for name in ("exponent_N_ci95", "exponent_D_ci95"):
            block[name] = list(block[name]) if block[name] else None
        return {"law": "LR* = k · N^x · D^y", **block}


def fit_lr_law(sweep: Sweep) -> LRLaw:
    """Least squares of log LR* on log N and log D over the cells with a vertex."""
    cells = sweep.vertices
    n, left_out = len(cells), len(sweep.cells) - len(cells)
    if n < 3:
        raise FitError(f"the LR law needs 3+ cells with a bracketed optimum (a vertex), got {n}")
    log_n, log_d = np.log(cells["params"].to_numpy()), np.log(cells["tokens"].to_numpy())
    if len(np.unique(log_n)) < 2:
        raise FitError("the LR law: all cells with a vertex have the same N")
    if len(np.unique(log_d)) < 2:
        raise FitError("the LR law: all cells with a vertex have the same D")
    X = np.column_stack([np.ones(n), log_n, log_d])
    if np.linalg.matrix_rank(X) < 3:
        raise FitError(
            "the LR law: N and D vary together (log D is a line in log N), so their exponents "
            "cannot be told apart; fit LR* against compute instead"
        )
    y = np.log(cells["lr_star"].to_numpy())
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    ci_n = ci_d = None
    if n > 3:
        variance = np.sum((y - X @ beta) ** 2) / (n - 3)
        errors = np.sqrt(np.diag(variance * np.linalg.inv(X.T @ X)))
        margin = stats.t.ppf(0.975, n - 3) * errors
        ci_n = (float(beta[1] - margin[1]), float(beta[1] + margin[1]))
        ci_d = (float(beta[2] - margin[2]), float(beta[2] + margin[2]))
    return LRLaw(float(np.exp(beta[0])), float(beta[1]), float(beta[2]), ci_n, ci_d, n, left_out)


def fit_lr_compute_law(sweep: Sweep) -> PowerLaw:
    """LR* = c·C^z over the cells with a vertex: DeepSeek LLM's form, for comparing z with its
    −0.125. On a grid that moves N and D together this is the only law the data identify."""
    cells = sweep.vertices
    return fit_power_law(cells["flops"], cells["lr_star"], "LR* against compute")


@dataclass(frozen=True)
class LearningRates:
    """What a grid with an LR axis says of its learning rates: every cell's sweep, the laws of
    LR* (each a result, or the reason it was refused), and every run swept (the loss laws keep
    only each cell's best; the rest are the evidence drawn beside them)."""

    sweep: Sweep
    law: LRLaw | str  # LR* ∝ N^x·D^y, or why not
    compute_law: PowerLaw | str  # LR* ∝ C^z, or why not
    swept_points: pd.DataFrame

    def to_dict(self) -> dict:
        def block(result):
            return {"refused": result} if isinstance(result, str) else result.to_dict()

        return {
            **self.sweep.to_dict(),
            "lr_law": block(self.law),
            "lr_compute_law": block(self.compute_law),
        }


def learning_rates(
    points: pd.DataFrame, bootstrap: int = 200, seed: int = 0, beaten: pd.DataFrame | None = None
) -> LearningRates | None:
    """The LR sweep of the loss laws' points, or None for a grid without an LR axis (no `lr`
    column, or one LR per cell). `beaten`: the DIVERGED and STOPPED runs of the same cells."""
    if "lr" not in points or points["lr"].isna().any():
        return None
    found = sweep(points, bootstrap, seed, beaten)
    if not found.swept:
        return None
    return LearningRates(found, _attempt(fit_lr_law, found), _attempt(fit_lr_compute_law, found),
                         points)  # fmt: skip


def _attempt(fit, found: Sweep):
    """The fitted law, or the reason the data could not give it."""
    try:
        return fit(found)
    except FitError as error:
        return str(error)
