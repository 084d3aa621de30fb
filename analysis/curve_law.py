"""A schedule-aware learning curve: the loss after every step of a run, from its LR schedule.

Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", arXiv 2408.11029):

    L(s) = L0 + A · S1(s)^(−alpha) − C · S2(s)

    S1(s) = Σ_{i≤s} η_i                                   the forward area: LR summed over steps
    S2(s) = Σ_{i≤s} m_i,  m_i = λ·m_{i−1} + (η_{i−1} − η_i)   the annealing area

An LR decrease lowers the loss, but not at once: its effect builds up over about
τ = 1/(1 − λ) steps (the momentum m), which is why a cooldown keeps paying after it starts.
One law describes all curves of one model size whatever their schedules, so a constant-LR run
and one decayed run predict a cosine run, and the start of a run predicts its end.

The choices below were measured on simulated curves (a known law; the project's cosine,
constant and WSD schedules with warm-up; 0.3% noise) and on the 88 real curves of the
wsdbench grids (4 tiny sizes × 2 peak LRs, cosine and WSD runs of 49–781 steps).

Warm-up. The paper starts the recursion at η_0 = η_1; we start it at η_0 = 0, the LR before
training. For a linear warm-up from near 0 the two agree to within the first step's LR, and
in both the warm-up's rising LR gives negative deltas: a rising LR raises the loss the way a
falling one lowers it, with the same lag. With η_0 = 0 this holds for runs without a warm-up
as well, so L0 means the same for every curve: the loss with an unbounded forward area and
the LR annealed to 0; a run held at LR η settles C·η/(1 − λ) above it. On the real curves
(each size's curves fitted together at λ = 0.98) the rms relative residual is 1.71% this
way, 1.74% with η_0 = η_1, and 1.95% with the warm-up clipped out (no credit or debit
while the LR rises).

λ. The paper's 0.999 (τ = 1,000 steps) is for runs of tens of thousands of steps; at ours
(50–1,000) it misses simulated final losses by 1–14%. The fit picks λ from DECAYS (τ = 5 to
200 steps), each with its own best alpha, L0, A and C, by fit quality. Fitting λ on a fine
grid (continuous, in effect) predicted no better and took 20 times as long: when the
response is fast next to the schedule (τ ≲ 20) only C/(1 − λ) is identified, and λ drifted
to 0 with C 10–20 times too large. A single fixed λ fails when the truth is far from
it (λ = 0.98 against a true τ of 200 steps: 10% off from 40% prefixes). On the real curves
λ = 0.98 is picked for 7 of the 8 size × LR grids.

Fitting (variable projection): at fixed alpha and λ the law is linear in L0, A and C, so
non-negative least squares gives them exactly (scipy's nnls: lsq_linear's problem when every
bound is >= 0, several times faster); a grid and a bounded 1-D search over alpha do the rest,
for each λ. Residuals are relative (each point weighted by 1/loss). About 10 ms a fit.

Why not the multi-power law (Luo et al. 2025, arXiv 2503.12811), which gives each LR drop
its own power-law payoff: on this project's real grids it predicted no better (finals from
40% prefixes 3.00% and 0.93% against 2.99% and 0.86%; across schedules 2.28% against 1.82%,
and 3.52% against 3.95% on the longest runs, of 1,560 steps) with three more parameters and
200-600 times the fitting time (benchmarks/curve_laws.py).

How far to trust it. On simulated curves it predicts a cosine run's final loss from a
constant run and a WSD run within 1%, and three cosine runs' (200, 500 and 1,250 steps)
from their first 40% within 0.4% (median; 1.2% at the 90th percentile of 100 noise draws),
where a schedule-unaware L0 + A·t^(−alpha) on steps misses by 3.3%: one curve on steps
cannot follow three schedules (tests/test_curve_law.py). On the real wsdbench curves (tiny
models, 49–781 steps, losses not yet flattening: L0 went to 0 for 7 of 8) it fits to 1.7%,
and its 40%-prefix forecasts were worse than the baseline's for 5 of the 8 grids (0.1–14%
against 2–4%): read a fit's residuals and warnings before leaning on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar, nnls
from scipy.signal import lfilter

from analysis.fit import FitError

# λ candidates: the annealing response time τ = 1/(1 − λ) of 5, 10, 20, 50, 100, 200 steps.
DECAYS = (0.8, 0.9, 0.95, 0.98, 0.99, 0.995)
ALPHA_BOUNDS = (0.02, 3.0)
ALPHA_GRID = np.geomspace(*ALPHA_BOUNDS, 48)
MIN_POINTS = 6  # 4 free parameters, λ, and one left over to judge the fit


@dataclass(frozen=True)
class Curve:
    """One run's curve: `lr` the LR used at each optimizer step (absolute, peak included;
    len = total steps of the run's schedule), `steps` after how many optimizer steps each loss
    was measured (ints >= 1), `loss` the validation losses there."""

    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray

    def __post_init__(self) -> None:
        # Lists are welcome; the law needs float arrays and integer steps.
        object.__setattr__(self, "lr", np.asarray(self.lr, dtype=float).ravel())
        object.__setattr__(self, "steps", np.asarray(self.steps).ravel().astype(int))
        object.__setattr__(self, "loss", np.asarray(self.loss, dtype=float).ravel())

    def up_to(self, step: int) -> Curve:
        """The losses measured by `step`, with the whole schedule kept: a run's planned LR is
        known before it is run, and the law needs it to predict the rest."""
        keep = self.steps <= step
        return Curve(self.lr, self.steps[keep], self.loss[keep])


def schedule_areas(lr, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each step 1..len(lr) of the per-step LR `lr`, with momentum `decay`."""
    lr = np.asarray(lr, dtype=float).ravel()
    deltas = -np.diff(lr, prepend=0.0)  # η_{i−1} − η_i, with η_0 = 0 (the module docstring)
    momentum = lfilter([1.0], [1.0, -decay], deltas)  # m_i = λ·m_{i−1} + delta_i
    return np.cumsum(lr), np.cumsum(momentum)


