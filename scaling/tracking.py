"""MLflow, written by the driver only: an experiment per spec, a parent run per `scaling run`,
a child run per trial.

Everything here takes plain dicts and ids, so the sequential runner and a Ray Tune callback
on the driver feed it the same way. MlflowClient (not the fluent API) because several trials'
runs are open at once and none of them is "the active run".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote

import mlflow
import psutil
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from scaling import spec as spec_lib
from scaling.contract import (
    BASE_WIDTH,
    BRANCH,
    BRANCH_AT,
    CHECKPOINT,
    DRIVER,
    ERROR,
    GRID,
    HEARTBEAT,
    KIND,
    LR_PARAM,
    PARAMETRIZATION,
    PARENT_RUN_ID,
    REPORT_ARTIFACTS,
    ROLE,
    SCHEDULE_PARAMS,
    SPEC_FILE,
    STATUS,
    STEP,
    TRIAL,
    TRIAL_ID,
    TRIAL_PARAMS,
    TRUNK_NAME,
    VAL_LOSS,
    WHERE_THE_STORE_IS,
    NoSuchExperiment,
    Status,
    grid_runs_filter,
    latest_trial_runs,
    trial_runs_filter,
)
from scaling.errors import InputError, first_line
from scaling.spec import Spec, TrialSpec
from scaling.spool import Spool

RUNNING = RunStatus.to_string(RunStatus.RUNNING)  # MLflow's run status, not a trial's


HEARTBEAT_S = float(os.environ.get("SCALING_HEARTBEAT_S", 30))  # how often a driver says so
STALE_AFTER_S = 4 * HEARTBEAT_S  # a driver on another host silent this long has died


def driver_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# sqlite:///relative or sqlite:////absolute, with or without SQLAlchemy's driver
# (sqlite+pysqlite:///...), and perhaps ?options after the file.
SQLITE_URI = re.compile(r"sqlite(\+\w+)?:///(?P<path>[^?]*)")


def _sqlite_file(tracking_uri: str) -> Path | None:
    """The file of a SQLite store's URI, else None."""
    found = SQLITE_URI.match(tracking_uri)
    return Path(unquote(found["path"])) if found else None


def refuse_missing_store(tracking_uri: str) -> None:
    """TrackingError if `tracking_uri` names a SQLite file that is not there: MLflow would
    create an empty store on sight, and a command that only reads must leave none behind."""
    path = _sqlite_file(tracking_uri)
    if path is not None and not path.exists():
        raise TrackingError(f"no tracking store at {path}: {WHERE_THE_STORE_IS}")


@contextlib.contextmanager
def _creating(tracking_uri: str) -> Iterator[None]:
    """Two drivers opening a new SQLite store at once would both create its tables, and one
    would fail: the first use of a SQLite store holds a lock on the folder it lies in."""
    path = _sqlite_file(tracking_uri)
    if path is None or not path.parent.is_dir():
        yield
        return
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # and the lock with it


def _driver_alive(grid) -> bool:
    host, _, pid = grid.data.tags.get(DRIVER, "").rpartition(":")
    if host == socket.gethostname():
        if not pid.isdigit() or int(pid) == os.getpid():
            return False
        try:  # a process started after the grid run is not its driver, but a reused pid
            started = psutil.Process(int(pid)).create_time()
        except psutil.Error:
            return False
        return started <= grid.info.start_time / 1000 + 1
    beat = grid.data.tags.get(HEARTBEAT)
    last = float(beat) if beat else grid.info.start_time / 1000
    return time.time() - last < STALE_AFTER_S


def _driver_running(grid, experiment: str) -> str:
    host, _, pid = grid.data.tags.get(DRIVER, "?:?").rpartition(":")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(grid.info.start_time / 1000))
    return (
        f"experiment '{experiment}' is being run by another driver: host {host}, pid {pid}, "
        f"since {since} (grid run {grid.info.run_id}); wait for it, or stop it first"
    )


class TrackingError(InputError):
    """The tracking store cannot be used; the message is the one line the user sees."""


