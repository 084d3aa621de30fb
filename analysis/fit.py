"""Robust fitting of the Chinchilla law, as the paper describes and the replication corrects it.

Approach 3 (Hoffmann et al. 2022, appendix D.2; Besiroglu et al. 2024): parameterise
L = exp(LSE(a - alpha·log N, b - beta·log D, e)) with A = e^a, B = e^b, E = e^e; minimise the
Huber loss (delta = 1e-3) of log L_hat - log L, summed over points, with L-BFGS from every
point of a 4,500-point grid; the best objective wins. Bootstrap resamples give the intervals.

The 4,500 starts (and the bootstrap's resamples) run together: one vectorised L-BFGS over all
of them at once (in float32: it only has to find the best basin; 100 iterations each, then the
best 500 to convergence), then scipy's L-BFGS-B polishes the winner in float64: many times
faster than one scipy call per start (benchmarks/fit_chinchilla.py, figures in
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import minimize

from analysis.cautions import ALLOCATION, EXPONENT, SCALE
from analysis.laws import ChinchillaLaw, Exponential, PowerLaw, SaturatingPowerLaw
from analysis.noise import BRANCH_OWN_SHARE, fit_scatter

HUBER_DELTA = 1e-3
# Chinchilla's start grid: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
# a, b in {0, 5, ..., 25}, as (a, b, e, alpha, beta).
START_GRID = np.array(
    [
        (a, b, e, alpha, beta)
        for alpha, beta, e, a, b in itertools.product(
            np.arange(0, 2.01, 0.5),
            np.arange(0, 2.01, 0.5),
            np.arange(-1, 1.01, 0.5),
            np.arange(0, 26, 5),
            np.arange(0, 26, 5),
        )
    ],
    dtype=float,
)
# Most starts crawl along a valley of the Huber loss for hundreds of iterations and end in the
# basin a better start reaches in a few: so every start gets this many iterations, and only
# the best go on to convergence. For Chinchilla's grid the best 500 of 4,500: on simulated
# 4-7-size grids the same optima to 5 digits in a third of the time (the best 50 missed the
# smoke grid's optimum, along its flat valley towards E = 0, by 0.02% of the objective); for
# the saturating law's bootstrap the best start of each resample (the same intervals at a
# tenth of the time).
SCREEN_ITERATIONS = 100
CHINCHILLA_FINALISTS = 500
# Bands of E as a share of the lowest loss. A resample starts from the full data's optimum and
# from the best screened start in each other band, and keeps the one that fits it best: from
# the optimum alone, where the fit's E went to 0 a resample cannot leave that valley (there
# the loss does not depend on E): on the smoke grid's shape one draw in five, whose intervals
# then missed the true a half the time; with the bands a's coverage there rose from 86% to
# 95.5% (benchmarks/RESULTS.md, "Estimators of a").
E_BANDS = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
PARAMETERS = ("E", "A", "B", "alpha", "beta")
DERIVED = ("a", "b")
# What the report does with each, and so how wide its interval may be (analysis/cautions.py).
USES = {"E": SCALE, "A": SCALE, "B": SCALE, "alpha": EXPONENT, "beta": EXPONENT, "a": ALLOCATION}


class FitError(ValueError):
    """The data cannot identify the law; the message says why."""


def huber_objective(X, log_n, log_d, log_loss, weights, delta: float = HUBER_DELTA):
    """The summed Huber loss of each row of X = (a, b, e, alpha, beta), with its gradient.

    `weights` (rows × points) counts each point per row: all ones for a fit, bootstrap counts
    for a resample. Returns values (rows,) and gradients (rows, 5)."""
    a, b, e, alpha, beta = (X[:, i : i + 1] for i in range(5))
    t1, t2 = a - alpha * log_n, b - beta * log_d
    m = np.maximum(np.maximum(t1, t2), e)  # log-sum-exp, stabilised
    w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    total = w1 + w2 + w3
    r = m + np.log(total) - log_loss
    small = np.abs(r) <= delta
    huber = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    slope = weights * np.where(small, r, delta * np.sign(r)) / total
    g1, g2 = slope * w1, slope * w2
    grad = np.stack(
        [g1.sum(1), g2.sum(1), (slope * w3).sum(1), -(g1 * log_n).sum(1), -(g2 * log_d).sum(1)],
        axis=1,
    )
    return (weights * huber).sum(1), grad


def minimize_rows(fun, X0, max_iter: int = 1000, history: int = 10, gtol: float = 1e-10):
    """L-BFGS with a backtracking (Armijo) line search on many independent problems at once:
    row i of X0 starts problem i, and `fun(X, rows)` returns the values and gradients of the
    problems `rows` at X. Each row keeps its own history and step, and stops on its own."""
    X = np.array(X0, dtype=np.result_type(X0, np.float32))  # float32 stays float32
    rows_all = np.arange(len(X))
    f, G = fun(X, rows_all)
    # The last `history` steps s and (gradient changes y, 1/(s·y)), each row's at once.
    steps: list[np.ndarray] = []
    changes: list[tuple[np.ndarray, np.ndarray]] = []
    active = np.ones(len(X), dtype=bool)
    for _ in range(max_iter):
        if not active.any():
            break
        direction = _two_loop(G, steps, changes)
        slope = (G * direction).sum(1)
        uphill = slope >= 0
        direction[uphill], slope[uphill] = -G[uphill], -(G[uphill] ** 2).sum(1)
        t = np.where(active, 1.0, 0.0)
        if not steps:  # no curvature known yet: a first step of unit length
            t = t / np.maximum(1.0, np.linalg.norm(G, axis=1))
        X_new, f_new, G_new = X.copy(), f.copy(), G.copy()
        pending = active.copy()
        for _ in range(60):
            rows = np.flatnonzero(pending)
            if not len(rows):
                break
            trial = X[rows] + t[rows, None] * direction[rows]
            f_trial, G_trial = fun(trial, rows)
            ok = np.isfinite(f_trial) & (f_trial <= f[rows] + 1e-4 * t[rows] * slope[rows])
            done = rows[ok]
            X_new[done], f_new[done], G_new[done] = trial[ok], f_trial[ok], G_trial[ok]
            pending[done] = False
            t[rows[~ok]] *= 0.5
        active &= ~pending  # no acceptable step: as far as this row goes
        s, y = X_new - X, G_new - G
        sy = (s * y).sum(1)
        curvature = sy > 1e-16
        steps.append(np.where(curvature[:, None], s, 0.0))
        changes.append(
            (
                np.where(curvature[:, None], y, 0.0),
                np.where(curvature, 1 / np.where(curvature, sy, 1), 0.0),
            )
        )
        if len(steps) > history:
            steps.pop(0)
            changes.pop(0)
        converged = (np.abs(G_new).max(1) < gtol) | (f - f_new <= 1e-15 * np.maximum(1, np.abs(f)))
        active &= ~converged
        X, f, G = X_new, f_new, G_new
    return X, f


def _two_loop(G, steps, changes):
    q = G.copy()
    alphas = []
    for s, (y, rho) in zip(reversed(steps), reversed(changes)):
        alpha = rho * (s * q).sum(1)
        q -= alpha[:, None] * y
        alphas.append(alpha)
    if steps:
        s, (y, _) = steps[-1], changes[-1]
        yy = (y * y).sum(1)
        q *= np.where(yy > 0, (s * y).sum(1) / np.where(yy > 0, yy, 1), 1.0)[:, None]
    for s, (y, rho), alpha in zip(steps, changes, reversed(alphas)):
        beta = rho * (y * q).sum(1)
        q += s * (alpha - beta)[:, None]
    return -q


def bootstrap_interval(samples, quantity, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile interval of `quantity(law)` over bootstrap-fitted laws. Resamples where
    the quantity is undefined (a law with no optimum) are left out; with fewer than half left,
    or no samples at all, there is no interval."""
    if not samples:
        return None
    with np.errstate(all="ignore"):
        values = np.array([quantity(law) for law in samples], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < len(samples) / 2:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class ChinchillaFit:
    """A fitted Chinchilla law with what it was fitted on and, with a bootstrap, its spread."""

    law: ChinchillaLaw
    objective: float  # summed Huber loss at the optimum
    n_points: int
    n_starts: int
    resamples: int = 0
    samples: list[ChinchillaLaw] = field(default_factory=list, repr=False)
    n_sizes: int = 0
    noise: float | None = None  # a parametric bootstrap's relative noise; None: resampled points
    runs_share_noise: bool = False  # the bootstrap shifted each run's points together too

    def interval(self, quantity, level: float = 0.95) -> tuple[float, float] | None:
        """The bootstrap interval of any function of a law, e.g. `lambda law: law.n_opt(1e21)`."""
        return bootstrap_interval(self.samples, quantity, level)

    def warnings(self) -> list[str]:
        """Where the data leave the law too loosely pinned for what the report does with it,
        in words a reader can act on (the rules: analysis/cautions.py)."""
        found = []
        min_loss = self.law.loss_opt(1e300)  # the law's floor, E
        if min_loss < 1e-3:
            found.append(
                "E went to 0: these points do not show the loss flattening, so the irreducible "
                "loss is not identified and predicted losses far beyond the grid lean on that"
            )
        for name, use in USES.items():
            warning = use.caution(name, self.interval(lambda law, name=name: getattr(law, name)))
            if warning:
                found.append(warning)
        return found

    def to_dict(self) -> dict:
        block = {}
        for name in PARAMETERS + DERIVED:
            interval = self.interval(lambda law, name=name: getattr(law, name))
            block[name] = {
                "value": float(getattr(self.law, name)),
                "ci95": list(interval) if interval else None,
            }
        return {
            "law": "L = E + A / N^alpha + B / D^beta",
            **block,
            "objective": self.objective,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "resamples": self.resamples,
            "bootstrap_noise": self.noise,
            "runs_share_noise": self.runs_share_noise,
            "huber_delta": HUBER_DELTA,
            "warnings": self.warnings(),
        }

    def __str__(self) -> str:
        lines = [
            f"Chinchilla fit, {self.n_points} points, {self.n_starts} starts, summed Huber "
            f"objective {self.objective:.4g}"
            + (f", {self.resamples} bootstrap resamples" if self.resamples else "")
        ]
        for name in PARAMETERS + DERIVED:
            value = getattr(self.law, name)
            interval = self.interval(lambda law, name=name: getattr(law, name))
            spread = f"  [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""
            lines.append(f"  {name:>5} = {value:.4g}{spread}")
        return "\n".join(lines)


def _shared_runs(runs, n_points: int) -> np.ndarray | None:
    """Each point's run as an index, where some run gave more than one point; else None."""
    if runs is None:
        return None
    labels = np.asarray(runs).ravel()
    if len(labels) != n_points:
        raise FitError("runs must label every point")
    _, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return index if counts.max() > 1 else None


def _other_bands_best(X, f, best, lowest_loss: float) -> np.ndarray:
    """The best of the screened starts X (objectives f) in each band of E (E_BANDS) but the
    band of `best`, the fit's own."""
    band = np.searchsorted(E_BANDS, np.exp(X[:, 2]) / lowest_loss, side="right") - 1
    own = np.searchsorted(E_BANDS, np.exp(best[2]) / lowest_loss, side="right") - 1
    f = np.where(np.isfinite(f), f, np.inf)
    starts = []
    for each in set(band[np.isfinite(f)]) - {own}:
        inside = np.flatnonzero(band == each)
        starts.append(X[inside[np.argmin(f[inside])]])
    return np.array(starts).reshape(-1, 5)


def _best_of_starts_each(objective, starts: np.ndarray, resamples: int) -> np.ndarray:
    """Resample i (`objective(X, rows)` of rows i) fitted from every start: each one's best.
    As in the fit's own screen, every start gets SCREEN_ITERATIONS and only each resample's
    best goes on to convergence."""
    copies = len(starts)

    def on_copies(X, rows):
        return objective(X, rows // copies)

    X, f = minimize_rows(on_copies, np.tile(starts, (resamples, 1)), max_iter=SCREEN_ITERATIONS)
    f = np.where(np.isfinite(f), f, np.inf).reshape(resamples, copies)
    X, _ = minimize_rows(
        objective, X.reshape(resamples, copies, 5)[np.arange(resamples), f.argmin(1)]
    )
    return X


def _law(x) -> ChinchillaLaw:
    a, b, e, alpha, beta = x
    with np.errstate(over="ignore"):  # a resample that ran off gets A or B = inf: no warning
        return ChinchillaLaw(
            E=float(np.exp(e)),
            A=float(np.exp(a)),
            B=float(np.exp(b)),
            alpha=float(alpha),
            beta=float(beta),
        )


def fit_chinchilla(
    params,
    tokens,
    loss,
    bootstrap: int = 0,
    seed: int = 0,
    noise: float | None = None,
    runs=None,
) -> ChinchillaFit:
    """Approach 3 on (N, D, L) points; `bootstrap` resamples give intervals (each resample is
    fitted from the full data's optimum and from the best start of each other band of E, and
    keeps its best: see E_BANDS). Resamples draw the points with replacement, or with `noise`
    (a run's relative noise, e.g. the seeds' spread) are the fitted law's losses with that
    noise added.

    `runs` labels the training run each point came from. Where one run gave several points
    (a WSD trunk's branches) they share its seed's noise and are no independent draws to
    resample: the resamples shift each run's points together by its share of the noise and
    each point by its own (`BRANCH_OWN_SHARE` of the variance), and without `noise` that noise
    is the scatter about the fit, counted against what the fit leaves of a run's shared part
    (`fit_scatter`). On a real grid that scatter holds the law's misfit too, so errs wide
    (benchmarks/RESULTS.md, "Estimators of a")."""
    N, D, L = (np.asarray(v, dtype=float).ravel() for v in (params, tokens, loss))
    if not len(N) == len(D) == len(L):
        raise FitError("params, tokens and loss must have the same length")
    if len(N) < 5:
        raise FitError(
            f"a Chinchilla fit has 5 parameters and needs at least 5 points, got {len(N)}"
        )
    if len(np.unique(N)) < 2:
        raise FitError("all points have one model size: the data cannot identify A and alpha")
    if len(np.unique(D)) < 2:
        raise FitError("all points have one token count: the data cannot identify B and beta")
    if not (np.all(N > 0) and np.all(D > 0) and np.all(L > 0) and np.all(np.isfinite(L))):
        raise FitError("params, tokens and loss must be positive and finite")
    log_n, log_d, log_l = np.log(N), np.log(D), np.log(L)
    ones = np.ones((1, len(N)))

    def on_all_points(X, rows):
        return huber_objective(X, log_n, log_d, log_l, ones)

    # The 4,500 starts only have to find the best basin: in float32 they cost half as much,
    # and the polish below finishes the winner in float64.
    n32, d32, l32, w32 = (v.astype(np.float32) for v in (log_n, log_d, log_l, ones))

    def on_all_points_32(X, rows):
        return huber_objective(X, n32, d32, l32, w32)

    X, f = minimize_rows(
        on_all_points_32, START_GRID.astype(np.float32), max_iter=SCREEN_ITERATIONS
    )
    finalists = np.argsort(np.where(np.isfinite(f), f, np.inf))[:CHINCHILLA_FINALISTS]
    X, f = minimize_rows(on_all_points_32, X[finalists])
    start = X[np.nanargmin(np.where(np.isfinite(f), f, np.nan))].astype(float)
    other_basins = _other_bands_best(X.astype(float), f, start, L.min())

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = on_all_points(x[None, :], None)
        return float(value[0]), gradient[0]

    polished = minimize(value_and_gradient, start, jac=True, method="L-BFGS-B")
    best = polished.x if polished.fun <= on_all_points(start[None, :], None)[0][0] else start
    shared = _shared_runs(runs, len(N))
    if bootstrap and noise is None and shared is not None:
        scatter = fit_scatter(N, D, L, _law(best), runs=runs)
        noise = scatter.relative if scatter else None
    result = ChinchillaFit(
        _law(best),
        float(on_all_points(best[None, :], None)[0][0]),
        len(N),
        len(START_GRID),
        n_sizes=len(np.unique(N)),
        noise=noise if bootstrap else None,
    )
    if bootstrap and noise:
        rng = np.random.default_rng(seed)
        own = BRANCH_OWN_SHARE if shared is not None else 1.0
        fitted = np.log(_law(best).loss(N, D))
        shaken = fitted + noise * np.sqrt(own) * rng.standard_normal((bootstrap, len(N)))
        if shared is not None:
            trunks = rng.standard_normal((bootstrap, shared.max() + 1))[:, shared]
            shaken += noise * np.sqrt(1 - own) * trunks
            result.runs_share_noise = True

        def on_replicate(X, rows):
            return huber_objective(X, log_n, log_d, shaken[rows], ones)

        draws = _best_of_starts_each(on_replicate, np.vstack([best, other_basins]), bootstrap)
        result.resamples = bootstrap
        result.samples = [_law(x) for x in draws]
    elif bootstrap:
        counts = (
            np.random.default_rng(seed)
            .multinomial(len(N), np.full(len(N), 1 / len(N)), size=bootstrap)
            .astype(float)
        )

        def on_resample(X, rows):
            return huber_objective(X, log_n, log_d, log_l, counts[rows])

        draws = _best_of_starts_each(on_resample, np.vstack([best, other_basins]), bootstrap)
        result.resamples = bootstrap
        result.samples = [_law(x) for x in draws]
    return result


# ---------------------------------------------------------------------------------------------
# Two- and three-parameter laws: power laws (straight lines in log-log), exponentials, and
# E + A/N^alpha.


def _aic(residuals: np.ndarray, n_parameters: int) -> float:
    n = len(residuals)
    return n * np.log(np.mean(residuals**2) + 1e-300) + 2 * n_parameters


def check_xy(x, y, what: str, min_points: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if len(x) != len(y):
        raise FitError(f"{what}: x and y must have the same length")
    if len(x) < min_points:
        raise FitError(f"{what}: needs at least {min_points} points, got {len(x)}")
    if len(np.unique(x)) < 2:
        raise FitError(f"{what}: all points have the same x; nothing to fit a trend to")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(y))):
        raise FitError(f"{what}: values must be positive and finite")
    return x, y


def fit_power_law(x, y, what: str = "power law", min_points: int = 3) -> PowerLaw:
    """Least squares in log-log; the exponent's 95% interval from the t distribution (none
    when two points leave no degrees of freedom)."""
    x, y = check_xy(x, y, what, min_points)
    fit = stats.linregress(np.log(x), np.log(y))
    interval = None
    if len(x) > 2:
        margin = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
        interval = (float(fit.slope - margin), float(fit.slope + margin))
    residuals = np.log(y) - (fit.intercept + fit.slope * np.log(x))
    return PowerLaw(
        float(np.exp(fit.intercept)), float(fit.slope), interval, len(x), _aic(residuals, 2)
    )


def fit_exponential(x, y, what: str = "exponential") -> Exponential:
    x, y = check_xy(x, y, what)
    fit = stats.linregress(x, np.log(y))
    residuals = np.log(y) - (fit.intercept + fit.slope * x)
    return Exponential(float(np.exp(fit.intercept)), float(fit.slope), _aic(residuals, 2))


@dataclass
class SaturatingFit:
    """E + A/N^alpha fitted to (N, L), with bootstrap draws for intervals (a draw whose
    resample cannot identify the law is all NaN, so intervals count it as undefined)."""

    law: SaturatingPowerLaw
    n_points: int
    samples: list[SaturatingPowerLaw] = field(default_factory=list, repr=False)

    def interval(self, quantity, level: float = 0.95) -> tuple[float, float] | None:
        return bootstrap_interval(self.samples, quantity, level)


def fit_saturating(
    x,
    loss,
    bootstrap: int = 0,
    seed: int = 0,
    what: str = "loss against parameters",
) -> SaturatingFit:
    """L = E + A/x^alpha, by the Chinchilla recipe cut to one variable: Huber on log loss,
    L-BFGS from a grid of starts (E below the lowest loss, any A, alpha from 0.1 to 1). Each
    bootstrap resample is fitted as the data are, from the whole grid; a resample with
    fewer than 3 distinct x is undefined (its sample is all NaN)."""
    x, loss = check_xy(x, loss, what, min_points=4)
    if len(np.unique(x)) < 3:
        raise FitError(
            f"{what}: E + A/x^alpha has 3 parameters and needs at least 3 distinct x, got "
            f"{len(np.unique(x))}"
        )
    # The fit is row 0 and each resample a row after it, all fitted at once and alike.
    counts = np.random.default_rng(seed).multinomial(
        len(x), np.full(len(x), 1 / len(x)), size=bootstrap
    )
    weights = np.vstack([np.ones(len(x)), counts])
    fit, *samples = refit_saturating(x, np.tile(loss, (len(weights), 1)), weights)
    return SaturatingFit(fit, len(x), samples)


def _saturating_objective(X, log_x, log_loss, weights):
    """The summed Huber loss of log(E + A/x^alpha) against log loss for each row of
    X = (log E, log A, alpha), row i against row i of `log_loss` and `weights`."""
    e, a, alpha = (X[:, i : i + 1] for i in range(3))
    t1 = a - alpha * log_x
    m = np.maximum(t1, e)
    w1, w0 = np.exp(t1 - m), np.exp(e - m)
    r = m + np.log(w1 + w0) - log_loss
    small = np.abs(r) <= HUBER_DELTA
    huber = np.where(small, 0.5 * r * r, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA))
    slope = weights * np.where(small, r, HUBER_DELTA * np.sign(r)) / (w1 + w0)
    grad = np.stack(
        [(slope * w0).sum(1), (slope * w1).sum(1), -(slope * w1 * log_x).sum(1)], axis=1
    )
    return (weights * huber).sum(1), grad


