"""The next run: what the fitted laws say to train at a target compute. N and D from the
Chinchilla fit's compute-optimal allocation (C = 6·N·D), the loss it predicts with its 95%
bootstrap interval, the peak LR from the LR law where the grid swept the LR, and its cost in
GPU-hours. `scaling report --target-flops` turns it into next_run.yaml, a spec to plan and run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from analysis.analyse import Analysis, Refused, gpu_hours
from analysis.learning_rate import LRLaw
from scaling.contract import PARAMETRIZATION


@dataclass(frozen=True)
class NextRun:
    flops: float  # C = 6·N·D
    params: float  # N_opt, non-embedding
    tokens: float  # D_opt
    loss: float
    loss_ci95: tuple[float, float] | None
    lr: float
    lr_source: str  # where the LR comes from, in words
    seq_len: int | None  # the loss laws' length
    attention: str  # and attention
    parametrization: str  # the grid's
    gpu: str
    gpu_hours: float | None  # at `mfu`; None where no MFU is known
    mfu: float | None

    def to_dict(self) -> dict:
        return {**asdict(self), "loss_ci95": list(self.loss_ci95) if self.loss_ci95 else None}


def next_run(a: Analysis, flops: float) -> NextRun | Refused:
    """The compute-optimal run at `flops`, or why the grid cannot say."""
    fit = a.chinchilla
    if isinstance(fit, Refused):
        return Refused(f"no next run: the Chinchilla fit was refused ({fit})")
    N, D = float(fit.law.n_opt(flops)), float(fit.law.d_opt(flops))
    lr, source = _learning_rate(a, N, D, flops)
    parametrizations = a.points.get(PARAMETRIZATION, pd.Series(dtype=str)).dropna()
    return NextRun(
        flops=float(flops),
        params=N,
        tokens=D,
        loss=float(fit.law.loss_opt(flops)),
        loss_ci95=fit.interval(lambda law: law.loss_opt(flops)),
        lr=lr,
        lr_source=source,
        seq_len=a.seq_len,
        attention=a.attention,
        parametrization=parametrizations.iloc[0] if len(parametrizations) else "standard",
        gpu=a.gpu,
        gpu_hours=gpu_hours(flops, a.gpu, a.mfu),
        mfu=a.mfu,
    )


def _learning_rate(a: Analysis, N: float, D: float, flops: float) -> tuple[float, str]:
    """The LR law at (N, D) where it was fitted, else LR* ∝ C^z, else the LR the grid's
    largest size trained best at (µP carries it across widths; standard does not)."""
    rates = a.learning_rates
    if rates is not None and isinstance(rates.law, LRLaw):
        law = rates.law
        return float(law(N, D)), (
            f"the LR law LR* = {law.coefficient:.3g}·N^{law.exponent_N:.3f}·D^{law.exponent_D:.3f} "
            f"fitted on {law.n_cells} cells"
        )
    if rates is not None and not isinstance(rates.compute_law, str):
        compute = rates.compute_law
        return float(compute(flops)), (
            f"LR* = {compute.coefficient:.3g}·C^{compute.exponent:.3f} over the cells"
        )
    largest = a.points[a.points["params"] == a.points["params"].max()]
    best = largest.loc[largest["val_loss"].idxmin()]
    if "lr" not in best or pd.isna(best["lr"]):
        return 3e-4, "no LR was recorded with the results: a common default, tune it"
    why = "no LR law was fitted" if rates is not None else "the grid did not sweep the LR"
    if best.get(PARAMETRIZATION) == "mup":
        caveat = "under µP the best LR holds across widths"
    else:
        caveat = "under the standard parametrization the best LR falls as width grows: tune it"
    return float(best["lr"]), f"the LR the grid's largest size trained best at ({why}; {caveat})"
