"""One verdict across the three approaches: the compute-optimal exponent a (N_opt ∝ C^a) and
the loss predicted at each budget, each approach's value and interval, a consensus, and in
plain words whether they agree and, where one does not, the likely reason.

The consensus is the precision-weighted mean of the approaches' values (weights 1/width² of
their 95% intervals), with the same weighted mean of their intervals' ends as its interval:
the approaches are fitted on one grid's runs, so their errors are not independent and
combining them does not narrow the interval as independent estimates would. Two approaches
agree when their intervals overlap; where some do not, the one without which the rest all
agree disagrees (with two, or no such one, every approach in a non-overlapping pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.cautions import EXPONENT
from analysis.fit import ChinchillaFit
from analysis.frontier import NEIGHBOURS, ComputeOptimal

APPROACHES = ("approach 1", "approach 2", "approach 3")


@dataclass(frozen=True)
class Estimate:
    approach: str
    value: float
    interval: tuple[float, float] | None


@dataclass(frozen=True)
class Agreement:
    """The estimates of one quantity, their consensus, and who disagrees."""

    estimates: list[Estimate]
    consensus: Estimate | None
    disagreeing: list[str]

    def to_dict(self) -> dict:
        def one(e: Estimate | None):
            return None if e is None else {"value": e.value, "ci95": e.interval}

        return {
            "by_approach": {e.approach: one(e) for e in self.estimates},
            "consensus": one(self.consensus),
            "disagreeing": self.disagreeing,
        }


@dataclass
class Verdict:
    a: Agreement
    losses: dict[float, Agreement]  # by budget (FLOPs)
    reasons: dict[str, str]  # approach -> the likely reason it disagrees or was refused
    text: str
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "consensus_rule": "precision-weighted mean of the approaches' values and of their "
            "intervals' ends (weights 1/width^2); two approaches agree when their intervals "
            "overlap, and the one without which the others all agree disagrees",
            "a": self.a.to_dict(),
            "loss": {f"{C:.3g}": agreement.to_dict() for C, agreement in self.losses.items()},
            "verdict": self.text,
            "reasons": self.reasons,
            "refused": self.refused,
        }


def consensus(estimates: list[Estimate]) -> Estimate | None:
    """The precision-weighted mean of the estimates with intervals, and of their ends."""
    usable = [(e.value, *e.interval) for e in estimates if e.interval]
    if not usable:
        return None
    # An interval of no width (a bootstrap whose every replicate agreed) weighs as the
    # narrowest one a float tells apart, not infinitely.
    widths = [max(high - low, 1e-9 * max(1.0, abs(value))) for value, low, high in usable]
    weights = np.array([1 / width**2 for width in widths])
    weights /= weights.sum()
    value, low, high = (float(np.dot(weights, column)) for column in zip(*usable))
    return Estimate("consensus", value, (low, high))


def _overlap(one: Estimate, other: Estimate) -> bool:
    if one.interval is None or other.interval is None:
        return True  # without an interval nothing says they differ
    return one.interval[0] <= other.interval[1] and other.interval[0] <= one.interval[1]


def _consistent(estimates: list[Estimate]) -> bool:
    return all(_overlap(e, o) for i, e in enumerate(estimates) for o in estimates[i + 1 :])


def agreement(estimates: list[Estimate]) -> Agreement:
    """Who disagrees: the approach without which the others' intervals all overlap."""
    ranged = [e for e in estimates if e.interval]
    disagreeing: list[str] = []
    if not _consistent(ranged):
        odd = [e for e in ranged if _consistent([o for o in ranged if o is not e])]
        if len(odd) != 1:  # two, or no single culprit: every one in a pair that does not overlap
            odd = [e for e in ranged if any(not _overlap(e, o) for o in ranged if o is not e)]
        disagreeing = [e.approach for e in odd]
    return Agreement(estimates, consensus(estimates), disagreeing)


