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
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run the real `scaling` command in a fresh process, as a user would."""
    return subprocess.run(
        [*SCALING, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
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
