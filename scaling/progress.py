"""What a grid is doing, on the driver's terminal: a live table, or plain lines when stdout
is not a terminal (or with --quiet). Past 40% of its tokens a running trial shows the final
validation loss its curve so far predicts (the schedule-aware curve law fitted on the curves
of every trial of its model and length seen so far, each under its own LR schedule)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ray import tune
from rich.console import Console
from rich.live import Live
from rich.table import Table

from scaling.contract import (
    RESULT_ERROR,
    STEP,
    TOKENS_PER_S,
    TRAIN_LOSS,
    VAL_LOSS,
    Status,
    result_status,
)
from scaling.spec import TrialSpec

SHOWN = (STEP, TRAIN_LOSS, VAL_LOSS, TOKENS_PER_S)  # what the table shows of each report
PREDICT_FROM = 0.4  # the share of its tokens a trial trains before its end is predicted


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class GridProgress(tune.Callback):
    def __init__(
        self,
        trials: list[TrialSpec],
        live: bool,
        console: Console | None = None,
        tracking: Callable[[], str | None] = lambda: None,
    ):
        """`tracking` says, when writes wait for the tracking store, how many and since when."""
        self.trials = {t.name: t for t in trials}
        self.status = dict.fromkeys(self.trials, Status.PENDING)
        self.latest: dict[str, dict] = {name: {} for name in self.trials}
        self.evaluations: dict[str, list[tuple[int, float]]] = {n: [] for n in self.trials}
        self.predicted: dict[str, float] = {}  # running trials past PREDICT_FROM
        self.schedules: dict[str, np.ndarray] = {}  # each trial's LR per step, once made
        self.console = console or Console()
        self.started = time.monotonic()
        self.tracking = tracking
        self.live = Live(self, console=self.console, refresh_per_second=2) if live else None

    def __getstate__(self) -> dict:
        return {}  # Tune pickles callbacks for Tuner.restore; a terminal cannot be saved

    # Tune's events ----------------------------------------------------------------------------

    def setup(self, *args: Any, **info: Any) -> None:
        if self.live:
            self.live.start()

    def on_experiment_end(self, trials, **info) -> None:
        self.stop()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._set(trial, Status.RUNNING)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        name = trial.config["trial"]["name"]
        self.latest[name].update({k: v for k, v in result.items() if k in SHOWN})
        if VAL_LOSS not in result:
            return
        spec = self.trials[name]
        self.evaluations[name].append(
            (result[STEP] // spec.train.tokens_per_step, result[VAL_LOSS])
        )
        if PREDICT_FROM * spec.tokens <= result[STEP] < spec.tokens:
            predicted = self.predict_final(name)
            if predicted is not None:
                self.predicted[name] = predicted
        if not self.live:
            text = f"{name}: {VAL_LOSS} {result[VAL_LOSS]:.4f} at {result[STEP]:,} tokens"
            if name in self.predicted and result[STEP] < spec.tokens:
                text += f"; predicted final {self.predicted[name]:.4f}"
            self.line(text)

    def predict_final(self, name: str) -> float | None:
        """The final validation loss of trial `name`, from the curve law fitted on the curves
        so far of every trial of its model, length and peak LR; None where they cannot
        identify it (too few evaluations, none after the LR fell)."""
        from analysis.curve_law import Curve, fit_curve_law  # the analysis side, on demand
        from analysis.fit import FitError

        def key(t: TrialSpec) -> tuple:
            return (t.n_layer, t.d_model, t.n_head, t.attention, t.seq_len, t.train.lr)

        spec = self.trials[name]
        curves = []
        for other, trial in self.trials.items():
            if key(trial) == key(spec) and self.evaluations[other]:
                steps, losses = zip(*self.evaluations[other])
                curves.append(Curve(self._schedule(other), np.array(steps), np.array(losses)))
        try:
            law = fit_curve_law(curves).law
            return float(law.loss(self._schedule(name), [spec.steps])[0])
        except (FitError, Exception):  # a display must never stop the grid it shows
            return None

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.predicted.pop(trial.config["trial"]["name"], None)  # its end is known now
        result = trial.last_result or {}
        self._set(trial, result_status(result), result.get(RESULT_ERROR))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.predicted.pop(trial.config["trial"]["name"], None)
        self._set(trial, Status.FAILED)

    # ------------------------------------------------------------------------------------------

    def _set(self, trial, status: Status, detail: str | None = None) -> None:
        name = trial.config["trial"]["name"]
        self.status[name] = status
        if not self.live:
            text = f"{name}: {status}"
            if status == Status.FINISHED and VAL_LOSS in self.latest[name]:
                text += f", {VAL_LOSS} {self.latest[name][VAL_LOSS]:.4f}"
            self.line(text + (f" ({detail})" if detail else "") + f"; {self.summary()}")

    def line(self, text: str) -> None:
        self.console.print(
            f"[{_duration(time.monotonic() - self.started)}] {text}",
            highlight=False,
            soft_wrap=True,
        )

    def stop(self) -> None:
        if self.live and self.live.is_started:
            self.live.stop()

    def eta_seconds(self) -> float | None:
        """Remaining FLOPs over the FLOP rate of the trials running now."""
        remaining = rate = 0.0
        for name, trial in self.trials.items():
            if self.status[name] not in (Status.PENDING, Status.RUNNING):
                continue
            seen = max(self.latest[name].get(STEP, 0), trial.branch_at)  # a trunk trained that
            remaining += trial.flops_per_token * max(0, trial.tokens - seen)
            if self.status[name] == Status.RUNNING:
                rate += trial.flops_per_token * self.latest[name].get(TOKENS_PER_S, 0)
        return remaining / rate if rate > 0 else None

    def summary(self) -> str:
        counts = {s: 0 for s in (Status.PENDING, Status.RUNNING)}
        for status in self.status.values():
            counts[status] = counts.get(status, 0) + 1
        eta = self.eta_seconds()
        text = ", ".join(f"{n} {s.value.lower()}" for s, n in counts.items())
        text += f"; ETA {_duration(eta)}" if eta is not None else ""
        waiting = self.tracking()
        return text + (f"; {waiting}" if waiting else "")

    def __rich__(self) -> Table:
        table = Table(
            title=f"{_duration(time.monotonic() - self.started)} elapsed; {self.summary()}",
            title_justify="left",
        )
        columns = ("trial", "status", "tokens", TRAIN_LOSS, VAL_LOSS, "predicted final", "tokens/s")
        for column in columns:
            table.add_column(column, justify="left" if column in ("trial", "status") else "right")
        for name, trial in self.trials.items():
            latest = self.latest[name]
            table.add_row(
                name,
                str(self.status[name]),
                f"{latest.get(STEP, 0) / trial.tokens:.0%}",  # a branch's count includes its trunk
                f"{latest[TRAIN_LOSS]:.4f}" if TRAIN_LOSS in latest else "",
                f"{latest[VAL_LOSS]:.4f}" if VAL_LOSS in latest else "",
                f"{self.predicted[name]:.4f}" if name in self.predicted else "",
                f"{latest[TOKENS_PER_S]:,.0f}" if TOKENS_PER_S in latest else "",
            )
        return table

    def _schedule(self, name: str) -> np.ndarray:
        """The LR of each of the trial's optimizer steps, as its schedule sets it."""
        if name not in self.schedules:
            trial = self.trials[name]
            factors = [trial.lr_factor(step) for step in range(trial.steps)]
            self.schedules[name] = trial.train.lr * np.array(factors)
        return self.schedules[name]
