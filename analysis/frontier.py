"""Compute-optimal allocation: Chinchilla's approaches 1 and 2, and the held-out check of 3.

- Approach 1: the lower envelope of loss against FLOPs over every run's validation curve, a
  running minimum (the best loss for a compute is the best reached at it or below: a run can
  stop early), which the plot draws. N_opt(C) is located between
  the sizes trained: at each compute the sizes' curves (each curve joined smoothly through
  its evaluations, monotone cubic in log-log, as a WSD size's through its few branch finals
  needs) make a profile of loss against log N, as an IsoFLOP budget's runs do, and one ridge
  through every profile at once gives N_opt ∝ C^a (`analysis/ridge.py`), where 3 computes or
  more show an interior minimum with the best size changing among them; the loss law
  E + K/C^gamma goes through the ridge's loss where the sizes bracket it (through the
  envelope, the best run at each compute rather than the best size, it predicted the loss
  at 100x the grid's compute 8% high). Chinchilla took the
  best run at each compute, with dozens of sizes; with four that is a staircase. Its
  crossings (the method two before this one) were +0.048 on the smoke grid's shape and +0.16
  on the WSD grid's; a line through each compute's own minimum (the method before) +0.015 and
  +0.020, as a minimum counts only where the noise leaves it inside the sizes
  (`benchmarks/estimators.py`).
- Approach 2: runs grouped by FLOP budget (an IsoFLOP grid, or points within 10% of each
  other's FLOPs); per budget the minimum of loss in log N, located by a parabola through the
  lowest point and two neighbours each side (one parabola across a wide sweep is pulled
  towards the sweep's centre, since a profile is a parabola only near its minimum; one
  neighbour each side is too noisy: `benchmarks/estimators.py`). A budget whose lowest
  point is an end of its sizes, or whose parabola's vertex lies beyond the sizes it went
  through, says so instead of extrapolating: no optimum outside the sizes tried.
- The intervals of both come from a bootstrap that adds noise of the grid's measured size to
  the losses (each run's curve shifted as a whole: a seed moves a run's curve, not each point
  on its own; a WSD size's curve by its trunk's share, each branch final by its own share),
  rather than from the fitted points, which are neither independent (approach 1's
  profiles come from the same runs) nor many (approach 2's optima).
- Held out: approach 3 refitted without the largest model size predicts that size's loss.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator, interp1d

from analysis.fit import (
    FitError,
    SaturatingFit,
    fit_chinchilla,
    fit_power_law,
    fit_saturating,
    refit_saturating,
)
from analysis.laws import PowerLaw
from analysis.noise import BRANCH_OWN_SHARE
from analysis.ridge import Ridge, fit_ridge, profiles
from scaling.contract import VAL_LOSS

ISOFLOP_TOLERANCE = 1.1  # runs whose FLOPs are within this factor share a budget
ENVELOPE_REACH = 1.02
ENVELOPE_POINTS = 60
NEIGHBOURS = 2  # approach 2: sizes each side of a budget's lowest point its parabola goes through
BOOTSTRAP = 400
LOSS_LAW = "the optimum's loss against compute"
# Approach 1 needs interior minima at this many computes, with the best size changing among
# them: within one size's stretch the slope is how one parabola's vertex moves, which the noise
# of the three curves under it sets (on the law grid's shape such fits were 0.15 low:
# benchmarks/RESULTS.md).
MINIMA_NEEDED, BEST_SIZES_NEEDED = 3, 2


@dataclass
class ComputeOptimal:
    """N_opt(C) and D_opt(C) as power laws, with the points they were fitted to. The
    exponents' intervals are the noise bootstrap's (`noise`: the relative noise added)."""

    points: pd.DataFrame  # flops, params, tokens, loss (and the run, for approach 1)
    n_opt: PowerLaw
    d_opt: PowerLaw
    refused: list[str] = field(default_factory=list)  # budgets that could not be used, and why
    parabolas: list[dict] = field(default_factory=list)  # approach 2: one per usable budget
    loss_law: SaturatingFit | None = None  # the optimum's loss against C, where fitted
    envelope: pd.DataFrame | None = None  # approach 1: the lower envelope the plot draws
    noise: float | None = None
    resamples: int = 0

    def _loss_law_dict(self) -> dict | None:
        if self.loss_law is None:
            return None
        law = self.loss_law.law
        return {"law": "L_opt(C) = E + K / C^gamma", "E": law.E, "K": law.A, "gamma": law.alpha}

    def loss_at(self, flops: float) -> tuple[float, tuple[float, float] | None] | None:
        """The loss law's prediction at `flops` and its 95% interval; None without a law."""
        if self.loss_law is None:
            return None
        law = self.loss_law
        with np.errstate(all="ignore"):
            return float(law.law(flops)), law.interval(lambda sample: float(sample(flops)))

    def to_dict(self) -> dict:
        return {
            "n_opt": self.n_opt.to_dict(),
            "loss_law": self._loss_law_dict(),
            "d_opt": self.d_opt.to_dict(),
            "points": self.points.drop(columns=["run_id"], errors="ignore").to_dict("records"),
            "refused": self.refused,
            "parabolas": self.parabolas,
            "interval": f"bootstrap, {self.resamples} resamples, noise {self.noise:.3g}"
            if self.resamples
            else "t interval of the fitted points",
        }


