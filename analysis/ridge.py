"""Approach 1's N_opt(C): one ridge fitted through the sizes' profiles at every compute at once.

At a compute C the sizes' curves make a profile of log loss against x = log N, and near its
minimum

    log L = m_C + q_C · u² · exp(r·u),    u = x − v(C),

where v(C) = v0 + a·(log C − c̄) is the ridge (N_opt ∝ C^a), q_C = exp(q0 + q1·(log C − c̄))
a curvature that drifts with compute, and r the profile's lean (a Chinchilla profile is a sum
of two exponentials in log N, steeper on one side than the other: without r the noise-free
smoke-shaped grids came out 0.007 high). m_C, one per compute, is profiled out: each
profile's residuals have their mean taken away, so only the profiles' shapes fit the ridge.

Why all at once rather than a minimum per compute and a line through them: a compute's
minimum counts only where it lies inside the sizes reaching that compute, so near an end of
them the minima that count are those the noise pulled inwards, and a line through the minima
was +0.015 to +0.020 high on the experiments' grid shapes (`benchmarks/RESULTS.md`). Here every
profile counts whichever of its sizes is lowest, so none is kept or dropped by its noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

# Starting slopes for the fit: a compute-optimal exponent lies between them in every published
# law; the fit keeps the best of the three. A bootstrap replicate starts from the fit instead.
STARTING_SLOPES = (0.2, 0.5, 0.8)
INITIAL_CURVATURE = 0.05  # of log loss per (log N)², about that of a profile over 10x in N
# The shape holds near a profile's minimum. A profile whose minimum lies past its sizes shows one
# flank, which says less about where the minimum is than about how the lean extrapolates: the
# ridge is refitted to the profiles it passes within this many size steps of (4 sizes 2x apart
# over 4 decades of compute, noise-free: a 0.505 against the true 0.514 from every profile,
# 0.514 from those; on the experiments' grid shapes it moves the mean a by 0.002 or less).
REACH = 0.5


@dataclass
class Profiles:
    """The profiles the ridge is fitted to: per compute (rows), the log N and log loss of the
    sizes in its window, nan-padded to the widest window."""

    log_flops: np.ndarray  # (P,)
    log_n: np.ndarray  # (P, W)
    log_loss: np.ndarray  # (P, W)
    columns: np.ndarray  # (P,): each profile's index among the computes it was taken from

    def near(self, log_n_opt: np.ndarray, steps: float) -> np.ndarray:
        """Which profiles have `log_n_opt` within `steps` size steps (their sizes' mean
        spacing in log N) of their sizes."""
        low, high = np.nanmin(self.log_n, axis=1), np.nanmax(self.log_n, axis=1)
        step = (high - low) / (np.isfinite(self.log_n).sum(axis=1) - 1)
        return (low - steps * step <= log_n_opt) & (log_n_opt <= high + steps * step)

    def only(self, kept: np.ndarray) -> Profiles:
        return Profiles(
            self.log_flops[kept], self.log_n[kept], self.log_loss[kept], self.columns[kept]
        )


@dataclass
class Ridge:
    """The fitted ridge, log N_opt = v0 + a·(log C − centre), and every parameter of the fit
    (a bootstrap replicate starts from them)."""

    v0: float
    a: float
    centre: float
    parameters: np.ndarray  # v0, a, q0, q1, r

    def log_n_opt(self, log_flops: np.ndarray) -> np.ndarray:
        return self.v0 + self.a * (np.asarray(log_flops, float) - self.centre)

    def lowest_log_loss(self, found: Profiles) -> np.ndarray:
        """Each profile's log loss at the ridge: its sizes' log losses less the fitted shape,
        averaged over the 3 sizes nearest the ridge (over a wide sweep the shape fits the
        far sizes less well: on 7 sizes over 900x the loss law through the level from every
        size predicted the loss at 100x the grid's compute 0.8% low, from the nearest 0.3%)."""
        shape = _shape(self.parameters, found.log_flops - self.centre, found.log_n)
        distance = np.abs(found.log_n - self.log_n_opt(found.log_flops)[:, None])
        nearest = np.argsort(np.where(np.isfinite(distance), distance, np.inf), axis=1)[:, :3]
        level = np.take_along_axis(found.log_loss - shape, nearest, axis=1)
        return level.mean(axis=1)


def _shape(parameters: np.ndarray, offset: np.ndarray, log_n: np.ndarray) -> np.ndarray:
    """q_C · u² · exp(r·u) for each profile (rows, at `offset` = log C − centre) and size."""
    v0, a, q0, q1, r = parameters
    u = log_n - (v0 + a * offset)[:, None]
    return np.exp(q0 + q1 * offset)[:, None] * u * u * np.exp(r * u)


def profiles(log_n: np.ndarray, log_loss: np.ndarray, flops: np.ndarray, neighbours: int):
    """Each compute's profile (columns of `log_loss`, sizes by `log_n` in rows, nan where a
    size does not reach it) that 3 sizes or more reach: its lowest size and `neighbours` each
    side, as approach 2 takes a budget's, widened to 3 sizes at an end. None where no compute
    has 3 sizes."""
    width = min(2 * neighbours + 1, len(log_n))
    kept, xs, ys = [], [], []
    for column, loss in enumerate(log_loss.T):
        reached = np.flatnonzero(np.isfinite(loss))
        if len(reached) < 3:
            continue
        lowest = int(np.argmin(loss[reached]))
        first = min(max(0, lowest - neighbours), len(reached) - 3)
        last = max(min(len(reached), lowest + neighbours + 1), 3)
        x, y = np.full(width, np.nan), np.full(width, np.nan)
        x[: last - first] = log_n[reached[first:last]]
        y[: last - first] = loss[reached[first:last]]
        kept.append(column)
        xs.append(x)
        ys.append(y)
    if not kept:
        return None
    return Profiles(np.log(flops[kept]), np.array(xs), np.array(ys), np.array(kept))


def fit_ridge(found: Profiles, start: np.ndarray | None = None) -> tuple[Ridge, Profiles] | None:
    """The ridge through `found`'s profiles, refitted to those it passes within REACH size
    steps of where 3 or more are, and the profiles it was fitted to; None where it cannot be
    fitted."""
    fitted = _least_squares(found, start)
    if fitted is None:
        return None
    near = found.near(fitted.log_n_opt(found.log_flops), REACH)
    if near.all() or near.sum() < 3:
        return fitted, found
    found = found.only(near)
    fitted = _least_squares(found, fitted.parameters)
    return None if fitted is None else (fitted, found)


def _least_squares(found: Profiles, start: np.ndarray | None = None) -> Ridge | None:
    """The ridge through `found`'s profiles by least squares, from `start` (a fit's
    parameters) or from each of STARTING_SLOPES, keeping the best; None where no start
    converges to finite parameters or fewer than 3 profiles leave the slope unpinned."""
    if len(found.log_flops) < 3:
        return None
    centre = float(found.log_flops.mean())
    offset = found.log_flops - centre
    known = np.isfinite(found.log_loss)
    x, y = np.where(known, found.log_n, 0.0), np.where(known, found.log_loss, 0.0)
    counts = known.sum(axis=1, keepdims=True)

    def residuals(theta: np.ndarray) -> np.ndarray:
        misfit = np.where(known, y - _shape(theta, offset, x), 0.0)
        misfit -= misfit.sum(axis=1, keepdims=True) / counts * known  # each m_C profiled out
        return misfit[known]

    if start is not None:
        starts = [np.asarray(start, float)]
    else:
        middle = float(np.nanmean(found.log_n))
        starts = [np.array([middle, a, np.log(INITIAL_CURVATURE), 0, 0]) for a in STARTING_SLOPES]
    best = None
    with np.errstate(all="ignore"):
        for theta in starts:
            try:
                fitted = least_squares(residuals, theta, method="lm", max_nfev=300)
            except ValueError:  # residuals not finite at a replicate's start
                continue
            if np.all(np.isfinite(fitted.x)) and (best is None or fitted.cost < best.cost):
                best = fitted
    if best is None:
        return None
    return Ridge(float(best.x[0]), float(best.x[1]), centre, best.x)
