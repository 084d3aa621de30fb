"""The whole validation curve as data: each model size's curves fitted with the schedule-aware
law (analysis/curve_law.py), and what it predicts on the grid itself.

- From the start of a run: each size's law fitted on the first 40% of the tokens of every run
  of that size (its decay λ fixed: PREFIX_DECAY), asked for each run's final loss (what a
  run's start says about its end).
- Across schedules: where a size has runs under two schedules (a WSD grid's constant-LR trunk
  and its cooldown branches; cosine and WSD runs), the law fitted on one schedule's curves
  (with the longest run of the other where the first never anneals: a constant LR leaves the
  annealing term unidentified) predicts the other's final losses.

A run's LR at every step comes from the `lr` it logged (every few steps, linear between);
before its first logged step (a branch's trunk, a warm-up shorter than the log interval) the
first logged value holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.curve_law import Curve, CurveLawFit, fit_curve_law
from analysis.fit import FitError
from analysis.runs import Runs
from scaling.contract import BRANCH, LR, TRUNK, VAL_LOSS

PREFIX = 0.4  # the share of each run's tokens the law sees when predicting its end
# A 40% prefix holds too little annealing to choose the law's decay λ: fitted on prefixes it
# chose badly (the smoke grid's finals: median error 7.95%). 0.98 is what the whole curves of
# this project's grids choose; with it fixed the prefixes predicted the smoke grid's finals to
# 3.0% and the wsd benchmark's cosine grid's to 0.86%, where the schedule-unaware
# L0 + A·t^-alpha on steps gave 3.3% and 3.9% (measured 2026-11-30, RESULTS.md).
PREFIX_DECAY = 0.98
CONSTANT = "constant LR (trunk)"
# What fits a law to one size's curves: fit_curve_law, or another law with its signature
# (benchmarks/curve_laws.py passes the multi-power law's).
CurveFitter = Callable[..., CurveLawFit]


@dataclass
class CurvePredictions:
    """Per size the law over all its curves; the final losses predicted from 40% prefixes and
    across schedules, each with its relative error; the fitted curves, for the plot."""

    laws: dict[str, CurveLawFit | str]  # by size: the fit, or why there is none
    from_prefix: pd.DataFrame  # size, run, tokens, actual, predicted, error
    across_schedules: pd.DataFrame  # size, run, schedule, fitted_on, actual, predicted, error
    fitted: pd.DataFrame  # run_id, size, tokens, predicted: each run's curve under its size's law

    @staticmethod
    def median_error(table: pd.DataFrame) -> float | None:
        return float(table["error"].abs().median()) if len(table) else None

    def to_dict(self) -> dict:
        return {
            "law": "L(s) = L0 + A·S1(s)^(-alpha) - C·S2(s) (Tissue et al. 2024)",
            "prefix": PREFIX,
            "laws": {
                size: law if isinstance(law, str) else law.to_dict()
                for size, law in self.laws.items()
            },
            "from_prefix": self.from_prefix.to_dict("records"),
            "from_prefix_median_abs_error": self.median_error(self.from_prefix),
            "across_schedules": self.across_schedules.to_dict("records"),
            "across_schedules_median_abs_error": self.median_error(self.across_schedules),
        }


def run_curve(runs: Runs, run: pd.Series) -> Curve | None:
    """A run's validation curve with its LR at every step, in optimizer steps; None without
    the LR log or the evaluations to build one from."""
    logged, evaluated = _logged_lr(runs, run), runs.curves.get(run["run_id"])
    per_step = run.get("tokens_per_step")
    if logged is None or evaluated is None or logged.empty or evaluated.empty or not per_step:
        return None
    total = round(run["tokens"] / per_step)
    steps = np.arange(1, total + 1)
    lr = np.interp(steps, logged["tokens"] / per_step, logged[LR])
    at = np.rint(evaluated["tokens"].to_numpy(float) / per_step).astype(int)
    keep = (at >= 1) & (at <= total)
    return Curve(lr, at[keep], evaluated[VAL_LOSS].to_numpy(float)[keep])


def _logged_lr(runs: Runs, run: pd.Series) -> pd.DataFrame | None:
    """The LR a run logged; a branch's led by its trunk's up to its first logged step (it
    logs only its own steps, and its first log is already inside its cooldown)."""
    logged = runs.lrs.get(run["run_id"])
    if logged is None or run.get("kind") != BRANCH or logged.empty:
        return logged
    table = runs.table
    trunk = table[(table["name"] == run.get("trunk")) & (table["kind"] == TRUNK)]
    if trunk.empty or trunk["run_id"].iloc[0] not in runs.lrs:
        return logged
    before = runs.lrs[trunk["run_id"].iloc[0]]
    before = before[before["tokens"] < logged["tokens"].min()]
    return pd.concat([before, logged], ignore_index=True)


def _schedule(run: pd.Series) -> str:
    return CONSTANT if run.get("kind") == TRUNK else str(run.get("schedule") or "cosine")


def curve_predictions(
    runs: Runs, points: pd.DataFrame, trunks: pd.DataFrame, fit: CurveFitter = fit_curve_law
) -> CurvePredictions:
    """`points`: the runs the loss laws use (with their `size`); `trunks`: the constant-LR
    trunks of those sizes at the same length, named likewise; `fit`: the curve law."""
    laws: dict[str, CurveLawFit | str] = {}
    prefix_rows, schedule_rows, fitted = [], [], []
    for size, group in pd.concat([points, trunks]).groupby("size", sort=False):
        curves = {}
        for _, run in group.iterrows():
            curve = run_curve(runs, run)
            if curve is not None and len(curve.steps):
                curves[run["run_id"]] = (run, curve)
        if not curves:
            laws[str(size)] = "no run of this size logged its LR and validation curve"
            continue
        try:
            law = fit([curve for _, curve in curves.values()])
        except FitError as exc:
            laws[str(size)] = str(exc)
        else:
            laws[str(size)] = law
            for run_id, (run, curve) in curves.items():
                steps = np.arange(1, len(curve.lr) + 1)
                fitted.append(
                    pd.DataFrame(
                        {
                            "run_id": run_id,
                            "size": size,
                            "tokens": steps * run["tokens_per_step"],
                            "predicted": law.law.loss(curve.lr, steps),
                        }
                    )
                )
        prefix_rows.extend(_from_prefix(str(size), curves, fit))
        schedule_rows.extend(_across_schedules(str(size), curves, fit))
    return CurvePredictions(
        laws,
        pd.DataFrame(
            prefix_rows, columns=["size", "run", "tokens", "actual", "predicted", "error"]
        ),
        pd.DataFrame(
            schedule_rows,
            columns=["size", "run", "schedule", "fitted_on", "actual", "predicted", "error"],
        ),
        pd.concat(fitted, ignore_index=True)
        if fitted
        else pd.DataFrame(columns=["run_id", "size", "tokens", "predicted"]),
    )


def _final(run: pd.Series, curve: Curve, law: CurveLawFit) -> dict:
    actual = float(curve.loss[-1])
    predicted = float(law.law.loss(curve.lr, [curve.steps[-1]])[0])
    return {"run": run["name"], "actual": actual, "predicted": predicted,
            "error": predicted / actual - 1}  # fmt: skip


def _from_prefix(size: str, curves: dict, fit: CurveFitter) -> list[dict]:
    """Each run's final loss from the first 40% of every run of its size (trunks included:
    their start is as informative as any run's)."""
    prefixes = [curve.up_to(int(PREFIX * len(curve.lr))) for _, curve in curves.values()]
    try:
        law = fit([p for p in prefixes if len(p.steps)], decays=(PREFIX_DECAY,))
    except FitError:
        return []
    return [
        {"size": size, "tokens": float(run["tokens"]), **_final(run, curve, law)}
        for run, curve in curves.values()
        if run.get("kind") != TRUNK and curve.steps[-1] > PREFIX * len(curve.lr)
    ]


def _across_schedules(size: str, curves: dict, fit: CurveFitter) -> list[dict]:
    """Each schedule's final losses from the law fitted on the size's other schedules' curves
    (and the longest run of its own, where the others never anneal)."""
    by_schedule: dict[str, list] = {}
    for run, curve in curves.values():
        by_schedule.setdefault(_schedule(run), []).append((run, curve))
    if len(by_schedule) < 2:
        return []
    rows = []
    for schedule, targets in by_schedule.items():
        others = [pair for name, pairs in by_schedule.items() if name != schedule for pair in pairs]
        fitted_on = sorted({_schedule(run) for run, _ in others})
        if all(_schedule(run) == CONSTANT for run, _ in others):
            longest = max(targets, key=lambda pair: pair[0]["tokens"])
            others, targets = [*others, longest], [t for t in targets if t is not longest]
            fitted_on.append(f"{longest[0]['name']} ({schedule})")
        try:
            law = fit([curve for _, curve in others])
        except FitError:
            continue
        for run, curve in targets:
            row = {"size": size, "schedule": schedule, "fitted_on": " + ".join(fitted_on)}
            rows.append({**row, **_final(run, curve, law)})
    return rows
