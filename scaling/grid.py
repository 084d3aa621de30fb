"""Ray Tune around trial.py: one Tune trial per grid point, MLflow written from the driver.

Ray is embedded (a local `ray.init` sized to this machine) unless `--address` or RAY_ADDRESS
names a cluster. Each Tune trial runs `train_function` in a reused actor, so torch and
Lightning are imported once per worker process, not once per trial. Trials report metrics
with `tune.report` and a resume point at every validation; a trial whose worker dies is
retried from its last resume point (`FailureConfig`). Only the driver writes to MLflow, via
`TrackingCallback`, so SQLite has one writer and workers need no route to the tracking store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import ray
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from scaling import branch_points, jobs
from scaling import trial as trial_lib
from scaling.contract import (
    BRANCH,
    CHECKPOINT,
    DECODE_PREFIX,
    ERROR_FILE,
    HOST,
    METRICS,
    RAY_NODE_ID,
    RESULT_BRANCH_POINT,
    RESULT_ERROR,
    RESULT_STATUS,
    RESUMED_AT,
    RUN_PARAMS,
    STEP,
    TRUNK,
    VAL_LOSS,
    Status,
    result_status,
)
from scaling.errors import InputError
from scaling.spec import SearchSpec, Spec, TrialSpec

if TYPE_CHECKING:  # the driver's side only: workers need not import MLflow
    from scaling.tracking import Tracker


@dataclass
class GridOutcome:
    parent_run_id: str | None  # None: nothing was left to run, so no grid run was made
    statuses: dict[str, Status] = field(default_factory=dict)  # trial name -> status
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run of the spec
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(s.is_result for s in self.statuses.values())


# ---------------------------------------------------------------------------------------------
# Inside a Ray worker.


def train_function(config: dict) -> None:
    """A Tune function trainable: runs one trial in this worker process."""
    trial = TrialSpec.model_validate(config["trial"])
    _run_and_report(trial, config["storage"], tune.get_checkpoint, tune.report, tune.Checkpoint)


def train_distributed(config: dict) -> None:
    """A Tune function trainable that runs one trial on `workers_per_trial` data-parallel
    workers: a Ray Train TorchTrainer launched from Tune, as Ray 2.60 documents it. Train
    restarts dead workers from their last resume point; TuneReportCallback hands the
    workers' reports (rank 0's) on to Tune, and so to the driver's MLflow callback."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial = TrialSpec.model_validate(config["trial"])
    gpus = trial.resources.gpus_per_trial
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=trial.resources.workers_per_trial,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": trial.resources.cpus_per_trial, "GPU": gpus},
        ),
        run_config=RunConfig(
            name=f"{trial.name}-{tune.get_context().get_trial_id()}",
            storage_path=config["storage"],
            # Ray's documented pairing; its type hints name another Callback base class.
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            failure_config=FailureConfig(max_failures=config["max_failures"]),
        ),
    )
    trainer.fit()


