"""What a grid is doing, on the driver's terminal: a live table, or plain lines when stdout
is not a terminal (or with --quiet)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
        if not self.live and VAL_LOSS in result:
            self.line(f"{name}: {VAL_LOSS} {result[VAL_LOSS]:.4f} at {result[STEP]:,} tokens")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        self._set(trial, result_status(result), result.get(RESULT_ERROR))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
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
        for column in ("trial", "status", "tokens", TRAIN_LOSS, VAL_LOSS, "tokens/s"):
            table.add_column(column, justify="left" if column in ("trial", "status") else "right")
        for name, trial in self.trials.items():
            latest = self.latest[name]
            table.add_row(
                name,
                str(self.status[name]),
                f"{latest.get(STEP, 0) / trial.tokens:.0%}",  # a branch's count includes its trunk
                f"{latest[TRAIN_LOSS]:.4f}" if TRAIN_LOSS in latest else "",
                f"{latest[VAL_LOSS]:.4f}" if VAL_LOSS in latest else "",
                f"{latest[TOKENS_PER_S]:,.0f}" if TOKENS_PER_S in latest else "",
            )
        return table
