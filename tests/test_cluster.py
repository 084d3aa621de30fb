"""A real cluster on this machine: a Ray head and a second Ray node, an `mlflow server` on
127.0.0.1 with a SQLite backend, and `scaling run --address` submitting a grid to them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import MlflowServer, free_port, run_grid, scaling, tiny_spec, write_spec
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # a two-node Ray cluster and an MLflow server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Two Ray nodes of one CPU each, started as a user would: a two-trial grid uses both."""
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    # Token auth, as the README sets a cluster up: a token (made in the session's HOME, see
    # conftest), then every node and client presents it.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, capture_output=True, check=True)
    common = ["--num-cpus", "1", "--object-store-memory", str(128 * 1024**2), "--block"]
    nodes = [
        subprocess.Popen(
            [ray, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    address = f"127.0.0.1:{port}"
    status = [ray, "status", "--address", address]
    deadline = time.monotonic() + 120
    while subprocess.run(status, env=env, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the Ray head did not start"
        time.sleep(1)
    nodes.append(
        subprocess.Popen(
            [ray, "start", "--address", address, *common],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    while (
        subprocess.run(status, env=env, capture_output=True, text=True).stdout.count(" node_") < 2
    ):
        assert time.monotonic() < deadline, "the second Ray node did not join"
        time.sleep(1)
    yield address
    for node in reversed(nodes):
        os.killpg(node.pid, signal.SIGKILL)  # the node and what it started; workers follow
        node.wait(timeout=60)


def test_a_grid_runs_on_both_nodes_and_every_result_reaches_the_tracking_server(
    tmp_path, mlflow_server, ray_cluster
):
    spec = write_spec(
        tmp_path / "cluster.yaml",
        tiny_spec(
            "cluster",
            grid={"seq_len": [32, 64], "tokens": [65536]},
            resources={"cpus_per_trial": 1},
        ),
    )
    result = run_grid(spec, mlflow_server, tmp_path, "--address", ray_cluster)
    assert result.returncode == 0, result.stdout + result.stderr

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("cluster")
    runs = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'trial'")
    assert sorted(r.info.run_name for r in runs) == ["L1-d32-T32-s0", "L1-d32-T64-s0"]
    assert {r.data.tags["scaling.status"] for r in runs} == {"FINISHED"}
    # One trial per node: the grid used the whole cluster.
    assert len({r.data.params["ray_node_id"] for r in runs}) == 2
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == [16384, 32768, 49152, 65536]
        # The checkpoint went through the server's artifact proxy, from the driver.
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
    # Nothing of the trials was written to a store on the driver's disk.
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


def test_a_local_storage_path_is_refused_on_a_cluster_of_several_hosts():
    from scaling.errors import InputError
    from scaling.grid import check_storage

    with pytest.raises(
        InputError,
        match=r"^--storage: 'runs' is a local path, but the cluster "
        r"spans 2 hosts; use storage every node can reach",
    ):
        check_storage("runs", hosts={"10.0.0.1", "10.0.0.2"})
    check_storage("s3://bucket/runs", hosts={"10.0.0.1", "10.0.0.2"})  # reachable from all
    check_storage("runs", hosts={"10.0.0.1"})  # one host: its disk serves every node on it
