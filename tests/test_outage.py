"""The tracking store going away mid-grid, for real: an `mlflow server` on 127.0.0.1 killed
while a grid trains on a local Ray. The training goes on, the driver's writes wait in its
spool, and the record catches up: when the server comes back, or later with `scaling sync`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from helpers import MlflowServer, scaling, tiny_spec, trial_runs, write_spec
from mlflow import MlflowClient
from test_faults import kill_group, start_grid, wait_for

pytestmark = pytest.mark.slow  # a local Ray and MLflow servers stopped and started

EVALS = [65536, 131072, 196608]


def outage_spec(tmp_path: Path, name: str, seq_lens: list[int]) -> Path:
    return write_spec(
        tmp_path / f"{name}.yaml",
        tiny_spec(
            name,
            grid={"seq_len": seq_lens, "tokens": [EVALS[-1]]},
            train={"eval_interval_tokens": EVALS[0]},
            resources={"cpus_per_trial": 1, "max_concurrent": 1},
        ),
    )


def first_validation(uri: str, experiment: str):
    def evaluated():
        client = MlflowClient(uri)
        return any(
            client.get_metric_history(r.info.run_id, "val_loss")
            for r in trial_runs(uri, experiment)
        )

    return evaluated


def test_a_server_down_for_25_s_mid_grid_loses_nothing_and_writes_nothing_twice(tmp_path):
    (tmp_path / "store").mkdir()
    server = MlflowServer(tmp_path / "store").start()
    spec = outage_spec(tmp_path, "outage", [32, 64, 128])
    driver = start_grid(tmp_path, spec, server.uri, "--quiet")
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
    # The outage was seen, said, and caught up with.
    assert "writes wait in" in err and "caught up" in err, err
    print(f"outage: {err.strip()}; driver done {caught_up:.0f} s after the server went down")
    server.start()
    try:
        client = MlflowClient(server.uri)
        runs = trial_runs(server.uri, "outage")
        assert sorted(r.info.run_name for r in runs) == [
            "L1-d32-T128-s0",
            "L1-d32-T32-s0",
            "L1-d32-T64-s0",
        ]
        for run in runs:
            assert run.data.tags["scaling.status"] == "FINISHED" and run.info.status == "FINISHED"
            history = client.get_metric_history(run.info.run_id, "val_loss")
            assert [m.step for m in history] == EVALS  # each point once
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
    finally:
        server.stop()
    assert not list((tmp_path / "scaling_spool").iterdir())  # caught up: nothing left


def test_a_server_that_never_comes_back_exits_3_and_sync_recovers_everything(tmp_path):
    (tmp_path / "store").mkdir()
    server = MlflowServer(tmp_path / "store").start()
    spec = outage_spec(tmp_path, "lost", [32, 64])
    driver = start_grid(tmp_path, spec, server.uri, "--quiet", "--sync-timeout", "5")
    try:
        wait_for(first_validation(server.uri, "lost"), 240, "a first validation", driver)
        server.stop()
        out, err = driver.communicate(timeout=300)
    finally:
        kill_group(driver)
    assert driver.returncode == 3, out + err
    (spool,) = re.findall(r"Replay them with: scaling sync (\S+)", err)
    assert Path(spool).is_relative_to(tmp_path / "scaling_spool")

    (tmp_path / "fresh").mkdir()
    fresh = MlflowServer(tmp_path / "fresh").start()
    try:
        synced = scaling("sync", spool, "--tracking-uri", fresh.uri)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        client = MlflowClient(fresh.uri)
        experiment = client.get_experiment_by_name("lost")
        (grid,) = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'grid'")
        assert grid.info.status == "FINISHED" and grid.data.params["trials"] == "2"
        assert [a.path for a in client.list_artifacts(grid.info.run_id)] == ["lost.yaml"]
        runs = trial_runs(fresh.uri, "lost")
        assert sorted(r.info.run_name for r in runs) == ["L1-d32-T32-s0", "L1-d32-T64-s0"]
        for run in runs:
            assert run.data.tags["scaling.status"] == "FINISHED" and run.info.status == "FINISHED"
            assert run.data.tags["mlflow.parentRunId"] == grid.info.run_id
            assert run.data.params["tokens"] == str(EVALS[-1]) and "precision" in run.data.params
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
            assert steps == EVALS
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
        # Synced twice, nothing is written twice.
        again = scaling("sync", spool, "--tracking-uri", fresh.uri)
        assert again.returncode == 0, again.stderr
        assert len(trial_runs(fresh.uri, "lost")) == 2
        for run in trial_runs(fresh.uri, "lost"):
            assert len(client.get_metric_history(run.info.run_id, "val_loss")) == len(EVALS)
    finally:
        fresh.stop()
