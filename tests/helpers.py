"""Helpers the tests share: tiny specs and the real `scaling` command in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCALING = [str(Path(sys.executable).with_name("scaling"))]  # the installed console script


def tiny_spec(name: str = "tiny", **overrides) -> dict:
    """A spec that trains in seconds: the smallest shapes the tests need."""
    spec = {
        "name": name,
        "model": {"sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}]},
        "grid": {"seq_len": [64], "tokens": [32768]},
        "train": {
            "tokens_per_step": 4096,
            "lr": 1e-2,
            "eval_interval_tokens": 16384,
            "eval_tokens": 4096,
            "log_interval_steps": 2,
        },
    }
    # Sections given replace the tiny ones whole, but for `train`, whose tiny sizes they keep.
    for section, values in overrides.items():
        spec[section] = {**spec["train"], **values} if section == "train" else values
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def scaling(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the real `scaling` command in a fresh process, as a user would (`env`: variables
    set for it on top of this process's)."""
    import os

    return subprocess.run(
        [*SCALING, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_grid(spec: Path, uri: str, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    """`scaling run` of `spec` into the store at `uri`, checkpoints under `folder`/runs."""
    return scaling(
        "run",
        str(spec),
        "--tracking-uri",
        uri,
        "--storage",
        str(folder / "runs"),
        "--quiet",
        *extra,
        cwd=folder,
    )


def trial_runs(uri: str, experiment: str) -> list:
    """The experiment's trial runs (child runs), as MLflow returns them."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], "tags.`scaling.role` = 'trial'")


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend in `folder`, which a test
    may stop and start again on the same port (an outage of the tracking store)."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder, self.port = folder, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        import os
        import time
        import urllib.request

        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
            ],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2).close()
                return self
            except OSError:
                assert self.process.poll() is None, "the mlflow server exited"
                assert time.monotonic() < deadline, "the mlflow server did not answer"
                time.sleep(0.5)

    def stop(self) -> None:
        """Gone at once, as a crash or a host going down leaves it: the server and its workers."""
        import os
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
