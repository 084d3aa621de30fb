"""The driver's Tune callbacks, fed what Tune feeds them: real Tune `Trial` objects (their
results, checkpoints and error files as Tune keeps them) and result dicts as our trainables
report them, with a real MLflow store behind the tracking callback. No Ray is started."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from helpers import tiny_spec, write_spec
from mlflow import MlflowClient
from ray import tune
from ray.train._internal.session import _TrainingResult
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial
from ray.tune.result import EXPR_ERROR_FILE
from rich.console import Console

from scaling.contract import Status, grid_runs_filter
from scaling.grid import GridOutcome, TrackingCallback, run_grid, work_left
from scaling.progress import GridProgress
from scaling.spec import expand, parse
from scaling.tracking import Tracker

SPEC_DICT = tiny_spec("callbacks", grid={"seq_len": [32, 64], "tokens": [32768]})
SPEC = parse(SPEC_DICT)
TRIALS = expand(SPEC)


def tune_trial(spec, storage: Path) -> Trial:
    """A Tune trial of `spec` as Tune makes one for our trainable, its files under `storage`."""
    context = StorageContext(str(storage), experiment_dir_name="grid", trial_dir_name=spec.name)
    return Trial(
        "train_function",
        config={"trial": spec.model_dump(mode="json")},
        storage=context,
        stub=True,  # not looked up in Ray's registry: no Ray runs here
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    tracker = Tracker(f"sqlite:///{folder / 'mlflow.db'}")
    experiment_id = tracker.experiment_id("callbacks")
    spec = parse(tiny_spec("callbacks"))
    spec_file = folder / "callbacks.yaml"
    spec_file.write_text("name: callbacks\n")
    parent = tracker.start_grid(experiment_id, spec, spec_file, TRIALS)
    return tracker, experiment_id, parent


def steps(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_a_retried_trial_logs_each_step_once_and_its_finished_run_carries_the_checkpoint(
    store, tmp_path
):
    tracker, experiment_id, parent = store
    callback = TrackingCallback(tracker, experiment_id, parent)
    trial = tune_trial(TRIALS[0], tmp_path / "runs")
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)

    def report(result: dict) -> None:
        trial.update_last_result(result)
        callback.on_trial_result(iteration=0, trials=[trial], trial=trial, result=result)

    report({"step": 8192, "train_loss": 4.0, "lr": 0.01, "tokens_per_s": 9e4, "mfu": 0.1})
    report({"step": 16384, "train_loss": 3.0, "lr": 0.01, "tokens_per_s": 9e4, "mfu": 0.1})
    report({"step": 16384, "val_loss": 3.1})
    # The worker died; Tune restarts the trial from its resume point at 8,192 tokens, and the
    # steps up to 16,384 are reported a second time.
    report({"step": 8192, "resumed_at": 8192})
    report({"step": 16384, "train_loss": 3.5, "lr": 0.01, "tokens_per_s": 8e4, "mfu": 0.1})
    report({"step": 16384, "val_loss": 3.2})
    report({"step": 32768, "train_loss": 2.5, "lr": 0.001, "tokens_per_s": 8e4, "mfu": 0.1})
    final = tmp_path / "final"
    final.mkdir()
    (final / "checkpoint.pt").write_bytes(b"weights")
    trial.on_checkpoint(
        _TrainingResult(checkpoint=tune.Checkpoint.from_directory(final), metrics={"step": 32768})
    )
    report(
        {
            "step": 32768,
            "val_loss": 2.6,
            "step_time_s": 0.05,
            "wall_s": 3.0,
            "decode_s_per_token_at_32": 0.001,
            "scaling_status": "FINISHED",
            "scaling_error": "",
            "precision": "bf16",
            "device": "cpu",
        }
    )
    callback.on_trial_complete(iteration=0, trials=[trial], trial=trial)

    client = tracker.client
    (run,) = client.search_runs(
        [experiment_id], f"attributes.run_name = '{TRIALS[0].name}'", max_results=5
    )
    run_id = run.info.run_id
    assert steps(client, run_id, "train_loss") == [(8192, 4.0), (16384, 3.0), (32768, 2.5)]
    assert steps(client, run_id, "val_loss") == [(16384, 3.1), (32768, 2.6)]
    assert steps(client, run_id, "resumed_at") == [(8192, 8192)]
    assert steps(client, run_id, "decode_s_per_token_at_32") == [(32768, 0.001)]
    assert run.data.tags["scaling.status"] == "FINISHED" and run.info.status == "FINISHED"
    assert run.data.tags["scaling.trial_id"] == TRIALS[0].trial_id
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["precision"] == "bf16" and run.data.params["n_layer"] == "1"
    assert [a.path for a in client.list_artifacts(run_id)] == ["checkpoint.pt"]
    assert callback.statuses == {TRIALS[0].name: "FINISHED"}


@pytest.mark.parametrize("outcome", ["error", "OOM"])
def test_a_trial_that_fails_ends_with_its_reason_and_no_checkpoint(store, tmp_path, outcome):
    tracker, experiment_id, parent = store
    callback = TrackingCallback(tracker, experiment_id, parent)
    trial = tune_trial(TRIALS[1], tmp_path / "runs")
    callback.on_trial_start(iteration=0, trials=[trial], trial=trial)
    if outcome == "error":
        # Tune keeps the traceback in the trial's folder and calls on_trial_error.
        folder = Path(trial.storage.trial_fs_path)
        folder.mkdir(parents=True)
        traceback = 'Traceback (most recent call last):\n  File "x.py"\nValueError: boom\n'
        (folder / EXPR_ERROR_FILE).write_text(traceback)
        trial.run_metadata.error_filename = EXPR_ERROR_FILE
        callback.on_trial_error(iteration=0, trials=[trial], trial=trial)
    else:
        trial.update_last_result(
            {"step": 32768, "scaling_status": "OOM", "scaling_error": "out of memory for L1"}
        )
        callback.on_trial_complete(iteration=0, trials=[trial], trial=trial)

    run = tracker.client.get_run(callback.run_ids[TRIALS[1].trial_id])
    artifacts = [a.path for a in tracker.client.list_artifacts(run.info.run_id)]
    if outcome == "error":
        assert run.data.tags["scaling.status"] == "FAILED"
        assert run.data.tags["scaling.error"] == "ValueError: boom"
        assert artifacts == ["error.txt"]
    else:
        assert run.data.tags["scaling.status"] == "OOM"
        assert run.data.tags["scaling.error"] == "out of memory for L1"
        assert artifacts == []
    assert run.info.status == "FAILED"  # MLflow's own: no trained model came of it


def test_the_progress_display_counts_the_trials_and_estimates_the_time_left(tmp_path):
    output = io.StringIO()
    console = Console(file=output, width=200)
    progress = GridProgress(TRIALS, live=False, console=console)
    first, second = (tune_trial(spec, tmp_path / "runs") for spec in TRIALS)
    progress.on_trial_start(iteration=0, trials=[first, second], trial=first)
    result = {"step": 16384, "val_loss": 3.25, "tokens_per_s": 8192.0}
    progress.on_trial_result(iteration=0, trials=[first, second], trial=first, result=result)
    # Half of the first trial's tokens left, the second's all: at the first's FLOP rate.
    remaining = TRIALS[0].flops_per_token * 16384 + TRIALS[1].flops_per_token * 32768
    assert progress.eta_seconds() == pytest.approx(remaining / (TRIALS[0].flops_per_token * 8192))
    first.update_last_result({"step": 32768, "scaling_status": "FINISHED"})
    progress.on_trial_complete(iteration=0, trials=[first, second], trial=first)
    progress.on_trial_error(iteration=0, trials=[first, second], trial=second)
    lines = [line.split("] ", 1)[1] for line in output.getvalue().splitlines()]
    assert lines == [
        f"{TRIALS[0].name}: RUNNING; 1 pending, 1 running",
        f"{TRIALS[0].name}: val_loss 3.2500 at 16,384 tokens",
        f"{TRIALS[0].name}: FINISHED, val_loss 3.2500; 1 pending, 0 running, 1 finished",
        f"{TRIALS[1].name}: FAILED; 0 pending, 0 running, 1 finished, 1 failed",
    ]
    console.print(progress)  # the live table, as rich draws it
    table = output.getvalue().split("\n", len(lines))[-1]
    assert "0 pending, 0 running" in table and "3.2500" in table and "FAILED" in table


def test_a_grid_whose_trials_all_ended_as_results_is_ok_and_one_failure_is_not():
    """`scaling run` exits 0 when `ok`: a diverged or out-of-memory point is a result."""
    results = {"a": Status.FINISHED, "b": Status.DIVERGED, "c": Status.OOM}
    assert GridOutcome("parent", statuses=results).ok
    assert not GridOutcome("parent", statuses={**results, "d": Status.FAILED}).ok
    assert not GridOutcome("parent", statuses=results, interrupted=True).ok


def test_a_run_tagged_finished_whose_driver_died_before_closing_it_is_not_finished(tmp_path):
    """end_trial tags FINISHED, uploads the checkpoint, then terminates the run: a driver
    killed in between leaves no checkpoint, so a rerun must train that trial again."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = tracker.experiment_id("callbacks")
    spec_file = tmp_path / "callbacks.yaml"
    spec_file.write_text("name: callbacks\n")
    parent = tracker.start_grid(experiment_id, parse(tiny_spec("callbacks")), spec_file, TRIALS)
    done, half = (tracker.start_trial(experiment_id, parent, t) for t in TRIALS)
    tracker.end_trial(done, Status.FINISHED)
    tracker.client.set_tag(half, "scaling.status", "FINISHED")  # and then the SIGKILL
    assert tracker.finished_trial_ids("callbacks") == {TRIALS[0].trial_id}


