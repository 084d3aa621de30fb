"""A real cluster on this machine: a Ray head (with its job server) and a second Ray node, an
`mlflow server` on 127.0.0.1 with a SQLite backend, an S3-compatible server (moto); grids
submitted to them with `scaling submit`, whose driver runs on the cluster, and grids run on
them with `scaling run --address` while their tracking server goes away."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from helpers import MlflowServer, free_port, scaling, tiny_spec, trial_runs, write_spec
from mlflow import MlflowClient
from test_faults import is_trial, kill_group, start_grid, wait_for

pytestmark = pytest.mark.slow  # a two-node Ray cluster, an MLflow server and an S3 server

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Two Ray nodes of one CPU each, started as a user would, from the environment where
    `scaling` is installed: a two-trial grid uses both. Yields the job server's address and
    the nodes' processes, and the address a driver joins."""
    ray = str(Path(sys.executable).with_name("ray"))
    port, dashboard = free_port(), free_port()
    # Token auth, as the README sets a cluster up: a token (made in the session's HOME, see
    # conftest), then every node and client presents it.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    common = ["--num-cpus", "1", "--object-store-memory", str(128 * 1024**2), "--block"]
    head = ["--head", "--port", str(port), "--ray-client-server-port", str(free_port())]
    head += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard)]
    nodes = []
    for role in (head, ["--address", f"127.0.0.1:{port}"]):
        # Each node's agent on a port of its own: two nodes share this host.
        agent = ["--dashboard-agent-listen-port", str(free_port())]
        nodes.append(
            subprocess.Popen(
                [ray, "start", *role, *agent, *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        status = [ray, "status", "--address", f"127.0.0.1:{port}"]
        deadline = time.monotonic() + 120
        while subprocess.run(status, env=env, capture_output=True, text=True).stdout.count(
            " node_"
        ) < len(nodes):
            assert time.monotonic() < deadline, f"Ray node {len(nodes)} did not start"
            time.sleep(1)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 60
    while scaling("jobs", "--address", address).returncode != 0:
        assert time.monotonic() < deadline, "the job server did not answer"
        time.sleep(1)
    yield address, nodes, f"127.0.0.1:{port}"
    for node in reversed(nodes):
        os.killpg(node.pid, signal.SIGKILL)  # the node and what it started; workers follow
        node.wait(timeout=60)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with a bucket, and the standard AWS variables that
    name it: what a user of S3-compatible storage (MinIO, R2, ...) sets."""
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "no S3 server"
            time.sleep(0.3)
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="grids")
    yield env, client
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


def submit(spec: Path, address: str, uri: str, *extra: str, env: dict | None = None) -> str:
    """`scaling submit`: it returns at once with the job's id; the grid runs on."""
    submitted = scaling(
        "submit", str(spec), "--address", address, "--tracking-uri", uri, *extra, env=env
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    return submitted.stdout.strip()


def test_a_submitted_grid_runs_on_both_nodes_and_every_result_reaches_the_tracking_server(
    tmp_path, mlflow_server, ray_cluster
):
    address, _, _ = ray_cluster
    spec = write_spec(
        tmp_path / "cluster.yaml",
        tiny_spec(
            "cluster",
            grid={"seq_len": [32, 64], "tokens": [65536]},
            resources={"cpus_per_trial": 1},
        ),
    )
    job = submit(spec, address, mlflow_server, "--storage", str(tmp_path / "runs"))
    assert job.startswith("raysubmit_")
    # The submitter is gone; the grid goes on. Its log, followed to its end:
    followed = scaling("logs", job, "--follow", "--address", address, timeout=300)
    assert followed.returncode == 0, followed.stderr
    assert "L1-d32-T32-s0: FINISHED" in followed.stdout
    assert "grid done: 2 FINISHED" in followed.stdout
    assert f"job {job}: SUCCEEDED" in followed.stderr
    listed = scaling("jobs", "--address", address)
    assert job in listed.stdout and "SUCCEEDED" in listed.stdout and "cluster" in listed.stdout

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("cluster")
    runs = trial_runs(mlflow_server, "cluster")
    assert sorted(r.info.run_name for r in runs) == ["L1-d32-T32-s0", "L1-d32-T64-s0"]
    assert {r.data.tags["scaling.status"] for r in runs} == {"FINISHED"}
    # One trial per node: the grid used the whole cluster.
    assert len({r.data.params["ray_node_id"] for r in runs}) == 2
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == [16384, 32768, 49152, 65536]
        # The checkpoint went through the server's artifact proxy, from the driver.
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
    # Nothing of the trials was written to a store on the submitter's disk.
    assert not (tmp_path / "mlflow.db").exists()
    payload = json.dumps({"experiment_ids": [experiment.experiment_id]}).encode()
    request = urllib.request.Request(
        f"{mlflow_server}/api/2.0/mlflow/runs/search",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert len(json.load(response)["runs"]) == 3  # the grid's parent and its two trials
    # The report, made from the server's records, goes back to the grid's run as artifacts.
    report = scaling(
        "report", "cluster", "--tracking-uri", mlflow_server, "--out", str(tmp_path / "report")
    )
    assert report.returncode == 0, report.stderr
    grid = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'grid'")[0]
    assert "report/report.html" in {
        a.path for a in client.list_artifacts(grid.info.run_id, "report")
    }


def test_on_s3_storage_a_killed_worker_resumes_from_s3_and_a_stopped_grid_leaves_nothing_running(
    tmp_path, mlflow_server, ray_cluster, s3
):
    address, nodes, _ = ray_cluster
    aws, bucket = s3
    spec = write_spec(
        tmp_path / "s3.yaml",
        tiny_spec(
            "s3",
            model={"sizes": [{"n_layer": 2, "d_model": 128, "n_head": 4}]},
            grid={"seq_len": [64, 128], "tokens": [262144]},
            train={"eval_interval_tokens": 32768, "lr": 3e-3},
            resources={"cpus_per_trial": 1, "max_concurrent": 1},
        ),
    )
    # The AWS variables are the submitter's alone: the job carries them to the cluster.
    job = submit(spec, address, mlflow_server, "--storage", "s3://grids/scaling", env=aws)

    def evaluated_twice():
        for run in trial_runs(mlflow_server, "s3"):
            history = MlflowClient(mlflow_server).get_metric_history(run.info.run_id, "val_loss")
            if len(history) >= 2:
                return run
        return None

    run = wait_for(evaluated_twice, 300, "two evaluations")
    workers = [
        p
        for node in nodes
        for p in psutil.Process(node.pid).children(recursive=True)
        if is_trial(p)
    ]
    assert workers, "no Tune trial worker found on the cluster"
    for worker in workers:
        worker.kill()

    def resumed():
        history = MlflowClient(mlflow_server).get_metric_history(run.info.run_id, "resumed_at")
        return history[0].value if history else None

    assert wait_for(resumed, 300, "the trial to resume") >= 65536  # not from step 0
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="grids")["Contents"]]
    assert any("/checkpoint_" in key for key in keys), keys

    stopped = scaling("stop", job, "--address", address, timeout=300)
    assert stopped.returncode == 0 and f"job {job}: STOPPED" in stopped.stdout, stopped.stderr
    runs = trial_runs(mlflow_server, "s3")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    assert {r.data.tags["scaling.status"] for r in runs} <= {"FINISHED", "KILLED"}
    log = scaling("logs", job, "--address", address).stdout
    assert "Resume with: scaling submit s3.yaml --tracking-uri " in log


# The tracking server going away mid-grid ----------------------------------------------------

EVAL_EVERY = 65536


def outage_spec(tmp_path: Path, name: str, tokens: list[int]) -> Path:
    """Trials one after another, validated every EVAL_EVERY tokens."""
    return write_spec(
        tmp_path / f"{name}.yaml",
        tiny_spec(
            name,
            grid={"seq_len": [32], "tokens": tokens},
            train={"eval_interval_tokens": EVAL_EVERY},
            resources={"cpus_per_trial": 1, "max_concurrent": 1},
        ),
    )


def evaluations(run) -> list[int]:
    return list(range(EVAL_EVERY, int(run.data.params["tokens"]) + 1, EVAL_EVERY))


def first_validation(uri: str, experiment: str):
    def evaluated():
        client = MlflowClient(uri)
        return any(
            client.get_metric_history(r.info.run_id, "val_loss")
            for r in trial_runs(uri, experiment)
        )

    return evaluated


def test_a_server_down_for_25_s_mid_grid_loses_nothing_and_writes_nothing_twice(
    tmp_path, ray_cluster
):
    (tmp_path / "store").mkdir()
    server = MlflowServer(tmp_path / "store").start()
    # A short trial that ends during the outage, a long one that starts and trains through it.
    spec = outage_spec(tmp_path, "outage", [196608, 786432])
    driver = start_grid(tmp_path, spec, server.uri, "--quiet", "--address", ray_cluster[2])
    try:
        wait_for(first_validation(server.uri, "outage"), 240, "a first validation", driver)
        time.sleep(5)
        server.stop()
        down = time.monotonic()
        time.sleep(25)
        assert driver.poll() is None, "the driver did not outlive the outage"
        server.start()
        out, err = driver.communicate(timeout=300)
        caught_up = time.monotonic() - down
    finally:
        kill_group(driver)
        server.stop()
    assert driver.returncode == 0, out + err
    # The outage was seen, shown while the grid trained on, and caught up with.
    assert "writes wait in" in err and "caught up" in err, err
    assert "tracking store unreachable for" in out
    print(f"outage: {err.strip()}; driver done {caught_up:.0f} s after the server went down")
    server.start()
    try:
        client = MlflowClient(server.uri)
        runs = trial_runs(server.uri, "outage")
        assert sorted(r.data.params["tokens"] for r in runs) == ["196608", "786432"]
        for run in runs:
            assert run.data.tags["scaling.status"] == "FINISHED" and run.info.status == "FINISHED"
            history = client.get_metric_history(run.info.run_id, "val_loss")
            assert [m.step for m in history] == evaluations(run)  # each point once
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
    finally:
        server.stop()
    assert not (tmp_path / "scaling_spool").exists()  # caught up: nothing left


def test_a_server_that_never_comes_back_exits_3_and_sync_recovers_everything(
    tmp_path, ray_cluster, s3
):
    (tmp_path / "store").mkdir()
    server = MlflowServer(tmp_path / "store").start()
    spec = outage_spec(tmp_path, "lost", [196608])
    # On S3 storage, whose endpoint and keys only this driver's environment holds.
    options = ["--quiet", "--sync-timeout", "5", "--address", ray_cluster[2]]
    options += ["--storage", "s3://grids/lost"]  # the last --storage counts
    driver = start_grid(tmp_path, spec, server.uri, *options, env=s3[0])
    try:
        wait_for(first_validation(server.uri, "lost"), 240, "a first validation", driver)
        server.stop()
        out, err = driver.communicate(timeout=300)
    finally:
        kill_group(driver)
    assert driver.returncode == 3, out + err
    keys = [o["Key"] for o in s3[1].list_objects_v2(Bucket="grids", Prefix="lost/")["Contents"]]
    assert any("/checkpoint_" in key for key in keys), keys
    (spool,) = re.findall(r"Replay them with: scaling sync (\S+)", err)
    assert Path(spool).is_relative_to(tmp_path / "scaling_spool")

    (tmp_path / "fresh").mkdir()
    fresh = MlflowServer(tmp_path / "fresh").start()
    try:
        synced = scaling("sync", spool, "--tracking-uri", fresh.uri)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        print(f"sync: {synced.stdout.strip()}")
        client = MlflowClient(fresh.uri)
        experiment = client.get_experiment_by_name("lost")
        (grid,) = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'grid'")
        assert grid.info.status == "FINISHED" and grid.data.params["trials"] == "1"
        assert [a.path for a in client.list_artifacts(grid.info.run_id)] == ["lost.yaml"]
        runs = trial_runs(fresh.uri, "lost")
        assert [r.info.run_name for r in runs] == ["L1-d32-T32-s0"]
        for run in runs:
            assert run.data.tags["scaling.status"] == "FINISHED" and run.info.status == "FINISHED"
            assert run.data.tags["mlflow.parentRunId"] == grid.info.run_id
            assert run.data.params["tokens"] == "196608" and "precision" in run.data.params
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
            assert steps == evaluations(run)
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
        # Synced twice, nothing is written twice.
        again = scaling("sync", spool, "--tracking-uri", fresh.uri)
        assert again.returncode == 0, again.stderr
        assert len(trial_runs(fresh.uri, "lost")) == 1
        for run in trial_runs(fresh.uri, "lost"):
            assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 3
    finally:
        fresh.stop()