def _replicated(
    result: ComputeOptimal,
    optima: list[pd.DataFrame],
    noise: float,
    losses: list[pd.DataFrame] | None = None,
) -> ComputeOptimal:
    """`result` with its exponents' intervals from the optima (flops, params, tokens) found in
    each noisy replicate of the grid that has 2 sizes or more, and its loss law's samples from
    the replicates' optimal losses (flops, loss: the optima's own unless `losses` gives
    them)."""
    replicates = [found for found in optima if found["params"].nunique() >= 2]
    slopes: dict[str, list[float]] = {"params": [], "tokens": []}
    for found in replicates:
        log_c = np.log(found["flops"])
        for column, values in slopes.items():
            values.append(np.polyfit(log_c, np.log(found[column]), 1)[0])
    result.n_opt = _with_interval(result.n_opt, _percentile_interval(slopes["params"]))
    result.d_opt = _with_interval(result.d_opt, _percentile_interval(slopes["tokens"]))
    result.noise, result.resamples = noise, len(optima)
    optimal = losses if losses is not None else replicates
    if result.loss_law is not None and optimal:
        # Every replicate's optima on one axis of FLOPs, weight 0 where a replicate has none.
        flops = np.unique(np.concatenate([found["flops"] for found in optimal]))
        table = np.ones((len(optimal), len(flops)))
        weights = np.zeros_like(table)
        for row, found in enumerate(optimal):
            at = np.searchsorted(flops, found["flops"])
            table[row, at], weights[row, at] = found["loss"], 1.0
        enough = (weights > 0).sum(1) >= 4
        result.loss_law.samples = refit_saturating(
            flops, table[enough], weights[enough], result.loss_law.law
        )
    return result


def _loss_law(optima: pd.DataFrame) -> SaturatingFit | None:
    """The loss of the compute-optimal model against C, E + K/C^gamma, where the optima
    give the 4 points and 3 budgets it needs."""
    try:
        return fit_saturating(optima["flops"], optima["loss"], what=LOSS_LAW)
    except FitError:
        return None


def _percentile_interval(values: list[float]) -> tuple[float, float] | None:
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 20:
        return None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _with_interval(law: PowerLaw, interval: tuple[float, float] | None) -> PowerLaw:
    """`law` with the bootstrap's interval, or its own where the bootstrap gave none."""
    interval = interval or law.exponent_ci95
    return PowerLaw(law.coefficient, law.exponent, interval, law.n_points, law.aic)


# ---------------------------------------------------------------------------------------------
# Approach 1