@dataclass(frozen=True)
class CurveLaw:
    """L(s) = L0 + A·S1(s)^(−alpha) − C·S2(s), S2 with momentum `decay` (λ)."""

    L0: float
    A: float
    alpha: float
    C: float
    decay: float

    def loss(self, lr, steps) -> np.ndarray:
        """The predicted loss after each of `steps` optimizer steps under per-step LR `lr`."""
        S1, S2 = schedule_areas(lr, self.decay)
        at = np.asarray(steps, dtype=int) - 1
        return self.L0 + self.A * S1[at] ** -self.alpha - self.C * S2[at]

    @property
    def tau(self) -> float:
        """The annealing response time in steps, 1/(1 − λ)."""
        return 1.0 / (1.0 - self.decay)

    @property
    def settled_drop(self) -> float:
        """C/(1 − λ): the loss an LR decrease of 1 removes once it has taken full effect. When
        τ is short next to the schedule's changes, this is what the data pin down, not C."""
        return self.C * self.tau

    def to_dict(self) -> dict:
        return {
            "law": "L(s) = L0 + A·S1(s)^(-alpha) - C·S2(s)",
            "L0": self.L0,
            "A": self.A,
            "alpha": self.alpha,
            "C": self.C,
            "decay": self.decay,
            "tau_steps": self.tau,
            "settled_drop": self.settled_drop,
        }


@dataclass
class CurveLawFit:
    """A fitted curve law with what it was fitted on, in the manner of scipy's results."""

    law: CurveLaw
    rms_relative: float  # rms of loss / predicted − 1 over the points fitted
    n_points: int
    n_curves: int
    # Each λ tried and the rms of (loss − predicted)/loss at its best: how sharply the data choose.
    decay_rms: dict[float, float] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        """Where a parameter sits on a bound, in words a reader can act on."""
        found = []
        if self.law.L0 == 0:
            found.append("L0 went to 0: the curves do not flatten, so the floor is not pinned")
        if self.law.C == 0:
            found.append("C went to 0: these curves show no gain from annealing")
        if np.isclose(ALPHA_BOUNDS, self.law.alpha, rtol=0.01).any():
            found.append(f"alpha = {self.law.alpha:.3g} sits on its bound: it is not pinned")
        tried = sorted(self.decay_rms)
        if len(tried) > 1 and self.law.decay in (tried[0], tried[-1]):
            found.append(
                f"λ = {self.law.decay:g} is the edge of the candidates tried: the annealing "
                "response may be faster or slower than they allow"
            )
        return found

    def to_dict(self) -> dict:
        return {
            **self.law.to_dict(),
            "rms_relative": self.rms_relative,
            "n_points": self.n_points,
            "n_curves": self.n_curves,
            "decay_rms": {str(d): r for d, r in self.decay_rms.items()},
            "warnings": self.warnings(),
        }

    def __str__(self) -> str:
        law = self.law
        return (
            f"curve law, {self.n_points} points on {self.n_curves} curves, rms relative "
            f"residual {self.rms_relative:.3%}\n"
            f"  L0 = {law.L0:.4g}, A = {law.A:.4g}, alpha = {law.alpha:.4g}, C = {law.C:.4g}, "
            f"λ = {law.decay:g} (τ = {law.tau:.0f} steps)"
        )