def finished_grid(tmp_path: Path) -> tuple[Tracker, str, Path, str]:
    """A store where one grid run trained every trial of TRIALS to FINISHED; returns the
    tracker, the experiment's id, the spec file and the grid run's id."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = tracker.experiment_id("callbacks")
    spec_file = write_spec(tmp_path / "callbacks.yaml", SPEC_DICT)
    parent = tracker.start_grid(experiment_id, SPEC, spec_file, TRIALS)
    for trial in TRIALS:
        tracker.end_trial(tracker.start_trial(experiment_id, parent, trial), Status.FINISHED)
    tracker.end_grid(parent)
    return tracker, experiment_id, spec_file, parent


def test_a_rerun_with_nothing_left_to_do_starts_nothing_and_makes_no_grid_run(tmp_path):
    tracker, experiment_id, spec_file, parent = finished_grid(tmp_path)
    outcome = run_grid(SPEC, spec_file, TRIALS, tracker, str(tmp_path / "runs"))
    assert outcome.parent_run_id is None and outcome.ok
    assert outcome.skipped == [t.name for t in TRIALS] and outcome.statuses == {}
    grids = tracker.client.search_runs([experiment_id], grid_runs_filter())
    assert [grid.info.run_id for grid in grids] == [parent]
    assert not ray.is_initialized()


def test_a_grid_that_gains_a_length_has_only_that_length_left_to_run(tmp_path):
    tracker, _, _, _ = finished_grid(tmp_path)
    grown = parse(tiny_spec("callbacks", grid={"seq_len": [32, 64, 128], "tokens": [32768]}))
    trials = expand(grown)
    work = work_left(grown, trials, tracker, str(tmp_path / "runs"))
    assert [t.name for t in work.todo] == [t.name for t in trials if t.seq_len == 128]
    assert work.skipped == [t.name for t in TRIALS]
    # What the progress display is given: only the trial left, so it counts one pending.
    progress = GridProgress(work.todo, live=False, console=Console(file=io.StringIO()))
    assert progress.summary() == "1 pending, 0 running"


def test_a_report_attaches_to_the_latest_grid_run_that_holds_trials(tmp_path):
    """An older store holds the empty grid runs its reruns made when nothing was left to run,
    and a grid run may have been started from a spec edited since: the report skips both."""
    tracker, experiment_id, _, parent = finished_grid(tmp_path)
    (tmp_path / "later").mkdir()
    edited_dict = tiny_spec("callbacks", grid={"seq_len": [32], "tokens": [32768]})
    edited_file = write_spec(tmp_path / "later" / "callbacks.yaml", edited_dict)
    edited = parse(edited_dict)
    time.sleep(0.01)  # start times are in milliseconds: the empty run is the newer
    empty = tracker.start_grid(experiment_id, edited, edited_file, expand(edited))
    tracker.end_grid(empty)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# Scaling report: callbacks\n")
    assert tracker.attach_report("callbacks", report) == parent
    assert tracker.grid_spec("callbacks") == SPEC  # the spec the trials were run with


def test_the_hopeless_stopper_judges_each_trial_against_its_cell_past_its_grace(tmp_path):
    """Two LRs of one WSD grid point (budgets of 10 and 20 steps): each trial is compared with
    its cell's best at the same tokens, never before its grace, never a trunk, and a branch
    not on its first report (its trunk's loss at the peak LR) nor before its cooldown's grace."""
    from scaling.grid import HopelessStopper
    from scaling.spec import SearchSpec

    raw = tiny_spec("stopper", grid={"seq_len": [64], "tokens": [40960, 81920],
                                     "lr": [1e-2, 1e-3]}, train={"schedule": "wsd"})  # fmt: skip
    runs = {t.name: t for t in expand(parse(raw))}
    stopper = HopelessStopper(SearchSpec(grace_fraction=0.3, margin=0.05))

    def report(name: str, tokens: int, loss: float) -> str:
        trial = tune_trial(runs[name], tmp_path)
        return stopper.on_trial_result(None, trial, {"step": tokens, "val_loss": loss})

    good, bad = "L1-d32-T64-D81.9K-lr0.01-s0", "L1-d32-T64-D81.9K-lr0.001-s0"
    assert runs[bad].branch_at == 65536  # branches leave their trunks at 80%
    assert report(good, 65536, 3.0) == "CONTINUE"
    assert report(bad, 65536, 4.0) == "CONTINUE"  # its trunk's loss: not judged
    assert report(good, 73728, 2.9) == "CONTINUE"
    assert report(bad, 73728, 3.5) == "STOP"  # past 30% of its own 16K cooldown tokens
    assert "above the best of its cell there, 2.9000" in next(iter(stopper.stopped.values()))
    trunk = "L1-d32-T64-trunk-lr0.001-s0"
    assert report("L1-d32-T64-trunk-lr0.01-s0", 32768, 3.0) == "CONTINUE"
    assert report(trunk, 32768, 9.0) == "CONTINUE"  # trunks are never stopped
    plain = tiny_spec("plain", grid={"seq_len": [64], "tokens": [81920], "lr": [1e-2, 1e-3]})
    runs.update({t.name: t for t in expand(parse(plain))})
    assert report("L1-d32-T64-lr0.01-s0", 16384, 3.0) == "CONTINUE"
    assert report("L1-d32-T64-lr0.001-s0", 16384, 5.0) == "CONTINUE"  # 20% in: within grace
    assert report("L1-d32-T64-lr0.01-s0", 32768, 2.8) == "CONTINUE"
    assert report("L1-d32-T64-lr0.001-s0", 32768, 2.9) == "CONTINUE"  # within the 5% margin
    assert report("L1-d32-T64-lr0.001-s0", 32768, 2.95) == "STOP"
    # A cell's run that finished in an earlier run of the grid competes by its curve; a
    # branch's curve only past its branch point.
    stopper = HopelessStopper(SearchSpec(grace_fraction=0.3, margin=0.05))
    stopper.remember(runs[good], {65536: 1.0, 73728: 2.9, 81920: 2.8})
    assert stopper.best[runs[good].cell] == {73728: 2.9}
    assert report(bad, 73728, 3.5) == "STOP"


def test_past_40_percent_a_running_trial_shows_the_final_loss_its_curve_predicts(tmp_path):
    """Two budgets of one model under cosine, their validation curves drawn from a known
    curve law: once the longer trial passes 40% of its tokens, the display predicts its final
    loss from the curves so far; before, and once the trial has finished, it shows none."""
    from analysis.curve_law import CurveLaw

    spec = tiny_spec("predict", grid={"seq_len": [64], "tokens": [409600, 1024000]},
                     train={"tokens_per_step": 2048, "warmup_tokens": 20480})  # fmt: skip
    short, long = expand(parse(spec))
    law = CurveLaw(L0=2.0, A=0.8, alpha=0.4, C=1.5, decay=0.98)
    output = io.StringIO()
    progress = GridProgress([short, long], live=False, console=Console(file=output, width=200))
    trials = [tune_trial(t, tmp_path / "runs") for t in (short, long)]

    def evaluate(index: int, step: int) -> None:
        spec = (short, long)[index]
        lr = spec.train.lr * np.array([spec.lr_factor(s) for s in range(spec.steps)])
        result = {"step": step * 2048, "val_loss": float(law.loss(lr, [step])[0])}
        progress.on_trial_result(iteration=0, trials=trials, trial=trials[index], result=result)

    for step in range(10, short.steps + 1, 10):
        evaluate(0, step)
    for step in range(10, 190, 10):  # up to 36% of the longer trial
        evaluate(1, step)
    assert long.name not in progress.predicted
    evaluate(1, 210)  # 41%
    lr = long.train.lr * np.array([long.lr_factor(s) for s in range(long.steps)])
    truth = float(law.loss(lr, [long.steps])[0])
    assert progress.predicted[long.name] == pytest.approx(truth, rel=0.01)
    assert f"predicted final {progress.predicted[long.name]:.4f}" in output.getvalue()
    trials[1].update_last_result({"step": 1024000, "scaling_status": "FINISHED"})
    progress.on_trial_complete(iteration=0, trials=trials, trial=trials[1])
    assert long.name not in progress.predicted
