"""How training time grows with model size and sequence length, and two claims checked on it.

- Time per token against parameters: t = c·N^k, fitted in log-log space with a 95% interval
  on k, and compared by AIC with the exponential t = c·e^(r·N).
- Time per token against sequence length at fixed size: t = a + b·T, i.e. per sequence
  a·T (the dense layers, linear in T) + b·T² (attention scores, quadratic), fitted by
  non-negative least squares; the measured crossover T* = a/b sits beside the FLOP model's
  6·d_model (where 12·L·d·T overtakes 72·L·d²).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize

from analysis.fit import check_xy, fit_exponential, fit_power_law
from scaling.contract import STEP_TIME_SPREAD

# A trial whose 90th-percentile step took more than this many times its 10th ran slower for
# a real part of its run (a machine shared with other work): the report names it.
UNSTEADY_SPREAD = 2.0


def unsteady_trials(finished: pd.DataFrame) -> tuple[int, pd.DataFrame] | None:
    """How many trials were timed, and those whose step time spread beyond UNSTEADY_SPREAD
    (name and spread, the most unsteady first); None for results without step times (a CSV)."""
    spread = finished.get(STEP_TIME_SPREAD)
    if spread is None or spread.isna().all():
        return None
    unsteady = finished[spread > UNSTEADY_SPREAD][["name", STEP_TIME_SPREAD]]
    return int(spread.notna().sum()), unsteady.sort_values(STEP_TIME_SPREAD, ascending=False)


@dataclass(frozen=True)
class SeqLenCost:
    """Time per token t(T) = a + b·T at one model size: per sequence, a·T + b·T²."""

    a: float
    b: float
    d_model: int
    lengths: tuple[int, ...]  # the distinct lengths it was fitted on

    @property
    def crossover(self) -> float:
        """The length at which the quadratic part equals the linear one (inf if b = 0)."""
        return self.a / self.b if self.b > 0 else float("inf")

    @property
    def flop_model_crossover(self) -> int:
        return 6 * self.d_model

    def doubling_ratio(self, T: float) -> float:
        """Cost of a sequence of 2T over one of T: from 2 (all linear) towards 4 (all quadratic)."""
        return (2 * self.a + 4 * self.b * T) / (self.a + self.b * T)

    def length_where_doubling_costs(self, ratio: float) -> float:
        """The T from which doubling T multiplies the cost by at least `ratio` (2 < ratio < 4)."""
        if self.b <= 0:
            return float("inf")
        return (ratio - 2) * self.a / ((4 - ratio) * self.b)


def fit_seq_len_cost(seq_len, time_per_token, d_model: int) -> SeqLenCost:
    # Two lengths determine a and b exactly; more also average out timing noise.
    T, t = check_xy(seq_len, time_per_token, "time against sequence length", min_points=2)
    (a, b), _ = optimize.nnls(np.column_stack([np.ones_like(T), T]), t)
    return SeqLenCost(float(a), float(b), int(d_model), tuple(sorted({int(x) for x in T})))


def claim_quadratic(cost: SeqLenCost, lengths, window: int | None = None) -> str:
    """ "Doubling the sequence length quadruples the cost" (of a sequence), judged on one size's
    fit, doubling from each of `lengths`; `window` for a sliding-window model."""
    if len(cost.lengths) < 3:
        timed = " and ".join(map(str, cost.lengths))
        return (
            "Doubling the sequence length quadruples the cost: cannot be tested here. Only "
            f"{len(cost.lengths)} lengths were timed ({timed}): a + b·T has two unknowns, so "
            "it passes through their mean times exactly, leaving no degree of freedom to check "
            "the form against or to tell attention's share from timing noise. Time three or "
            "more lengths (experiments/seq_len.yaml times five)."
        )
    lengths = sorted(lengths)
    ratios = ", ".join(f"{cost.doubling_ratio(T):.2f}x from T={T}" for T in lengths)
    near = cost.length_where_doubling_costs(3.6)
    flop_model = (
        f"the FLOP model puts the crossover at 6·d_model = {cost.flop_model_crossover}"
        if window is None
        else f"in the FLOP model attention stops growing at the window of {window:,.0f} keys"
    )
    if np.isfinite(near):
        where = (
            f"it comes within 10% of 4x only from T ≈ {near:,.0f} (measured crossover "
            f"T* = {cost.crossover:,.0f}; {flop_model})"
        )
    else:
        where = (
            "no attention cost was measurable at these lengths, so a sequence costs in "
            f"proportion to its length here ({flop_model})"
        )
    verdict = "true here" if cost.doubling_ratio(lengths[0]) >= 3.6 else "not true here"
    return (
        f"Doubling the sequence length quadruples the cost: {verdict}. Doubling costs "
        f"{ratios}; {where}."
    )


def claim_exponential(params, time_per_token) -> str:
    """ "Doubling the model size increases training time exponentially", judged by AIC: a
    difference under 2 means these timings cannot tell the two forms apart."""
    power = fit_power_law(params, time_per_token, "time against parameters")
    exponential = fit_exponential(params, time_per_token, "time against parameters")
    low, high = power.exponent_ci95 or (float("nan"), float("nan"))
    difference = exponential.aic - power.aic
    if difference >= 2:
        verdict, comparison = "false", "the power law fits better"
    elif difference <= -2:
        verdict, comparison = "supported by these timings", "the exponential fits better"
    else:
        verdict = "not decided by these timings"
        comparison = "the two forms fit about equally (AIC within 2)"
    N = np.asarray(params, float)
    if high < 0:  # larger models cheaper per token: overheads, not FLOPs, set these times
        return (
            "Doubling the model size increases training time exponentially: not tested by "
            f"these timings. Time per token falls as N grows (N^{power.exponent:.2f}, 95% "
            f"interval {low:.2f} to {high:.2f}, over N from {N.min():.3g} to {N.max():.3g}): "
            "the smallest models run slower per token than larger ones on this machine (fixed "
            "costs per step, or a slow kernel path at tiny widths), so these times say nothing "
            "of how the cost grows with size. Time larger models to test it."
        )
    return (
        f"Doubling the model size increases training time exponentially: {verdict}. "
        f"Time per token grows as N^{power.exponent:.2f} (95% interval {low:.2f} to "
        f"{high:.2f}), so doubling N multiplies it by {2**power.exponent:.2f}; over N from "
        f"{N.min():.3g} to {N.max():.3g} {comparison} by AIC ({power.aic:.1f} for N^k against "
        f"{exponential.aic:.1f} for e^(rN))."
    )