def _saturating_starts(lowest_log_loss: np.ndarray) -> np.ndarray:
    """The start grid of each data set, (sets, 27, 3) as (log E, log A, alpha): E at 0.3, 0.6
    and 0.9 of the set's lowest loss, log A in {0, 5, 10}, alpha in {0.1, 0.5, 1}."""
    grid = np.array(
        list(itertools.product(np.log([0.3, 0.6, 0.9]), (0.0, 5.0, 10.0), (0.1, 0.5, 1.0)))
    )
    return grid[None, :, :] + np.array([1.0, 0, 0]) * lowest_log_loss[:, None, None]


def _best_of_starts(objective, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Many problems' minima from many starts each: `starts` is (problems, starts, k) and
    `objective(X, problems)` the values and gradients of those problems at the rows of X.
    Returns each problem's best X (problems, k) and its value."""
    n_problems, n_starts, k = starts.shape
    problem = np.repeat(np.arange(n_problems), n_starts)  # the problem each start belongs to
    X, f = minimize_rows(
        lambda X, rows: objective(X, problem[rows]),
        starts.reshape(-1, k),
        max_iter=SCREEN_ITERATIONS,
    )
    f = np.where(np.isfinite(f), f, np.inf).reshape(n_problems, n_starts)
    best = X.reshape(n_problems, n_starts, k)[np.arange(n_problems), f.argmin(1)]
    return minimize_rows(objective, best)


def refit_saturating(
    x, losses: np.ndarray, weights: np.ndarray, start: SaturatingPowerLaw | None = None
) -> list[SaturatingPowerLaw]:
    """E + A/x^alpha fitted to many versions of one data set at once (a bootstrap's): row i
    of `losses` (replicates x points, any value where its weight is 0) weighted by row i of
    `weights`, each as a whole data set is fitted: from the whole start grid (and from
    `start`, where given), its best start polished, all in one vectorised L-BFGS. A row
    with fewer than 3 distinct x weighted, or whose fit runs off to infinity, cannot
    identify the law: its law is all NaN, which an interval counts as undefined."""
    x = np.asarray(x, float)
    used = weights > 0
    laws = [SaturatingPowerLaw(np.nan, np.nan, np.nan)] * len(losses)
    # With 2 distinct x a whole curve of laws fits exactly; the optimiser would stop on
    # whichever it reached first, and the interval would be as narrow as the start grid.
    rows = np.flatnonzero([len(np.unique(x[row])) >= 3 for row in used])
    if not len(rows):
        return laws
    log_x = np.log(x)[None, :]
    log_loss = np.log(np.where(used, losses, 1.0))[rows]
    weights = weights[rows]
    starts = _saturating_starts(np.where(used[rows], log_loss, np.inf).min(1))
    if start is not None:
        extra = np.tile([np.log(start.E), np.log(start.A), start.alpha], (len(rows), 1, 1))
        starts = np.concatenate([starts, extra], axis=1)
    with np.errstate(all="ignore"):  # a start may run off to infinity: it loses to the others
        X, f = _best_of_starts(
            lambda X, at: _saturating_objective(X, log_x, log_loss[at], weights[at]), starts
        )
        E, A = np.exp(X[:, 0]), np.exp(X[:, 1])
    for row, e, a, alpha, ok in zip(rows, E, A, X[:, 2], np.isfinite(f * E * A)):
        if ok:
            laws[row] = SaturatingPowerLaw(float(e), float(a), float(alpha))
    return laws