def trial_params(trial: TrialSpec) -> dict[str, str]:
    """The contract's trial params, then the rest of the resolved config, flattened."""
    params = {key: getattr(trial, key) for key in TRIAL_PARAMS}
    params.update({key: getattr(trial.train, key) for key in SCHEDULE_PARAMS})
    params.update({LR_PARAM: trial.train.lr, PARAMETRIZATION: trial.parametrization})
    if trial.base_width is not None:
        params[BASE_WIDTH] = trial.base_width
    if trial.kind == BRANCH:
        params[BRANCH_AT] = trial.branch_at
    params.update(
        steps=trial.steps,
        batch_size=trial.batch_size,
        micro_batch_size=trial.micro_batch_size,
        accumulate_grad_batches=trial.accumulate_grad_batches,
    )
    for section in ("train", "data", "resources"):
        for key, value in getattr(trial, section).model_dump(mode="json").items():
            if value is not None and key not in SCHEDULE_PARAMS:
                params[f"{section}.{key}"] = value
    return {key: str(value) for key, value in params.items()}


class Tracker:
    """Reads through MlflowClient; writes through `writer`: the client itself, or once a grid
    starts (`spool_in`) a Spool, which journals them and lets none fail for want of a store."""

    def __init__(self, tracking_uri: str | None = None, create: bool = True):
        """Without `create` (a command that only reads), a SQLite store that is not there is
        refused (TrackingError) instead of made."""
        uri = tracking_uri or mlflow.get_tracking_uri()
        if not create:
            refuse_missing_store(uri)
        with _creating(uri):
            self.client = MlflowClient(uri)
        self.tracking_uri = self.client.tracking_uri
        self.writer: MlflowClient | Spool = self.client
        self._beating = threading.Event()  # set: no heartbeat runs

    def spool_in(self, folder: Path, experiment: str) -> Spool:
        """From now on, journal every write in `folder` (see spool.py)."""
        self.writer = Spool(folder, self.client, experiment)
        return self.writer

    def check_reachable(self, timeout_s: float = 10) -> None:
        """Fail before any trial starts if the store cannot be reached or opened."""
        try:
            if self.tracking_uri.startswith(("http://", "https://")):
                # One plain request: MLflow's client would retry with back-off for minutes.
                url = self.tracking_uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
                try:
                    urllib.request.urlopen(f"{url}?max_results=1", timeout=timeout_s).close()
                except urllib.error.HTTPError:
                    pass  # it answered; the client below brings any credentials it needs
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise TrackingError(
                f"--tracking-uri: cannot use tracking store {self.tracking_uri}: {first_line(exc)}"
            ) from None

    def experiment_id(self, name: str, create: bool = True) -> str:
        """The experiment's id, made if need be; without `create`, NoSuchExperiment."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        if not create:
            raise NoSuchExperiment(name, self.tracking_uri)
        try:
            return self.client.create_experiment(name)
        except MlflowException as exc:  # another driver made it just now
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.experiment_id(name, create=False)

    def latest_trial_runs(self, experiment: str) -> list:
        """Each trial's latest run in the experiment named `experiment`."""
        return latest_trial_runs(self.client, self.experiment_id(experiment, create=False))

    def attach_report(self, experiment: str, folder: Path) -> str | None:
        """Log a report's files to the experiment's latest grid run that holds trials, where
        the dashboard shows them; returns that run's id (None when no grid ran a trial)."""
        grid = self._latest_grid_run(experiment)
        if grid is None:
            return None
        self.client.log_artifacts(grid.info.run_id, str(folder), artifact_path=REPORT_ARTIFACTS)
        return grid.info.run_id

    def grid_spec(self, experiment: str) -> Spec | None:
        """The spec the experiment's latest grid run that holds trials was started with, as it
        was then (None when no grid ran a trial, or its spec cannot be read back)."""
        grid = self._latest_grid_run(experiment)
        if grid is None or SPEC_FILE not in grid.data.tags:
            return None
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = self.client.download_artifacts(
                    grid.info.run_id, grid.data.tags[SPEC_FILE], scratch
                )
                return spec_lib.load(path)[0]
            except (MlflowException, OSError, spec_lib.SpecError):
                return None

    def _latest_grid_run(self, experiment: str):
        """The newest grid run with a trial run under it: older versions made an empty grid
        run for a rerun that had nothing left to run."""
        experiment_id = self.experiment_id(experiment, create=False)
        grids = self.client.search_runs(
            [experiment_id], grid_runs_filter(), order_by=["attributes.start_time DESC"]
        )
        for grid in grids:
            if self.client.search_runs(
                [experiment_id], trial_runs_filter(grid.info.run_id), max_results=1
            ):
                return grid
        return None

    def download_checkpoint(self, run_id: str, into: str | Path) -> Path:
        """A finished trial's checkpoint, downloaded into `into`."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            raise TrackingError(f"RUN_ID: no run '{run_id}' in {self.tracking_uri}") from None
        name = run.info.run_name
        if run.data.tags.get(ROLE) != TRIAL:
            raise TrackingError(f"RUN_ID: run '{run_id}' ({name}) is not a trial of a grid")
        status = run.data.tags.get(STATUS)
        if status != Status.FINISHED:
            raise TrackingError(
                f"RUN_ID: trial {name} ended {status}, so it left no checkpoint to sample from"
            )
        try:
            local = self.client.download_artifacts(run_id, CHECKPOINT, str(into))
        except MlflowException as exc:
            raise TrackingError(f"RUN_ID: trial {name} has no {CHECKPOINT}: {exc}") from None
        return Path(local)

    def val_loss_curves(self, experiment: str, trial_ids: set[str]) -> dict[str, dict[int, float]]:
        """The validation loss by tokens of each of `trial_ids` whose latest run in the
        experiment FINISHED (what an earlier run of the grid measured). Reads only."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None or not trial_ids:
            return {}
        curves = {}
        for run in latest_trial_runs(self.client, found.experiment_id):
            tags = run.data.tags
            if tags.get(TRIAL_ID) in trial_ids and tags.get(STATUS) == Status.FINISHED:
                history = self.client.get_metric_history(run.info.run_id, VAL_LOSS)
                curves[tags[TRIAL_ID]] = {m.step: m.value for m in history}
        return curves

    def finished_trial_ids(self, experiment: str, stopped: bool = False) -> set[str]:
        """The trial ids with a FINISHED run in the experiment named `experiment` (none when
        there is no such experiment yet), and with `stopped` the STOPPED ones: a grid that
        stops hopeless trials does not train them again. Reads only: nothing is created."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return set()
        # MLflow's own status too: end_trial terminates a run last, after its checkpoint is
        # uploaded, so a driver killed in between leaves the tag without the checkpoint.
        runs = self.client.search_runs(
            [found.experiment_id],
            f"{trial_runs_filter()} and tags.`{STATUS}` = '{Status.FINISHED}' "
            f"and attributes.status = '{Status.FINISHED.mlflow_status}'",
            max_results=50000,
        )
        if stopped:
            runs += self.client.search_runs(
                [found.experiment_id],
                f"{trial_runs_filter()} and tags.`{STATUS}` = '{Status.STOPPED}'",
                max_results=50000,
            )
        return {run.data.tags[TRIAL_ID] for run in runs}

    def start_grid(self, experiment_id: str, spec: Spec, spec_path: Path, trials: list) -> str:
        run = self.writer.create_run(
            experiment_id,
            run_name=f"grid-{time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                ROLE: GRID,
                SPEC_FILE: spec_path.name,
                DRIVER: driver_tag(),
                HEARTBEAT: f"{time.time():.0f}",
            },
        )
        run_id = run.info.run_id
        self.writer.log_batch(
            run_id,
            params=[
                Param("trials", str(len(trials))),
                # What the grid trains: a WSD branch's trunk trained the rest of its tokens.
                Param("total_flops", f"{sum(t.trained_flops for t in trials):.4g}"),
                Param("total_tokens", str(sum(t.trained_tokens for t in trials))),
            ],
        )
        self.writer.log_artifact(run_id, str(spec_path))
        return run_id

    def claim(self, experiment: str, mine: str | None = None) -> None:
        """One driver per experiment. Refuse (TrackingError) while another live driver runs
        the experiment; close as KILLED the grid runs (and their RUNNING trials) of drivers
        that died, as a SIGKILL leaves them. With `mine` (this driver's own grid run, just
        made), only a driver that started before it counts: of two started together, the
        first runs. A driver lives while its pid does, on this host, or while its heartbeat
        is fresh, on another (hosts' clocks agree, as NTP keeps them)."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return
        experiment_id = found.experiment_id
        grids = self.client.search_runs(
            [experiment_id], f"{grid_runs_filter()} and attributes.status = '{RUNNING}'"
        )
        me = next((g for g in grids if g.info.run_id == mine), None)
        for grid in grids:
            if grid is me:
                continue
            if _driver_alive(grid):
                if me is None or (grid.info.start_time, grid.info.run_id) < (
                    me.info.start_time,
                    me.info.run_id,
                ):
                    raise TrackingError(_driver_running(grid, experiment))
                continue  # it started after this one: it gives way
            if me is None:
                orphans = self.client.search_runs(
                    [experiment_id],
                    f"{trial_runs_filter(grid.info.run_id)} and attributes.status = '{RUNNING}'",
                )
                for run in orphans:
                    self.kill_trial(run.info.run_id, "its driver died before the trial finished")
                self.end_grid(grid.info.run_id, Status.KILLED)

    def beat(self, grid_run_id: str, every_s: float = HEARTBEAT_S) -> None:
        """Tag the grid run with the time every `every_s` seconds, straight to the store (a
        beat lost to an outage matters to no one), until `stop_beating`."""
        stop = self._beating = threading.Event()

        def beat() -> None:
            while not stop.wait(every_s):
                try:
                    self.client.set_tag(grid_run_id, HEARTBEAT, f"{time.time():.0f}")
                except Exception:
                    pass

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    def stop_beating(self) -> None:
        self._beating.set()

    def withdraw_grid(self, run_id: str) -> None:
        """A grid run this driver made and then gave way on: gone, so no report finds it."""
        self.client.set_terminated(run_id, Status.KILLED.mlflow_status)
        self.client.delete_run(run_id)

    def end_grid(self, run_id: str, status: Status | str = Status.FINISHED) -> None:
        self.writer.set_terminated(run_id, Status(status).mlflow_status)

    def start_trial(self, experiment_id: str, parent_run_id: str, trial: TrialSpec) -> str:
        run = self.writer.create_run(
            experiment_id,
            run_name=trial.name,
            tags={
                ROLE: TRIAL,
                KIND: trial.kind,
                TRIAL_ID: trial.trial_id,
                STATUS: Status.RUNNING.value,
                PARENT_RUN_ID: parent_run_id,
                **({TRUNK_NAME: trial.trunk} if trial.trunk else {}),
            },
        )
        params = [Param(k, v) for k, v in trial_params(trial).items()]
        self.writer.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: dict) -> None:
        """One report from a trial: numbers keyed by name, and `step` = tokens seen."""
        step = int(metrics.get(STEP, 0))
        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if key != STEP and value is not None
        ]
        self.writer.log_batch(run_id, metrics=batch)

    def end_trial(
        self,
        run_id: str,
        status: Status | str,
        error: str | None = None,
        params: dict | None = None,
        artifacts: Iterable[Path] = (),
    ) -> None:
        status = Status(status)
        tags = [RunTag(STATUS, status.value)]
        if error:
            # MLflow tag values hold 8,000 characters; a traceback goes in as an artifact.
            tags.append(RunTag(ERROR, error[:7999]))
        self.writer.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in (params or {}).items()],
            tags=tags,
        )
        for path in artifacts:
            self.writer.log_artifact(run_id, str(path))
        self.writer.set_terminated(run_id, status.mlflow_status)

    def kill_trial(self, run_id: str, reason: str) -> None:
        """A trial the user stopped: neither result nor failure, and never left RUNNING."""
        self.writer.set_tag(run_id, STATUS, Status.KILLED.value)
        self.writer.set_tag(run_id, ERROR, reason)
        self.writer.set_terminated(run_id, Status.KILLED.mlflow_status)
