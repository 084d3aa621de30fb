"""A grid submitted to a cluster as a Ray Job, so the submitter can walk away.

`scaling run --address` makes the user's own process the grid's driver, which must stay
connected as long as the grid runs. `scaling submit` instead hands `scaling run` to the
cluster's job server (Ray's Jobs API): its driver runs on the head node and the grid "runs
once to completion or failure, regardless of the original submitter's connectivity". The
job's working_dir carries the spec and the local data files it names; the cluster's nodes
must have `scaling` installed, and `ray start` run from that environment.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from scaling.errors import InputError, first_line
from scaling.spec import Spec

# The job server refuses a request body over 100 MiB (Ray's DASHBOARD_CLIENT_MAX_SIZE), and a
# job's working_dir travels in one request.
MAX_WORKING_DIR_BYTES = 100 * 1024**2
DEFAULT_ADDRESS = "http://127.0.0.1:8265"  # Ray's own default for its job server
# What a driver or worker elsewhere needs of this machine's environment: S3 credentials and
# endpoint (not AWS_PROFILE or file paths, which name things here), and the tracking server's.
STORAGE_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
)  # fmt: skip
TRACKING_ENV = (
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
)  # fmt: skip
# A stop sends the driver SIGINT, as Ctrl-C would, and gives it this long to close its runs.
STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "120"}
EXPERIMENT = "scaling_experiment"  # the job's metadata key naming its experiment


def job_address(address: str | None) -> str:
    """The job server: --address, else $RAY_ADDRESS when it is one (http://...), else Ray's
    default on this machine."""
    env = os.environ.get("RAY_ADDRESS", "")
    return address or (env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS)


def inside_job() -> bool:
    """Whether this process is a Ray Job's driver (`scaling submit` started it)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def forwarded(keys: tuple[str, ...]) -> dict[str, str]:
    """Those of `keys` set here, to set where the grid runs."""
    return {key: os.environ[key] for key in keys if os.environ.get(key)}


def connect(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:
        raise InputError(
            f"--address: cannot reach the Ray job server at {address}: {first_line(exc)}"
        ) from None


def working_dir(spec: Spec, spec_path: Path, into: Path) -> Path:
    """`into` filled with what the job needs from here: the spec, and the data files a
    relative `data.path` names, at the same relative paths (the job runs in this folder).
    Refuses, in one line, a folder over the job server's limit."""
    shutil.copy2(spec_path, into / spec_path.name)
    if spec.data.source == "files" and not os.path.isabs(os.path.expanduser(spec.data.path or "")):
        for name in glob.glob(spec.data.path or "", recursive=True):
            if not Path(name).is_file():
                continue
            if Path(os.path.relpath(name)).parts[0] == "..":
                raise InputError(
                    f"{spec_path}: data.path: '{spec.data.path}' reaches outside this folder; "
                    "submit from a folder that holds the data, or name it by an absolute path "
                    "every node reads"
                )
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(name, into / name)
    size = sum(path.stat().st_size for path in into.rglob("*") if path.is_file())
    if size > MAX_WORKING_DIR_BYTES:
        raise InputError(
            f"{spec_path}: data.path: the files a submitted grid carries come to "
            f"{size / 2**20:.0f} MiB, over the job server's {MAX_WORKING_DIR_BYTES // 2**20} MiB "
            "limit; put them where every node reads them and name them by an absolute path"
        )
    return into


def entrypoint(spec_path: Path, run_options: list[str]) -> str:
    return shlex.join(["scaling", "run", spec_path.name, "--quiet", *run_options])


def submit(spec: Spec, spec_path: Path, address: str, run_options: list[str]) -> str:
    """The job id of `scaling run` submitted to the job server at `address`."""
    env = forwarded(STORAGE_ENV + TRACKING_ENV)
    with tempfile.TemporaryDirectory(prefix="scaling-submit-") as scratch:
        folder = working_dir(spec, spec_path, Path(scratch))
        client = connect(address)
        return client.submit_job(
            entrypoint=entrypoint(spec_path, run_options),
            runtime_env={"working_dir": str(folder), "env_vars": {**env, **STOP_ENV}},
            metadata={EXPERIMENT: spec.experiment},
        )


def follow(client, job_id: str, poll_s: float = 1.0) -> str:
    """Print the job's log as it grows until the job ends; its final status."""
    shown = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        sys.stdout.write(logs[shown:])
        sys.stdout.flush()
        shown = len(logs)
        if status.is_terminal():
            return str(status.value)
        time.sleep(poll_s)


def known(client, job_id: str, address: str) -> None:
    """Refuse, in one line, a job id the server does not know."""
    try:
        client.get_job_status(job_id)
    except RuntimeError as exc:
        raise InputError(
            f"JOB: cannot find job '{job_id}' at {address}: {first_line(exc)}"
        ) from None
