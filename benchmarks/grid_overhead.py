"""What the orchestration costs around the training itself.

A grid of 8 tiny trials at concurrency 2 on an embedded Ray, tracked in a fresh SQLite store
through the spool (as `scaling run` writes), and once more straight to the store:
  - per-trial start overhead: the driver's start of the trial to the trial's first training step;
  - per-trial end overhead: the trial's last training step to the driver's final MLflow write;
  - makespan against the ideal, sum(training time) / concurrency.
Targets: median per-trial overhead (start + end) <= 1 s; makespan <= 1.15 x ideal.
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ray import tune

from scaling.cli import configure
from scaling.data import prepare
from scaling.hardware import cpu_model
from scaling.spec import expand, parse

CONCURRENCY = 2
SPEC = {
    "name": "grid-overhead",
    "model": {"sizes": [{"n_layer": 2, "d_model": 64, "n_head": 2}]},
    "grid": {"seq_len": [64, 128], "tokens": [262144], "seeds": [0, 1, 2, 3]},
    "train": {"tokens_per_step": 8192, "eval_interval_tokens": 65536, "eval_tokens": 8192},
    "resources": {"cpus_per_trial": 1},
}


class Timings(tune.Callback):
    """Driver-side clock; registered after the tracking callback, so a trial's completion
    here comes after its last MLflow write."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.results: dict[str, dict] = {}

    def __getstate__(self) -> dict:
        return {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started.setdefault(trial.config["trial"]["name"], time.time())

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        name = trial.config["trial"]["name"]
        self.completed[name] = time.time()
        self.results[name] = trial.last_result


def measure(spec, trials, spooled: bool) -> dict:
    """One run of the grid in a fresh store: its writes journaled in a spool, as `scaling run`
    writes them, or straight to the store."""
    from scaling import grid
    from scaling.tracking import Tracker

    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # a SQLite store keeps its artifacts in ./mlruns: here, not the checkout
        spec_path = Path(folder) / "grid-overhead.yaml"
        spec_path.write_text(json.dumps(SPEC))
        tracker = Tracker(f"sqlite:///{folder}/mlflow.db")
        if spooled:
            tracker.spool_in(Path(folder) / "spool", spec.experiment)
        timings = Timings()
        began = time.time()
        outcome = grid.run_grid(
            spec,
            spec_path,
            trials,
            tracker,
            f"{folder}/runs",
            max_concurrent=CONCURRENCY,
            callbacks=[timings],
        )
        makespan = time.time() - began
        tracker.stop_beating()
    if not outcome.ok:
        statuses = {name: str(status) for name, status in outcome.statuses.items()}
        sys.exit(f"the benchmark grid did not finish: {statuses}")
    start_overhead, end_overhead, training = [], [], []
    for name, result in timings.results.items():
        start_overhead.append(result["first_step_at"] - timings.started[name])
        end_overhead.append(timings.completed[name] - result["last_step_at"])
        training.append(result["last_step_at"] - result["first_step_at"])
    total = [a + b for a, b in zip(start_overhead, end_overhead)]
    ideal = sum(training) / CONCURRENCY
    return {
        "median_start_overhead_s": round(statistics.median(start_overhead), 3),
        "median_end_overhead_s": round(statistics.median(end_overhead), 3),
        "median_overhead_s": round(statistics.median(total), 3),
        "max_overhead_s": round(max(total), 3),
        "first_trial_start_overhead_s": round(max(start_overhead), 3),
        "until_first_trial_start_s": round(min(timings.started.values()) - began, 2),
        "after_last_trial_complete_s": round(began + makespan - max(timings.completed.values()), 2),
        "makespan_s": round(makespan, 2),
        "ideal_makespan_s": round(ideal, 2),
        "makespan_over_ideal": round(makespan / ideal, 3),
        # Workers start (importing torch and Lightning) once, before the first trial.
        "makespan_after_worker_start_over_ideal": round(
            (max(timings.completed.values()) - min(timings.started.values())) / ideal, 3
        ),
    }


def main() -> None:
    configure()  # the `scaling` command's environment: Tune's output and MLflow's kept quiet
    from scaling import grid

    spec = parse(SPEC)
    trials = expand(spec)
    prepare(spec.data, progress=False)
    grid.connect(None)  # before the clock starts: Ray's start-up is not the grid's overhead
    # Straight to the store, then journaled: the spool's cost, measured in one run.
    direct, spooled = measure(spec, trials, spooled=False), measure(spec, trials, spooled=True)
    print(
        json.dumps(
            {
                "benchmark": "grid_overhead",
                "cpu": cpu_model(),
                "trials": len(trials),
                "concurrency": CONCURRENCY,
                **spooled,
                "direct_to_the_store": direct,
                "target_median_overhead_s": 1.0,
                "target_makespan_over_ideal": 1.15,
            }
        )
    )


if __name__ == "__main__":
    main()