def annealed(curve: Curve) -> bool:
    """Whether a loss was measured after the LR came down from a peak. The annealing term
    needs one: a warm-up's rise alone gives S2 something to fit, but a law that learnt C there
    would guess every cooldown."""
    fallen = np.maximum.accumulate(curve.lr) - curve.lr > 1e-9 * curve.lr.max()
    return bool(len(curve.steps)) and bool(fallen[: curve.steps.max()].any())


def _check(curves: Sequence[Curve]) -> None:
    if not curves:
        raise FitError("no curves to fit")
    for k, c in enumerate(curves):
        if not len(c.steps) == len(c.loss):
            raise FitError(f"curve {k}: steps and loss must have the same length")
        if not (np.all(np.isfinite(c.lr)) and np.all(c.lr >= 0) and np.any(c.lr > 0)):
            raise FitError(f"curve {k}: the LR must be finite, >= 0 and not all 0")
        if len(c.steps) and not (c.steps.min() >= 1 and c.steps.max() <= len(c.lr)):
            raise FitError(f"curve {k}: steps must lie in 1..{len(c.lr)}, the schedule's length")
        if not (np.all(c.loss > 0) and np.all(np.isfinite(c.loss))):
            raise FitError(f"curve {k}: losses must be positive and finite")
    n_points = sum(len(c.loss) for c in curves)
    if n_points < MIN_POINTS:
        raise FitError(
            f"the curve law has 4 parameters plus the decay λ and needs at least {MIN_POINTS} "
            f"points, got {n_points}"
        )
    if len({float(np.cumsum(c.lr)[s - 1]) for c in curves for s in c.steps}) < 3:
        raise FitError("fewer than 3 distinct forward areas: L0, A and alpha are not identified")

    if not any(annealed(c) for c in curves):
        raise FitError(
            "no curve was measured after its LR fell (constant LR, or only warm-up): the "
            "annealing term C·S2 is not identified; add a run measured during a cooldown"
        )


def fit_curve_law(curves: Sequence[Curve], decays: Sequence[float] = DECAYS) -> CurveLawFit:
    """One law for all `curves` (one model size), by least squares on relative residuals.

    `decays`: the λ values to choose from by fit quality; one value fixes λ (e.g. (0.999,),
    the paper's). Raises FitError when the data cannot identify the law."""
    curves = list(curves)
    _check(curves)
    if not (len(decays) and all(0 <= d < 1 for d in decays)):
        raise FitError("decays: give at least one λ, each in [0, 1)")
    loss = np.concatenate([c.loss for c in curves])
    S1 = np.concatenate([np.cumsum(c.lr)[c.steps - 1] for c in curves])

    def profile(alpha: float, S2: np.ndarray) -> tuple[np.ndarray, float]:
        """The best L0, A, C (all >= 0) at this alpha and λ, and the residual norm. Columns
        are scaled to unit norm first: S1^(−alpha) spans many decades when alpha is large."""
        X = np.column_stack([np.ones_like(S1), S1**-alpha, -S2]) / loss[:, None]
        scale = np.linalg.norm(X, axis=0)
        scale[scale == 0] = 1.0
        coef, residual = nnls(X / scale, np.ones_like(loss))
        return coef / scale, residual

    candidates = []  # (residual, alpha, λ, S2) at each λ's best alpha
    decay_rms = {}
    for decay in decays:
        S2 = np.concatenate([schedule_areas(c.lr, decay)[1][c.steps - 1] for c in curves])
        on_grid = [profile(a, S2)[1] for a in ALPHA_GRID]
        i = int(np.argmin(on_grid))
        # The grid finds the basin; a bounded search between its neighbours finishes.
        low, high = ALPHA_GRID[max(i - 1, 0)], ALPHA_GRID[min(i + 1, len(ALPHA_GRID) - 1)]
        found = minimize_scalar(
            lambda a, S2=S2: profile(a, S2)[1],
            bounds=(low, high),
            method="bounded",
            options={"xatol": 1e-5},
        )
        alpha, residual = (
            (found.x, found.fun) if found.fun < on_grid[i] else (ALPHA_GRID[i], on_grid[i])
        )
        decay_rms[float(decay)] = float(residual / np.sqrt(len(loss)))
        candidates.append((residual, alpha, decay, S2))
    _, alpha, decay, S2 = min(candidates, key=lambda candidate: candidate[0])
    L0, A, C = profile(alpha, S2)[0]
    law = CurveLaw(float(L0), float(A), float(alpha), float(C), float(decay))
    predicted = np.concatenate([law.loss(c.lr, c.steps) for c in curves])
    rms = float(np.sqrt(np.mean((loss / predicted - 1) ** 2)))
    return CurveLawFit(law, rms, len(loss), len(curves), decay_rms)