def train_worker(config: dict) -> None:
    """One data-parallel worker of `train_distributed`: Lightning with Ray's DDP strategy."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    trial = TrialSpec.model_validate(config["trial"])
    distributed = {
        "strategy": RayDDPStrategy(),
        "plugins": [RayLightningEnvironment()],
        "devices": "auto",
        "prepare": prepare_trainer,
    }
    _run_and_report(
        trial,
        config["storage"],
        ray.train.get_checkpoint,
        ray.train.report,
        ray.train.Checkpoint,
        distributed,
    )


@contextlib.contextmanager
def _starting_point(trial: TrialSpec, own: tune.Checkpoint | None, storage: str, saved: int):
    """The folder of the resume point `trial` starts from, or None for step 0: its own last
    one (Tune retrying it), or the branch point at `saved` tokens in storage (a branch's, or
    where a trunk picks up after an earlier run of the grid), whichever is further on."""
    with contextlib.ExitStack() as stack:
        start = Path(stack.enter_context(own.as_directory())) if own else None
        trunk_id = trial.trial_id if trial.kind == TRUNK else trial.trunk_id
        if trunk_id and saved > (_tokens_at(start) if start else 0):
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            start = branch_points.fetch(storage, trial.experiment, trunk_id, saved, scratch)
        yield start


def _trunk_segment(trunk: TrialSpec, storage: str) -> tuple[int, int]:
    """The tokens a trunk trains between: from the last point it saved before the first one
    its branches lack (a budget added to the grid since), to the last one they lack. What it
    saved beyond the first stays; from the last saved point on when none is lacking."""
    points = branch_points.saved(storage, trunk.experiment, trunk.trial_id)
    missing = [p for p in trunk.branch_points if p not in points]
    first = min(missing, default=trunk.tokens + 1)
    start = max((p for p in points if p < first and p <= trunk.tokens), default=0)
    return start, max(missing, default=trunk.tokens)


def _tokens_at(resume_point: Path) -> int:
    return json.loads((resume_point / trial_lib.RESUME_META).read_text())["tokens"]


def _run_and_report(
    trial, storage, get_checkpoint, report, checkpoint_type, distributed=None
) -> None:
    """Runs `trial` with resume points, reporting through `report` (tune.report in a Tune
    trial, ray.train.report in a Train worker), from the point `_starting_point` finds. A
    trunk saves each branch point to `storage` and reports it (RESULT_BRANCH_POINT)."""
    import torch

    torch.set_num_threads(max(1, int(trial.resources.cpus_per_trial)))
    if trial.name in os.environ.get("SCALING_INJECT_FAILURE", "").split(","):
        raise RuntimeError(f"failure injected into {trial.name} by SCALING_INJECT_FAILURE")

    def report_with_resume_point(metrics: dict, resume_point: Path | None) -> None:
        if resume_point and trial.kind == TRUNK and metrics[STEP] in trial.branch_points:
            branch_points.save(
                resume_point, storage, trial.experiment, trial.trial_id, metrics[STEP]
            )
            metrics = {**metrics, RESULT_BRANCH_POINT: metrics[STEP]}
        report(
            metrics,
            checkpoint=checkpoint_type.from_directory(resume_point) if resume_point else None,
        )

    saved = trial.branch_at  # the grid starts a branch once its point is saved
    if trial.kind == TRUNK:  # only the segment its branches still need
        saved, end = _trunk_segment(trial, storage)
        trial = trial.model_copy(update={"tokens": end})
    out_dir = Path(tempfile.mkdtemp(prefix=f"scaling-{trial.name}-"))
    try:
        with _starting_point(trial, get_checkpoint(), storage, saved) as start:
            resume_from = None
            if start:
                resume_from = start / trial_lib.RESUME_FILE
                meta = json.loads((start / trial_lib.RESUME_META).read_text())
                if trial.kind == BRANCH and meta["tokens"] == trial.branch_at:
                    # The branch's curve starts where it leaves its trunk.
                    report({STEP: meta["tokens"], VAL_LOSS: meta[VAL_LOSS]})
                else:  # recorded in MLflow: a resumed run shows where it picked up
                    report({STEP: meta["tokens"], RESUMED_AT: meta["tokens"]})
            result = trial_lib.run(
                trial,
                report_with_resume_point,
                out_dir,
                resume_points=True,
                resume_from=resume_from,
                distributed=distributed,
            )
        final = {
            STEP: trial.tokens,
            **result.metrics,
            **result.timeline,
            RESULT_STATUS: result.status.value,
            RESULT_ERROR: result.error or "",
            **result.params,
            HOST: socket.gethostname(),
            RAY_NODE_ID: ray.get_runtime_context().get_node_id(),
        }
        checkpoint = None
        if result.checkpoint is not None:
            final_dir = out_dir / "final"
            final_dir.mkdir()
            shutil.move(result.checkpoint, final_dir / result.checkpoint.name)
            checkpoint = checkpoint_type.from_directory(final_dir)
        report(final, checkpoint=checkpoint)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# On the driver.


class RunQueue(Searcher):
    """Hands Tune the grid's runs as it has room for them: trials and trunks in grid order,
    and each WSD branch as soon as its trunk has saved the branch's checkpoint, so branches
    train beside their still-running trunk. A branch whose trunk ended before reaching its
    point never runs: it is kept in `orphans` with the status it inherits and the trunk."""

    def __init__(self, runs: list[TrialSpec], saved: dict[str, set[int]]):
        super().__init__()
        self.waiting = list(runs)
        self.saved = defaultdict(set, saved)  # trunk_id -> the tokens of its saved points
        self.started: dict[str, TrialSpec] = {}  # Tune's trial id -> run
        self.orphans: list[tuple[TrialSpec, Status, TrialSpec]] = []  # (branch, status, trunk)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the runs are given whole: no search space, metric or mode

    def save(self, checkpoint_path: str) -> None:
        pass  # a grid resumes from MLflow and its saved branch points, not from Tune's state

    def _ready(self, run: TrialSpec) -> bool:
        if run.kind != BRANCH or not run.branch_at:
            return True
        return run.branch_at in self.saved[run.trunk_id or ""]

    def suggest(self, trial_id: str) -> dict | None:
        run = next((r for r in self.waiting if self._ready(r)), None)
        if run is None:  # nothing yet, or nothing left (Tune's FINISHED is a string)
            return None if self.waiting else Searcher.FINISHED  # type: ignore[return-value]
        self.waiting.remove(run)
        self.started[trial_id] = run
        return {"trial": run.model_dump(mode="json")}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if RESULT_BRANCH_POINT in result:
            self.saved[self.started[trial_id].trial_id].add(int(result[RESULT_BRANCH_POINT]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trunk = self.started.get(trial_id)
        if trunk is None or trunk.kind != TRUNK:
            return
        status = Status.FAILED if error else result_status(result or {})
        # A branch is its trunk up to its point: a diverged or out-of-memory trunk is that
        # result for it too; anything else (a finished trunk cannot leave one) a failure.
        inherited = status if status in (Status.DIVERGED, Status.OOM) else Status.FAILED
        for branch in [r for r in self.waiting if r.trunk_id == trunk.trial_id]:
            if not self._ready(branch):
                self.waiting.remove(branch)
                self.orphans.append((branch, inherited, trunk))


class HopelessStopper(FIFOScheduler):
    """`search.stop_hopeless`: stops a trial whose validation loss, once past its grace (a
    fraction of its budget, in tokens), is worse by more than the margin than the best loss
    its cell (the same grid point at the other LRs) reached at the same tokens. Cells compare
    at the evaluations they share, as they reach them; trunks are never stopped (branches
    wait on them), and a branch is judged on its own cooldown: its grace is that fraction of
    the tokens it trains itself (its first report is its trunk's loss, at the peak LR, where
    a higher LR can trail and then win once annealed). `stopped` holds each stopped Tune
    trial's reason. A cell's trials that finished in an earlier run of the grid compete too,
    by their recorded curves (`remember`)."""

    def __init__(self, search: SearchSpec):
        super().__init__()
        self.search = search
        self.best: dict[str, dict[int, float]] = defaultdict(dict)  # cell -> tokens -> loss
        self.stopped: dict[str, str] = {}  # Tune's trial id -> why it was stopped

    def remember(self, run: TrialSpec, curve: dict[int, float]) -> None:
        """Count a finished run's validation curve (tokens -> loss) among its cell's best."""
        best = self.best[run.cell]
        for tokens, loss in curve.items():
            if run.branch_at < tokens < run.tokens:
                best[tokens] = min(loss, best.get(tokens, loss))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        run = TrialSpec.model_validate(trial.config["trial"])
        tokens, loss = int(result.get(STEP, 0)), result.get(VAL_LOSS)
        # Not a trunk, nor a report without a loss, the final one or a branch's first (its
        # trunk's loss at the branch point).
        if run.kind == TRUNK or not isinstance(loss, (int, float)):
            return TrialScheduler.CONTINUE
        if not run.branch_at < tokens < run.tokens:
            return TrialScheduler.CONTINUE
        best = self.best[run.cell]
        rival = best.get(tokens)
        best[tokens] = loss if rival is None else min(rival, loss)
        margin = self.search.margin
        grace = run.branch_at + self.search.grace_fraction * run.trained_tokens
        if rival is None or tokens < grace:
            return TrialScheduler.CONTINUE
        if loss > rival * (1 + margin):
            self.stopped[trial.trial_id] = (
                f"stopped at {tokens} tokens: val_loss {loss:.4f} is more than {margin:.0%} "
                f"above the best of its cell there, {rival:.4f} (search.stop_hopeless)"
            )
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


class TrackingCallback(tune.Callback):
    """Feeds MLflow from Tune's events: a child run per trial, metrics as they arrive (each
    step once, even when a retried trial reports it again), the final status and artifacts."""

    def __init__(self, tracker: Tracker, experiment_id: str, parent_run_id: str):
        self.tracker, self.experiment_id, self.parent = tracker, experiment_id, parent_run_id
        self.run_ids: dict[str, str] = {}  # scaling trial_id -> MLflow run id
        self.logged: dict[str, dict[str, int]] = defaultdict(dict)  # run id -> metric -> step
        self.statuses: dict[str, Status] = {}  # trial name -> final status
        self.errors: dict[str, str] = {}  # trial name -> why it ended other than FINISHED
        self.stopped: dict[str, str] = {}  # Tune's trial id -> why a scheduler stopped it

    def __getstate__(self) -> dict:
        # Tune pickles its run config (callbacks included) for Tuner.restore. A grid resumes
        # from MLflow by trial_id instead, so the driver's live handles are not saved.
        return {}

    def run_id(self, trial) -> str:
        spec = TrialSpec.model_validate(trial.config["trial"])
        if spec.trial_id not in self.run_ids:
            self.run_ids[spec.trial_id] = self.tracker.start_trial(
                self.experiment_id, self.parent, spec
            )
        return self.run_ids[spec.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if trial.trial_id in self.stopped:  # its last result: say why, for every callback after
            result[RESULT_STATUS] = Status.STOPPED.value
            result[RESULT_ERROR] = self.stopped[trial.trial_id]
        run_id, step = self.run_id(trial), int(result.get(STEP, 0))
        last = self.logged[run_id]
        decode = [key for key in result if key.startswith(DECODE_PREFIX)]
        fresh = {
            key: result[key]
            for key in (*METRICS, *decode)
            if isinstance(result.get(key), (int, float)) and step > last.get(key, -1)
        }
        if fresh:
            self.tracker.log_metrics(run_id, {STEP: step, **fresh})
            last.update(dict.fromkeys(fresh, step))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        run_id, result = self.run_id(trial), trial.last_result or {}
        status = result_status(result)
        params = {k: result[k] for k in RUN_PARAMS if k in result}
        with tempfile.TemporaryDirectory() as scratch:
            artifacts = []
            # A multi-worker trial's checkpoint stays in Train's storage; Tune gets its path.
            checkpoint = trial.checkpoint or (
                tune.Checkpoint(result["checkpoint_path"]) if "checkpoint_path" in result else None
            )
            if status == Status.FINISHED and checkpoint is not None:
                local = checkpoint.to_directory(scratch)
                artifacts.append(Path(local) / CHECKPOINT)
            self.tracker.end_trial(
                run_id, status, result.get(RESULT_ERROR) or None, params, artifacts
            )
        self.statuses[trial.config["trial"]["name"]] = status
        if result.get(RESULT_ERROR):
            self.errors[trial.config["trial"]["name"]] = result[RESULT_ERROR]

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self.run_id(trial)
        traceback_text = _error_text(trial)
        with tempfile.TemporaryDirectory() as scratch:
            error_file = Path(scratch) / ERROR_FILE
            error_file.write_text(traceback_text)
            error = last_error_line(traceback_text)
            self.tracker.end_trial(run_id, Status.FAILED, error, artifacts=[error_file])
        self.statuses[trial.config["trial"]["name"]] = Status.FAILED
        self.errors[trial.config["trial"]["name"]] = error


def _error_text(trial) -> str:
    """The failed trial's traceback, as `trial.get_error` reads it from the grid's storage,
    else from the file Tune has just written on the driver (storage may not have it yet)."""
    text = trial.get_error()
    if not text and trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text()
    return text or "the trial failed without a traceback"


def last_error_line(traceback_text: str) -> str:
    """`ValueError: boom` from a traceback: its last unindented line that names an error."""
    lines = [line for line in traceback_text.strip().splitlines() if line and line[0] != " "]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or "Exception" in line.split(":", 1)[0]:
            return line.strip()
    return lines[-1].strip() if lines else "unknown error"


def connect(address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start Ray inside this process."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return
    if address:
        # Workers elsewhere reach S3 storage as this process does (Tune forwards the keys, but
        # not the endpoint or region an S3-compatible store needs). A job's runtime_env
        # carries them already, and Ray refuses to merge a second one that names them.
        env = {} if jobs.inside_job() else jobs.forwarded(jobs.STORAGE_ENV)
        runtime_env = {"env_vars": env} if env else None
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(
            address="local",
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            # Trials exchange only small dicts; the default store would reserve 30% of RAM.
            object_store_memory=256 * 1024**2,
        )


def check_storage(storage: str, hosts: set[str] | None = None) -> None:
    """Trial checkpoints must be reachable from every node: refuse a local path on a cluster
    whose nodes are on more than one host (`hosts`: the connected cluster's, by default).
    Nodes that share a host share its filesystem, so a local path serves them."""
    if "://" in storage:
        return
    if hosts is None:
        hosts = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    if len(hosts) > 1:
        raise InputError(
            f"--storage: '{storage}' is a local path, but the cluster spans {len(hosts)} hosts; "
            "use storage every node can reach: an s3:// or gs:// URI, or a shared "
            "filesystem (NFS) mounted at the same path on every node"
        )


def _claim(tracker: Tracker, experiment: str, parent: str) -> None:
    """Give way (withdraw this grid's run, and refuse) to a driver that started first."""
    try:
        tracker.claim(experiment, mine=parent)
    except InputError:
        tracker.withdraw_grid(parent)
        raise


def _to_run(
    trials: list[TrialSpec], finished: set[str], saved: dict[str, set[int]]
) -> list[TrialSpec]:
    """What a run of the grid has left to do: every trial and branch not FINISHED before,
    and the trunks whose branches among them need a point not saved yet."""
    todo = {t.trial_id for t in trials if t.kind != TRUNK and t.trial_id not in finished}
    needed = {
        t.trunk_id
        for t in trials
        if t.trial_id in todo and t.trunk_id and t.branch_at not in saved.get(t.trunk_id, ())
    }
    return [t for t in trials if t.trial_id in todo | needed]


@dataclass
class Work:
    """What a run of a grid has left: the trials to run, the names of those an earlier run
    finished, and each trunk's saved branch points."""

    todo: list[TrialSpec]
    skipped: list[str]
    saved: dict[str, set[int]]
    finished: set[str]  # trial ids


def work_left(spec: Spec, trials: list[TrialSpec], tracker: Tracker, storage: str) -> Work:
    """The trials not FINISHED in the experiment before (with `search.stop_hopeless`, not
    STOPPED either), and the trunks whose branches among them need a point not saved yet."""
    finished = tracker.finished_trial_ids(spec.experiment, stopped=spec.search.stop_hopeless)
    saved = {
        t.trial_id: branch_points.saved(_resolved(storage), spec.experiment, t.trial_id)
        for t in trials
        if t.kind == TRUNK
    }
    skipped = [t.name for t in trials if t.trial_id in finished and t.kind != TRUNK]
    return Work(_to_run(trials, finished, saved), skipped, saved, finished)


def _resolved(storage: str) -> str:
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def run_grid(
    spec: Spec,
    spec_path: Path,
    trials: list[TrialSpec],
    tracker: Tracker,
    storage: str,
    max_concurrent: int | None = None,
    address: str | None = None,
    callbacks: Sequence[tune.Callback] = (),
    max_failures: int = 2,
) -> GridOutcome:
    """Run the trials not FINISHED in the experiment before, on the Ray at `address` (see
    `connect`); a trial that raises or whose worker dies is retried `max_failures` times,
    from its last resume point. With nothing left to run, nothing starts: no Ray, and no grid
    run, which would otherwise become the latest grid run a report attaches itself to.

    A WSD grid's trunk runs only while a branch still needs a point it has not saved, and
    resumes from the last one it saved."""
    storage = _resolved(storage)
    work = work_left(spec, trials, tracker, storage)
    todo, skipped, saved, finished = work.todo, work.skipped, work.saved, work.finished
    tracker.claim(spec.experiment)  # before Ray starts: a second driver refuses at once
    if not todo:
        return GridOutcome(None, skipped=skipped)
    connect(address)
    check_storage(storage)  # before MLflow is written to: a refusal leaves no trace
    experiment_id = tracker.experiment_id(spec.experiment)
    parent = tracker.start_grid(experiment_id, spec, spec_path, trials)
    _claim(tracker, spec.experiment, parent)  # one started beside this one?
    tracker.beat(parent)  # until the driver's writes are in (commands.run stops it)
    outcome = GridOutcome(parent, skipped=skipped)
    tracking = TrackingCallback(tracker, experiment_id, parent)
    queue = RunQueue(todo, saved)
    scheduler = HopelessStopper(spec.search) if spec.search.stop_hopeless else None
    if scheduler is not None:
        tracking.stopped = scheduler.stopped
        done = {t.trial_id: t for t in trials if t.trial_id in finished and t.kind != TRUNK}
        for trial_id, curve in tracker.val_loss_curves(spec.experiment, set(done)).items():
            scheduler.remember(done[trial_id], curve)
    if spec.resources.workers_per_trial > 1:
        # The Tune trial only waits on its TorchTrainer and the workers hold the CPUs and GPUs;
        # Ray needs a non-empty request, so it asks for a little memory instead.
        trainable = tune.with_resources(train_distributed, {"cpu": 0, "memory": 64 * 1024**2})
    else:
        resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
        trainable = tune.with_resources(train_function, resources)
    by_trial_id = {t.trial_id: t for t in todo}
    tuner = tune.Tuner(
        trainable,
        param_space={"storage": storage, "max_failures": max_failures},
        tune_config=tune.TuneConfig(
            search_alg=queue,
            scheduler=scheduler,
            num_samples=len(todo),
            # Always a limit: without one, Tune keeps a single trial pending for a searcher,
            # and a cluster would see one trial's resource request at a time.
            max_concurrent_trials=max_concurrent or spec.resources.max_concurrent or len(todo),
            reuse_actors=True,
            trial_name_creator=lambda t: t.config["trial"]["name"],
            trial_dirname_creator=lambda t: f"{t.config['trial']['name']}-{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=f"{spec.experiment}-{parent[:8]}",
            storage_path=storage,
            # A multi-worker trial is retried by Ray Train inside it, from its resume point.
            failure_config=tune.FailureConfig(
                max_failures=0 if spec.resources.workers_per_trial > 1 else max_failures
            ),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[tracking, *callbacks],
            verbose=0,
        ),
    )
    # Again, as late as can be: a rival whose run the store took slowly is seen by now.
    _claim(tracker, spec.experiment, parent)
    try:
        tuner.fit()
    finally:
        # Whatever stopped the grid, no run is left RUNNING: unfinished trials are KILLED.
        for trial_id, run_id in tracking.run_ids.items():
            name = by_trial_id[trial_id].name
            if name not in tracking.statuses:
                tracker.kill_trial(run_id, "the grid stopped before this trial finished")
                outcome.interrupted = True
        outcome.statuses.update(tracking.statuses)
        # Branches whose trunk ended early are recorded with its reason, not left missing.
        for branch, status, trunk in queue.orphans:
            reason = f"its trunk {trunk.name} ended {tracking.statuses.get(trunk.name)} before "
            reason += f"{branch.branch_at} tokens: {tracking.errors.get(trunk.name, 'no reason')}"
            run_id = tracker.start_trial(experiment_id, parent, branch)
            tracker.end_trial(run_id, status, reason)
            tracking.run_ids[branch.trial_id] = run_id
            outcome.statuses[branch.name] = status
        outcome.interrupted |= any(t.trial_id not in tracking.run_ids for t in todo)
        status = Status.FINISHED if outcome.ok else Status.FAILED
        tracker.end_grid(parent, Status.KILLED if outcome.interrupted else status)
    return outcome