@dataclass
class _Envelope:
    """Every run's validation loss at each of a set of FLOP values (nan where the run does not
    reach it; a run here is one (size, tokens) cell, its seeds averaged): the envelope, and
    the sizes' profiles at each compute the ridge goes through, of any shift of the runs'
    losses are a few array operations away."""

    flops: np.ndarray  # (C,)
    log_loss: np.ndarray  # (runs, C)
    run_ids: list[str]
    params: np.ndarray  # (runs,)
    names: list[str]
    flops_per_token: np.ndarray  # (runs,)
    seeds: np.ndarray  # (runs,): how many seeds each curve averages
    evaluations: list[np.ndarray]  # per run, the log FLOPs of its curve's points

    def lowest(self) -> tuple[np.ndarray, np.ndarray]:
        """The winning run at each compute and the envelope's loss."""
        log_loss = np.where(np.isfinite(self.log_loss), self.log_loss, np.inf)
        winner = np.argmin(log_loss, axis=0)
        return winner, np.exp(self.log_loss[winner, np.arange(len(self.flops))])

    def size_curves(self, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The sizes, and each size's log loss at each compute from its shortest run
        reaching it: on a real grid the most annealed there, so the lowest; on a noisy one the
        lowest of a size's runs would be the luckiest, biasing the larger sizes (whose runs
        overlap where the smaller ones' have ended) low."""
        log_loss = self._shifted(shift)
        reach = np.array([at[-1] for at in self.evaluations])
        sizes = np.unique(self.params)
        curves = np.full((len(sizes), len(self.flops)), np.nan)
        for row, n in enumerate(sizes):
            for run in sorted(np.flatnonzero(self.params == n), key=lambda r: -reach[r]):
                curves[row] = np.where(np.isfinite(log_loss[run]), log_loss[run], curves[row])
        return sizes, curves

    def minima(self) -> pd.DataFrame:
        """The computes where the sizes' curves have an interior minimum (as approach 2
        finds a budget's: the parabola through the lowest size and its neighbours reaching
        it), each with its lowest size (`best_size`): where the grid shows N_opt between its
        sizes."""
        sizes, curves = self.size_curves()
        rows = []
        for flops, column in zip(self.flops, curves.T):
            reached = np.isfinite(column)
            if reached.sum() >= 3 and not isinstance(
                local_minimum(np.log(sizes[reached]), column[reached]), str
            ):
                best = sizes[reached][np.argmin(column[reached])]
                rows.append({"flops": float(flops), "best_size": float(best)})
        return pd.DataFrame(rows, columns=["flops", "best_size"])

    def ridge(
        self, shift: np.ndarray | None = None, start: np.ndarray | None = None
    ) -> tuple[Ridge, pd.DataFrame] | None:
        """The ridge through the sizes' profiles (analysis/ridge.py), from `start` (a fit's
        parameters) where given, and N_opt along it at each compute whose profile it was
        fitted to, with the tokens there (the FLOPs per token interpolated in log N, and
        extrapolated where the ridge leaves the sizes), the loss and whether it lies `inside`
        the sizes of that profile; None where it cannot be fitted."""
        sizes, curves = self.size_curves(shift)
        log_n = np.log(sizes)
        every = profiles(log_n, curves, self.flops, NEIGHBOURS)
        result = None if every is None else fit_ridge(every, start)
        if result is None:
            return None
        fitted, found = result
        per_token = np.log([self.flops_per_token[self.params == n][0] for n in sizes])
        log_per_token = interp1d(log_n, per_token, fill_value="extrapolate")
        flops = self.flops[found.columns]
        n_opt = fitted.log_n_opt(found.log_flops)
        points = pd.DataFrame(
            {
                "flops": flops,
                "params": np.exp(n_opt),
                "tokens": flops / np.exp(log_per_token(n_opt)),
                "loss": np.exp(fitted.lowest_log_loss(found)),
                # whether the ridge lies within the sizes its profile there went through
                "inside": found.near(n_opt, steps=0),
            }
        )
        return fitted, points

    def best_so_far(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The running minimum of `lowest` along compute: at each compute the best loss any
        run reached there or below (a run that reached a loss at less compute could have
        stopped there, so the best loss for a compute never rises), the run that reached it,
        and the index of the compute where it did."""
        winner, loss = self.lowest()
        best = np.fmin.accumulate(loss)
        where = np.arange(len(loss))
        reached_at = np.maximum.accumulate(np.where(loss == best, where, 0))
        return winner[reached_at], reached_at, best

    def points(self) -> pd.DataFrame:
        """At each compute some run reaches, the lowest validation loss reached there or
        below (a monotone cubic in log-log between a run's evaluations), the run that reached
        it and the tokens it had seen then."""
        winner, reached_at, loss = self.best_so_far()
        covered = np.isfinite(self.log_loss).any(axis=0)
        return pd.DataFrame(
            {
                "flops": self.flops,
                "loss": loss,
                "run_id": [self.run_ids[w] for w in winner],
                "name": [self.names[w] for w in winner],
                "params": self.params[winner],
                "tokens": self.flops[reached_at] / self.flops_per_token[winner],
            }
        )[covered].reset_index(drop=True)

    def noise_at_each_point(self, noise: float, rng: np.random.Generator) -> np.ndarray:
        """(runs, C): noise drawn for each point of each run's curve on its own (its seeds
        averaged), carried onto the envelope's computes as the curve is, linear in log C."""
        log_c = np.log(self.flops)
        return np.array(
            [
                np.interp(log_c, at, noise * rng.standard_normal(len(at)) / np.sqrt(seeds))
                for at, seeds in zip(self.evaluations, self.seeds)
            ]
        )

    def _shifted(self, shift: np.ndarray | None) -> np.ndarray:
        """The log losses plus `shift`: one per run (the whole curve) or one per run and
        compute."""
        if shift is None:
            return self.log_loss
        return self.log_loss + (shift[:, None] if shift.ndim == 1 else shift)


def _envelope(curves: dict[str, pd.DataFrame], runs: pd.DataFrame) -> _Envelope:
    """The runs' curves on one axis of FLOPs; the seeds of one (size, tokens) averaged (in log
    loss) into one curve, so the envelope follows the grid, not its luckiest seed."""
    columns = ["name", "params", "flops_per_token", "tokens"]
    by_id = runs.set_index("run_id").reindex(columns=columns).to_dict("index")
    ordered = {
        run_id: curve.sort_values("flops").drop_duplicates("flops", keep="last")
        for run_id, curve in curves.items()
        if run_id in by_id and "flops" in curve
    }
    usable = {run_id: curve for run_id, curve in ordered.items() if len(curve) >= 2}
    if not usable:
        raise FitError("approach 1: no finished run has a validation curve with 2 or more points")
    low = min(c["flops"].iloc[0] for c in usable.values())
    high = max(c["flops"].iloc[-1] for c in usable.values())
    C = np.logspace(np.log10(low), np.log10(high), ENVELOPE_POINTS)
    cells: dict[object, list[str]] = {}
    for run_id in usable:
        run = by_id[run_id]
        known = pd.notna(run["tokens"])  # without tokens each run is its own cell
        cells.setdefault((run["params"], run["tokens"]) if known else run_id, []).append(run_id)
    rows = []
    for members in cells.values():
        seeds = []
        for run_id in members:
            curve = usable[run_id]
            flops = curve["flops"].to_numpy(float)
            # Monotone cubic in log-log between evaluations: a WSD size's curve joins a few
            # branch finals up to 4x apart, and straight lines between them sit above a
            # curve that bends (on the law grid's shape a came out 0.015 low, noise-free).
            log_loss = PchipInterpolator(np.log(flops), np.log(curve[VAL_LOSS].to_numpy(float)))(
                np.minimum(np.log(C), np.log(flops[-1]))
            )
            # A run counts up to its end, and 2% past it: runs of one IsoFLOP budget end a
            # rounding apart, and the one that ends last should not win the end by default.
            reached = (flops[0] <= C) & (C <= flops[-1] * ENVELOPE_REACH)
            seeds.append(np.where(reached, log_loss, np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a compute no seed reaches
            rows.append(np.nanmean(seeds, axis=0))
    ids = [members[0] for members in cells.values()]
    return _Envelope(
        C,
        np.array(rows),
        ids,
        np.array([float(by_id[i]["params"]) for i in ids]),
        [by_id[i]["name"] for i in ids],
        np.array([float(by_id[i]["flops_per_token"]) for i in ids]),
        np.array([len(members) for members in cells.values()]),
        [np.log(usable[i]["flops"].to_numpy(float)) for i in ids],
    )


def _why_no_optima(envelope: _Envelope) -> str:
    """Whether the largest (or smallest) size reaching each compute wins everywhere: then
    N_opt lies beyond the grid's sizes, and the grid cannot say where."""
    winner, _ = envelope.lowest()
    reached = np.isfinite(envelope.log_loss)
    sizes = np.where(reached, envelope.params[:, None], np.nan)
    won_by = envelope.params[winner]
    covered = reached.any(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        largest, smallest = np.nanmax(sizes, axis=0), np.nanmin(sizes, axis=0)
    if np.all(won_by[covered] == largest[covered]):
        return "At every compute the largest size reaching it is best: N_opt lies above them."
    if np.all(won_by[covered] == smallest[covered]):
        return "At every compute the smallest size reaching it is best: N_opt lies below them."
    return "Train each size past the compute where the next larger one overtakes it."


def approach_1(
    curves: dict[str, pd.DataFrame],
    runs: pd.DataFrame,
    noise: float | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    each_point_a_run: bool = False,
) -> ComputeOptimal:
    """N_opt(C) and D_opt(C) along the ridge through the sizes' profiles at every compute
    (`points`: N_opt where the sizes of a profile bracket it), the loss law through the
    ridge's loss there (the lower envelope kept for the plot); with `noise` (the relative
    noise of a run's loss), their intervals from `bootstrap` replicates of the runs' curves,
    each shifted by that noise and its ridge refitted. `each_point_a_run`: each curve joins
    runs' final losses (a WSD grid's trunk and its branches), so each replicate shifts the
    curve by the trunk's share of the noise and each point by the branch's own share
    (`BRANCH_OWN_SHARE` of the variance): each point's noise in all is the noise measured."""
    envelope = _envelope(curves, runs)
    found = envelope.minima()
    if not _enough(found):
        raise FitError(
            f"approach 1: the sizes' curves have an interior minimum (a size beating a smaller "
            f"and a larger one reaching the same compute) at {len(found)} computes, "
            f"{found['best_size'].nunique()} size(s) best among them: N_opt(C) needs "
            f"{MINIMA_NEEDED} computes or more with {BEST_SIZES_NEEDED} sizes best. "
            + _why_no_optima(envelope)
        )
    fitted = envelope.ridge()
    if fitted is None:
        raise FitError("approach 1: the ridge through the sizes' profiles did not converge")
    ridge, optima = fitted
    if optima["inside"].sum() < 2:
        raise FitError(
            "approach 1: the ridge through the sizes' profiles lies outside the sizes at "
            "every compute but one: no optimum outside the sizes tried"
        )
    # N_opt and its loss where the grid's sizes bracket it; the exponents from the whole ridge.
    bracketed = optima[optima["inside"]].drop(columns="inside").reset_index(drop=True)
    result = ComputeOptimal(
        bracketed,
        _along_ridge(optima, "params"),
        _along_ridge(optima, "tokens"),
        loss_law=_loss_law(bracketed),
        envelope=envelope.points(),
    )
    if not (noise and bootstrap):
        return result
    rng = np.random.default_rng(seed)
    own = BRANCH_OWN_SHARE if each_point_a_run else 0.0
    trunk_noise = noise * np.sqrt(1 - own) / np.sqrt(envelope.seeds)
    replicates, losses = [], []
    for _ in range(bootstrap):
        shift = trunk_noise * rng.standard_normal(len(envelope.run_ids))
        if each_point_a_run:
            shift = shift[:, None] + envelope.noise_at_each_point(noise * np.sqrt(own), rng)
        # Every replicate whose ridge can be fitted counts, whether or not its minima pass
        # the fit's own rule: keeping only those narrowed the interval to the draws that
        # look like this grid (on the WSD grid's shape it held the truth 88% of the time,
        # and 100% counting them all; the smoke grid's, 90% and 95%).
        replicate = envelope.ridge(shift, start=ridge.parameters)
        if replicate is not None:
            replicates.append(replicate[1])
            losses.append(replicate[1][replicate[1]["inside"]])
    return _replicated(result, replicates, noise, losses)


def _along_ridge(optima: pd.DataFrame, column: str) -> PowerLaw:
    """`column` (params or tokens) against FLOPs along the ridge, as a power law: N_opt is one
    by construction, D_opt all but (the FLOPs per token are not quite proportional to N). No
    interval: the bootstrap gives it."""
    slope, intercept = np.polyfit(np.log(optima["flops"]), np.log(optima[column]), 1)
    return PowerLaw(float(np.exp(intercept)), float(slope), None, len(optima), float("nan"))


def _enough(minima: pd.DataFrame) -> bool:
    """Whether approach 1's minima are enough for a slope: MINIMA_NEEDED computes or more,
    with BEST_SIZES_NEEDED sizes best among them."""
    return len(minima) >= MINIMA_NEEDED and minima["best_size"].nunique() >= BEST_SIZES_NEEDED


# ---------------------------------------------------------------------------------------------
# Approach 2


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


def within_sizes_tried(n: float, sizes) -> bool:
    """Approach 2's rule for any minimum in N, the plots' included: it lies within the sizes
    tried. Beyond them a parabola or a law only extrapolates, and no minimum was found."""
    return bool(np.min(sizes) <= n <= np.max(sizes))


def local_minimum(
    log_n: np.ndarray, loss: np.ndarray, neighbours: int = NEIGHBOURS
) -> tuple[float, np.ndarray, tuple[int, int]] | str:
    """The minimum of loss in log N from the parabola through the lowest point and
    `neighbours` sizes each side (least squares where it has more than 3 points). Returns the
    vertex, the coefficients and the window's (first, last) index, sizes in ascending order;
    or, where no minimum lies within the sizes tried, why not: the lowest point is an end of
    the sizes, the parabola opens downwards, or its vertex lies beyond the sizes it went
    through."""
    lowest = int(np.argmin(loss))
    if lowest == 0 or lowest == len(loss) - 1:
        return (
            f"no interior minimum (lowest loss at N = {np.exp(log_n[lowest]):.3g}, an end of "
            "the sizes tried), so N_opt lies outside the grid"
        )
    first, last = max(0, lowest - neighbours), min(len(loss), lowest + neighbours + 1)
    coefficients = np.polyfit(log_n[first:last], loss[first:last], 2)
    curvature, slope, _ = coefficients
    if curvature <= 0:
        return (
            "no minimum (the parabola through the lowest loss and its neighbours opens downwards)"
        )
    vertex = -slope / (2 * curvature)
    window = np.exp(log_n[first:last])
    if not within_sizes_tried(np.exp(vertex), window):
        return (
            "no interior minimum (the parabola through the lowest loss and its neighbours has "
            f"its vertex at N = {np.exp(vertex):.3g}, outside the sizes it went through, "
            f"{window[0]:.3g} to {window[-1]:.3g})"
        )
    return vertex, coefficients, (first, last - 1)


@dataclass
class _IsoFLOP:
    """A grid's budgets, each as its sizes in ascending order: the index arrays let a noisy
    replicate's losses be averaged over seeds and searched without regrouping."""

    budgets: list[float]
    log_n: list[np.ndarray]  # per budget: log N of each size
    log_d: list[np.ndarray]  # per budget: mean log D of each size
    members: list[list[np.ndarray]]  # per budget, per size: the rows (seeds) of that size

    @classmethod
    def of(cls, points: pd.DataFrame) -> _IsoFLOP:
        grid = cls([], [], [], [])
        for _, group in points.groupby("budget"):
            sizes = sorted(group["params"].unique())
            grid.budgets.append(float(group["budget"].iloc[0]))
            grid.log_n.append(np.log(sizes))
            rows = [group.index[group["params"] == n].to_numpy() for n in sizes]
            grid.log_d.append(np.array([np.log(points.loc[r, "tokens"]).mean() for r in rows]))
            grid.members.append(rows)
        return grid

    def optima(self, loss: np.ndarray, neighbours: int):
        optima, refused, parabolas = [], [], []
        for budget, log_n, log_d, rows in zip(self.budgets, self.log_n, self.log_d, self.members):
            where = f"budget {budget:.3g} FLOPs"
            if len(log_n) < 3:
                refused.append(f"{where}: {len(log_n)} model size(s); a parabola needs 3")
                continue
            mean = np.array([loss[r].mean() for r in rows])
            found = local_minimum(log_n, mean, neighbours)
            if isinstance(found, str):
                refused.append(f"{where}: {found}")
                continue
            vertex, coefficients, (first, last) = found
            # Tokens at the optimum: log D is linear in log N along an IsoFLOP line.
            d_slope, d_intercept = np.polyfit(log_n, log_d, 1)
            optima.append(
                {
                    "flops": budget,
                    "params": float(np.exp(vertex)),
                    "tokens": float(np.exp(d_intercept + d_slope * vertex)),
                    "loss": float(np.polyval(coefficients, vertex)),
                }
            )
            parabolas.append(
                {
                    "flops": budget,
                    "coefficients": [float(c) for c in coefficients],
                    "n_opt": float(np.exp(vertex)),
                    "sizes": [float(np.exp(log_n[first])), float(np.exp(log_n[last]))],
                }
            )
        return optima, refused, parabolas


def approach_2(
    params,
    tokens,
    flops,
    loss,
    noise: float | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    neighbours: int = NEIGHBOURS,
) -> ComputeOptimal:
    """IsoFLOP minima. Every budget with 3 or more sizes is tried; one without an interior
    minimum is listed in `refused` with the reason. Needs 2 usable budgets for the laws; with
    `noise`, the exponents' intervals come from `bootstrap` grids with that relative noise
    added to every loss."""
    points = pd.DataFrame(
        {
            "params": np.asarray(params, float),
            "tokens": np.asarray(tokens, float),
            "flops": np.asarray(flops, float),
            "loss": np.asarray(loss, float),
        }
    )
    points["budget"] = isoflop_budgets(points["flops"])
    grid = _IsoFLOP.of(points)
    loss = points["loss"].to_numpy()
    optima, refused, parabolas = grid.optima(loss, neighbours)
    if len(optima) < 2:
        raise FitError(_approach_2_refusal(refused, len(optima)))
    best = pd.DataFrame(optima)
    result = ComputeOptimal(
        best,
        fit_power_law(best["flops"], best["params"], "approach 2: N_opt(C)", min_points=2),
        fit_power_law(best["flops"], best["tokens"], "approach 2: D_opt(C)", min_points=2),
        refused,
        parabolas,
        _loss_law(best),
    )
    if not (noise and bootstrap):
        return result
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(bootstrap):
        shaken = loss * np.exp(noise * rng.standard_normal(len(loss)))
        found = grid.optima(shaken, neighbours)[0]
        if len(found) >= 2:
            replicates.append(pd.DataFrame(found))
    return _replicated(result, replicates, noise)


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
    noise: float | None = None  # the relative noise its bootstrap added; None: resampled points

    @property
    def mean_abs_error(self) -> float:
        return float(self.points["error"].abs().mean())

    def to_dict(self) -> dict:
        return {
            "held_out_params": self.params,
            "mean_abs_relative_error": self.mean_abs_error,
            "resamples": self.resamples,
            "bootstrap_noise": self.noise,
            "points": self.points.to_dict("records"),
        }


def held_out_prediction(
    params,
    tokens,
    loss,
    bootstrap: int = 200,
    seed: int = 0,
    noise: float | None = None,
    runs=None,
) -> HeldOut:
    """Approach 3 refitted without the largest size, its bootstrap as the full fit's (`noise`
    and `runs` as `fit_chinchilla` takes them), and its predictions for that size's points."""
    N, D, L = (np.asarray(v, float) for v in (params, tokens, loss))
    largest = N.max()
    train = N < largest
    if len(np.unique(N[train])) < 2:
        raise FitError(
            "held-out prediction: without the largest size fewer than 2 sizes remain to fit"
        )
    trained_by = None if runs is None else np.asarray(runs)[train]
    fit = fit_chinchilla(
        N[train], D[train], L[train], bootstrap, seed, noise=noise, runs=trained_by
    )
    if fit.law.alpha <= 0:  # its prediction for a larger size would mean nothing
        raise FitError(
            f"held-out prediction: the law fitted without the largest size has alpha = "
            f"{fit.law.alpha:.3g} (loss rising with size), so it cannot predict a larger one"
        )
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
    return HeldOut(float(largest), pd.DataFrame(rows), bootstrap, fit.noise)
