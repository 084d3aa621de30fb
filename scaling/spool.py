"""The driver's MLflow writes, journaled on local disk, so that a tracking store that stops
answering costs a grid nothing: the training goes on and the record catches up (W&B's offline
mode and `wandb sync`, for MLflow).

A `Spool` takes the writes a grid makes (MlflowClient's own `create_run`, `log_batch`,
`log_artifact`, `set_terminated`, `set_tag`) and appends each to `writes.jsonl` before it is
tried; `applied.jsonl` records each one a store took. While the store answers, a write goes
straight through. Once one fails, it and every write after it wait, in order, and a thread
replays them as soon as the store answers again. An artifact that must wait is moved into the
spool first (the caller's copy is often temporary).

Runs are named in the journal by a key of the spool's own, so the journal replays into any
store: its own (the waiting writes) or another one (`scaling sync SPOOL --tracking-uri`, every
write). Replaying a write twice changes nothing: a run is found again by its key (the
SPOOL_KEY tag) before one is created, a metric keeps its timestamp (MLflow stores one row per
key, step, timestamp and value), params and tags are set to the values they have, artifacts
overwrite.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.exceptions import MlflowException

from scaling.contract import SPOOL_KEY
from scaling.errors import InputError, first_line

# MLflow's client retries a failed request 7 times with exponential back-off, minutes in all,
# and the driver's loop waits on it. Here the spool retries instead, and finds a run again
# where MLflow's retry of a create that timed out after the store took it would make a second
# one. Defaults the user may override: a dead server costs the driver one refused connection,
# a hung one a 30 s timeout, once.
BOUNDED_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
WRITES, APPLIED, META, LOCK = "writes.jsonl", "applied.jsonl", "meta.json", "lock"
# Artifacts smaller than this (specs, tracebacks) are kept for a replay into another store;
# a larger one (a checkpoint) only while it waits for its own store.
KEEP_BELOW_BYTES = 1024**2
RETRY_EVERY_S = (1, 2, 4, 8, 15)  # the replayer's waits after failures in a row, then the last


def bound_retries() -> None:
    for key, value in BOUNDED_RETRIES.items():
        os.environ.setdefault(key, value)


def store_down(exc: Exception) -> bool:
    """Whether `exc` says the store did not answer (wait and retry) rather than that it
    refused the write (a 4xx: retrying cannot help)."""
    if isinstance(exc, MlflowException):  # what the client makes of failed requests, too
        code = exc.get_http_status_code()
        return code >= 500 or code == 429  # 429: too many requests, for now
    return isinstance(exc, OSError)  # requests' connection errors and timeouts are OSErrors


class SpoolError(InputError):
    """A spool that cannot be read; the message is the one line the user sees."""


class Spool:
    """Writes to `client`'s store, journaled in `folder`; see the module's docstring."""

    def __init__(self, folder: Path, client: MlflowClient, experiment: str):
        self.folder, self.client, self.experiment = Path(folder), client, experiment
        self.store = client.tracking_uri
        self.folder.mkdir(parents=True, exist_ok=True)
        self._hold = _lock(self.folder)  # one writer per spool: its driver, or a sync
        meta = self.folder / META
        if not meta.exists():
            origin = {"host": socket.gethostname(), "pid": os.getpid(), "created": time.time()}
            meta.write_text(
                json.dumps({"experiment": experiment, "tracking_uri": self.store, **origin})
            )
        self._home_uri = json.loads(meta.read_text())["tracking_uri"]
        self.home = self._home_uri == self.store  # the store the driver wrote to
        writes = _read_jsonl(self.folder / WRITES)
        self.count = len(writes)  # the next write's seq
        self.ids: dict[str, str] = {}  # run key -> run id in this store
        applied = set()
        for line in _read_jsonl(self.folder / APPLIED):
            if line["store"] == self.store:
                applied.add(line["seq"])
                if "run_id" in line:
                    self.ids[line["key"]] = line["run_id"]
        self.keys = {run_id: key for key, run_id in self.ids.items()}  # run id -> key
        self.waiting = deque(w for w in writes if w["seq"] not in applied)
        self.rejected: list[str] = []  # why the store refused writes it was replayed
        self.missing: list[str] = []  # artifacts a replay into another store could not find
        self.down_since: float | None = time.time() if self.waiting else None
        self.replayed = 0
        self._experiment_id: str | None = None
        self._lock = threading.Lock()
        self._woken = threading.Condition(self._lock)
        self._replayer: threading.Thread | None = None

    @classmethod
    def open(cls, folder: str | Path, tracking_uri: str | None = None) -> Spool:
        """A spool a driver left, to replay into its own store or into `tracking_uri`."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            raise SpoolError(f"SPOOL: {folder} is not a spool (no readable {META})") from None
        client = MlflowClient(tracking_uri or meta["tracking_uri"])
        return cls(folder, client, meta["experiment"])

    def close(self) -> None:
        """Let another process (a later driver, `scaling sync`) take the spool."""
        os.close(self._hold)

    # MlflowClient's writes ------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict | None = None,
        run_name: str | None = None,
    ) -> Run:
        """The run's key stands for its id until the store has created it."""
        key = f"spool-{uuid.uuid4().hex}"
        start_time = start_time or _now_ms()
        self._experiment_id = self._experiment_id or experiment_id
        tags = {k: self._key(v) for k, v in (tags or {}).items()}
        write = {"op": "create_run", "run": key, "run_name": run_name, "tags": tags}
        self._write({**write, "start_time": start_time})
        run_id = self.ids.get(key, key)
        info = RunInfo(run_id, experiment_id, "", "RUNNING", start_time, None, "active", run_name)
        return Run(info, RunData(tags=[RunTag(k, str(v)) for k, v in tags.items()]))

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self._write(
            {
                "op": "log_batch",
                "run": self._key(run_id),
                "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
                "params": {p.key: p.value for p in params},
                "tags": {t.key: self._key(t.value) for t in tags},
            }
        )

    def set_tag(self, run_id: str, key: str, value) -> None:
        self.log_batch(run_id, tags=[RunTag(key, str(value))])

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._write(
            {"op": "log_artifact", "run": self._key(run_id), "artifact_path": artifact_path},
            source=Path(local_path),
        )

    def set_terminated(self, run_id: str, status: str | None = None, end_time=None) -> None:
        end_time = end_time or _now_ms()
        self._write(
            {
                "op": "set_terminated",
                "run": self._key(run_id),
                "status": status,
                "end_time": end_time,
            }
        )

    # Waiting and replaying ------------------------------------------------------------------

    def drain(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for every waiting write to reach the store."""
        deadline = time.monotonic() + timeout_s
        with self._woken:
            self._start_replayer()
            while self.waiting and time.monotonic() < deadline:
                self._woken.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            return not self.waiting

    def state(self) -> str | None:
        """One line for the progress display while writes wait, else None."""
        if not self.waiting or self.down_since is None:
            return None
        return (
            f"tracking store unreachable for {time.time() - self.down_since:.0f} s: "
            f"{len(self.waiting)} writes wait in {self.folder}"
        )

    def remove(self) -> None:
        """Delete the spool once its store holds everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.close()
        with contextlib.suppress(OSError):  # and the spools' folder, when it was the last
            self.folder.parent.rmdir()

    def _write(self, write: dict, source: Path | None = None) -> None:
        with self._lock:
            write["seq"], self.count = self.count, self.count + 1
            if source is not None:
                write["file"] = f"artifacts/{write['seq']}/{source.name}"
                if source.stat().st_size < KEEP_BELOW_BYTES:  # for a replay into another store
                    self._keep(source, write["file"])
            _append(self.folder / WRITES, write)
            # Queued before it is tried: a write an interrupt cuts short stays queued.
            self.waiting.append(write)
            if len(self.waiting) == 1:
                tried = time.monotonic()
                try:
                    self._apply(write, source, first_try=True)
                    self.waiting.popleft()
                    return
                except Exception as exc:
                    if not store_down(exc):
                        self.waiting.popleft()
                        self._applied(write, rejected=str(exc))
                        raise
                    self.down_since = time.time()
                    print(
                        f"tracking store {self.store} did not answer in "
                        f"{time.monotonic() - tried:.1f} s ({first_line(exc)[:200]}): "
                        f"writes wait in {self.folder}",
                        file=sys.stderr,
                    )
            if source is not None and not (self.folder / write["file"]).exists():
                self._keep(source, write["file"])  # the caller's copy may soon be gone
            self._start_replayer()

    def _keep(self, source: Path, name: str) -> None:
        kept = self.folder / name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, kept)

    def _start_replayer(self) -> None:
        if self.waiting and (self._replayer is None or not self._replayer.is_alive()):
            self._replayer = threading.Thread(target=self._replay, name="spool", daemon=True)
            self._replayer.start()

    def _replay(self) -> None:
        failures, said = 0, ""
        while True:
            with self._lock:
                if not self.waiting:
                    if self.down_since is not None:
                        print(
                            f"tracking store {self.store} caught up: {self.replayed} writes "
                            f"replayed, {time.time() - self.down_since:.0f} s after the first "
                            "that waited",
                            file=sys.stderr,
                        )
                    self.down_since = None
                    self._woken.notify_all()
                    return
                write = self.waiting[0]
            try:
                self._apply(write, self.folder / write["file"] if "file" in write else None)
                failures = 0
            except Exception as exc:
                if store_down(exc):
                    if first_line(exc) != said:  # why it still waits, once per reason
                        said = first_line(exc)
                        print(f"tracking store: {said[:200]}", file=sys.stderr)
                    time.sleep(RETRY_EVERY_S[min(failures, len(RETRY_EVERY_S) - 1)])
                    failures += 1
                    continue
                self._applied(write, rejected=str(exc))
                self.rejected.append(f"write {write['seq']} ({write['op']}): {first_line(exc)}")
            with self._lock:
                self.waiting.popleft()
                self.replayed += 1
                self._woken.notify_all()

    def _apply(self, write: dict, source: Path | None, first_try: bool = False) -> None:
        """One write into the store; raises what the client raises."""
        run_id = self.ids.get(write["run"], write["run"])
        if write["op"] == "create_run":
            # A replay may find the run there already: the store took it, its answer was lost.
            found = None if first_try else self._find(write["run"])
            tags = {k: self.ids.get(v, v) for k, v in write["tags"].items()}
            tags[SPOOL_KEY] = write["run"]
            experiment_id = self._experiment()
            run_id = (
                found
                or self.client.create_run(
                    experiment_id, write["start_time"], tags, write["run_name"]
                ).info.run_id
            )
            # keys first: the main thread reads `ids` to know a run exists, then `keys`.
            self.keys[run_id], self.ids[write["run"]] = write["run"], run_id
            self._applied(write, key=write["run"], run_id=run_id)
            return
        if write["op"] == "log_batch":
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, step) for k, v, ts, step in write["metrics"]],
                params=[Param(k, v) for k, v in write["params"].items()],
                tags=[RunTag(k, self.ids.get(v, v)) for k, v in write["tags"].items()],
            )
        elif write["op"] == "log_artifact":
            if source is not None and source.exists():
                self.client.log_artifact(run_id, str(source), write["artifact_path"])
            else:  # a large one its own store took at once: not kept
                self.missing.append(f"{write['file']} (uploaded to {self._home_uri} only)")
        elif write["op"] == "set_terminated":
            self.client.set_terminated(run_id, write["status"], write["end_time"])
        self._applied(write)
        if source is None or not (self.home and source.is_relative_to(self.folder)):
            return
        if source.exists() and source.stat().st_size >= KEEP_BELOW_BYTES:
            source.unlink()  # its own store holds it now

    def _applied(self, write: dict, **extra) -> None:
        _append(self.folder / APPLIED, {"seq": write["seq"], "store": self.store, **extra})

    def _find(self, key: str) -> str | None:
        """The run this key was created as in the store, if it was."""
        runs = self.client.search_runs([self._experiment()], f"tags.`{SPOOL_KEY}` = '{key}'")
        return runs[0].info.run_id if runs else None

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = (
                found.experiment_id if found else self.client.create_experiment(self.experiment)
            )
        return self._experiment_id

    def _key(self, value):
        return self.keys.get(value, value) if isinstance(value, str) else value


def _now_ms() -> int:
    return int(time.time() * 1000)


def _append(path: Path, record: dict) -> None:
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()
        os.fsync(file.fileno())


def _read_jsonl(path: Path) -> list[dict]:
    """The records of a journal; a line a crash cut short is dropped, and the file made to
    end with a newline, so the next record starts a line of its own."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        with path.open("a") as file:
            file.write("\n")
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _lock(folder: Path) -> int:
    """An exclusive lock on the spool, held while the returned descriptor is open."""
    descriptor = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        raise SpoolError(
            f"SPOOL: {folder} is in use by the driver that writes it (or a sync); it replays "
            "its writes itself"
        ) from None
    return descriptor


def left_behind(root: Path, experiment: str, tracking_uri: str) -> list[Path]:
    """The spools under `root` that drivers of `experiment` left with writes for
    `tracking_uri`, oldest first (a live driver's among them: `Spool` refuses to open it)."""
    found = []
    for meta_path in root.glob(f"*/{META}"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta["experiment"] == experiment and meta["tracking_uri"] == tracking_uri:
            found.append((meta["created"], meta_path.parent))
    return [folder for _, folder in sorted(found)]
