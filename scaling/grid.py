"""Run a grid's trials and record them in MLflow.

For now the trials run one after another in this process; the Ray issue replaces the loop
with Tune, feeding the same `Tracker` from a callback on the driver.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from scaling import trial as trial_lib
from scaling.spec import Spec, TrialSpec
from scaling.tracking import Tracker

log = logging.getLogger("scaling")

# Outcomes a grid accepts: the trial ran and told us something (a diverged or out-of-memory
# point is a result of the scaling study, not a failure of the tool).
ACCEPTED = {trial_lib.FINISHED, trial_lib.OOM, trial_lib.DIVERGED}


@dataclass
class GridOutcome:
    parent_run_id: str
    statuses: dict[str, str] = field(default_factory=dict)  # trial name -> status
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run of the spec

    @property
    def ok(self) -> bool:
        return all(status in ACCEPTED for status in self.statuses.values())


def trial_dir(storage: Path, trial: TrialSpec) -> Path:
    return storage / trial.experiment / f"{trial.name}-{trial.trial_id}"


def run_grid(
    spec: Spec,
    spec_path: Path,
    trials: list[TrialSpec],
    tracker: Tracker,
    storage: Path,
    echo=print,
) -> GridOutcome:
    experiment_id = tracker.experiment_id(spec.experiment)
    finished = tracker.finished_trial_ids(experiment_id)
    parent = tracker.start_grid(experiment_id, spec, spec_path, trials)
    outcome = GridOutcome(parent)
    try:
        for number, trial in enumerate(trials, 1):
            prefix = f"[{number}/{len(trials)}] {trial.name}"
            if trial.trial_id in finished:
                outcome.skipped.append(trial.name)
                echo(f"{prefix}: already FINISHED in this experiment, skipped")
                continue
            echo(f"{prefix}: training {trial.tokens:,} tokens ({trial.flops:.3g} FLOPs)")
            status, detail = _run_one(trial, experiment_id, parent, tracker, storage)
            outcome.statuses[trial.name] = status
            echo(f"{prefix}: {status}{detail}")
    except BaseException:
        tracker.end_grid(parent, "KILLED")
        raise
    tracker.end_grid(parent, "FINISHED" if outcome.ok else "FAILED")
    return outcome


def _run_one(trial, experiment_id, parent, tracker: Tracker, storage: Path) -> tuple[str, str]:
    """Runs and records one trial; returns its status and a few words on how it went."""
    run_id = tracker.start_trial(experiment_id, parent, trial)
    out_dir = trial_dir(storage, trial)
    try:
        result = trial_lib.run(trial, lambda m, _: tracker.log_metrics(run_id, m), out_dir)
    except (KeyboardInterrupt, SystemExit):
        # Lightning turns Ctrl-C into SystemExit after its own clean-up.
        tracker.kill_trial(run_id, "interrupted by the user")
        raise
    except Exception as exc:
        log.exception("trial %s failed", trial.name)
        error_file = out_dir / "error.txt"
        error_file.write_text(trial_lib.format_traceback(exc))
        tracker.end_trial(
            run_id, trial_lib.FAILED, trial_lib.format_exception(exc), artifacts=[error_file]
        )
        return trial_lib.FAILED, f" ({trial_lib.format_exception(exc)})"
    if result.metrics:
        tracker.log_metrics(run_id, {"step": trial.tokens, **result.metrics})
    artifacts = [result.checkpoint] if result.checkpoint else []
    tracker.end_trial(run_id, result.status, result.error, result.params, artifacts)
    if result.status != trial_lib.FINISHED:
        return result.status, f" ({result.error})"
    m = result.metrics
    return result.status, (
        f": val_loss {result.val_loss:.4f}, {trial.tokens / m['wall_s']:,.0f} tokens/s "
        f"overall, {m['wall_s']:.1f} s"
    )