def _reasons(
    one: ComputeOptimal | None, two: ComputeOptimal | None, three: ChinchillaFit | None
) -> dict[str, str]:
    """What in each approach's own diagnostics could explain it standing apart."""
    reasons = {}
    if one is not None:
        flops = one.points["flops"]
        reasons["approach 1"] = (
            f"its ridge brackets N_opt over {flops.max() / flops.min():.3g}x of compute, "
            f"each profile through 3 to {2 * NEIGHBOURS + 1} sizes' curves, which one run's "
            "noise moves together"
        )
    if two is not None:
        edge = [r for r in two.refused if "no interior minimum" in r]
        if edge:
            reasons["approach 2"] = (
                f"{len(edge)} budget(s) with the minimum at or beyond the edge of the sizes "
                f"tried were left out ({edge[0].split(':')[0]}), so the optima lean to the others"
            )
        elif len(two.points) < 3:
            reasons["approach 2"] = f"only {len(two.points)} budgets give a minimum"
        else:
            reasons["approach 2"] = "each budget's minimum rests on 3 sizes"
    if three is not None:
        beta = three.interval(lambda law: law.beta)
        sizes = three.n_sizes
        loose = EXPONENT.too_wide(*beta) if beta else None  # and a = beta/(alpha+beta) with it
        if beta and loose:
            reasons["approach 3"] = (
                f"a loose beta (95% interval {beta[0]:.3g} to {beta[1]:.3g}, {loose})"
            )
        elif sizes < 4:
            reasons["approach 3"] = f"too few sizes ({sizes}) for alpha"
        else:
            reasons["approach 3"] = "the law's form (E + A/N^alpha + B/D^beta) misfits the grid"
    return reasons


def verdict(
    one: ComputeOptimal | None,
    two: ComputeOptimal | None,
    three: ChinchillaFit | None,
    budgets,
    refused: dict[str, str] | None = None,
) -> Verdict:
    """The approaches that were fitted (None: refused, its reason in `refused`)."""
    a = []
    if one is not None:
        a.append(Estimate("approach 1", one.n_opt.exponent, one.n_opt.exponent_ci95))
    if two is not None:
        a.append(Estimate("approach 2", two.n_opt.exponent, two.n_opt.exponent_ci95))
    if three is not None:
        a.append(Estimate("approach 3", three.law.a, three.interval(lambda law: law.a)))
    losses = {}
    for C in budgets:
        estimates = []
        for name, result in (("approach 1", one), ("approach 2", two)):
            predicted = result.loss_at(C) if result is not None else None
            if predicted is not None:
                estimates.append(Estimate(name, *predicted))
        if three is not None:
            interval = three.interval(lambda law, C=C: float(law.loss_opt(C)))
            estimates.append(Estimate("approach 3", float(three.law.loss_opt(C)), interval))
        losses[float(C)] = agreement(estimates)
    a_agreement = agreement(a)
    reasons = _reasons(one, two, three)
    return Verdict(a_agreement, losses, reasons, _text(a_agreement, losses, reasons), refused or {})


def _text(a: Agreement, losses: dict[float, Agreement], reasons: dict[str, str]) -> str:
    fitted = [e.approach for e in a.estimates]
    ranged = [e.approach for e in a.estimates if e.interval]
    if len(fitted) < 2:
        only = fitted[0] if fitted else "none"
        return f"Only {only} could be fitted: there is nothing to compare it with."
    if len(ranged) < 2 or a.consensus is None:
        return (
            f"{' and '.join(fitted)} were fitted, but fewer than 2 have an interval for a, "
            "so they cannot be compared."
        )
    fitted = ranged
    parts = []
    if not a.disagreeing:
        parts.append(f"Consistent: the {len(fitted)} approaches' intervals for a agree.")
    else:
        for name in a.disagreeing:
            e = next(e for e in a.estimates if e.approach == name)
            parts.append(
                f"{name.capitalize()} disagrees on a ({e.value:.3g} against "
                f"{a.consensus.value:.3g} by consensus); likely: {reasons.get(name, 'unknown')}."
            )
    split = {C: g.disagreeing for C, g in losses.items() if g.disagreeing}
    if split:
        names = sorted({name for names in split.values() for name in names})
        budgets = ", ".join(f"{C:.0e}" for C in split)
        parts.append(f"On the loss at {budgets} FLOPs, {' and '.join(names)} stand(s) apart.")
    return " ".join(parts)
