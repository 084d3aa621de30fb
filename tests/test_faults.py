"""Faults, each done for real on a real Ray and a real MLflow store: a driver killed, a
worker killed, a loss gone non-finite, memory run out, a trial that raises, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import psutil
import pytest
from helpers import SCALING, scaling, tiny_spec, trial_runs, write_spec
from mlflow import MlflowClient

pytestmark = pytest.mark.slow  # each fault is done to a real grid on a local Ray

TINY = {"n_layer": 1, "d_model": 32, "n_head": 2}


def start_grid(folder, spec_path, uri, *extra, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *SCALING,
            "run",
            str(spec_path),
            "--tracking-uri",
            uri,
            "--storage",
            str(folder / "runs"),
            *extra,
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"the grid ended before {what}: {process.communicate()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def is_trial(process: psutil.Process) -> bool:
    """Whether the process is a Tune trial's worker (an `ImplicitFunc` actor)."""
    try:
        return "ray::ImplicitFunc" in " ".join(process.cmdline())
    except psutil.Error:  # it ended, or is not ours to read
        return False


def statuses(runs) -> dict[str, str]:
    return {run.info.run_name: run.data.tags.get("scaling.status") for run in runs}


def finished_names(runs) -> set[str]:
    """The trials a rerun skips: FINISHED in the tag and in MLflow's own status. A driver
    killed while it uploads a trial's checkpoint leaves the tag alone, and the trial is trained
    again (a kill timed to a trial's end, as these tests time theirs, can land there)."""
    return {
        run.info.run_name
        for run in runs
        if run.data.tags.get("scaling.status") == "FINISHED" and run.info.status == "FINISHED"
    }


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def three_trials(name: str) -> dict:
    return tiny_spec(
        name,
        grid={"seq_len": [32, 64, 128], "tokens": [196608]},
        train={"eval_interval_tokens": 65536},
        resources={"cpus_per_trial": 1, "max_concurrent": 1},
    )


def test_one_driver_per_experiment_and_one_killed_is_taken_over_without_rerunning_trials(
    tmp_path,
):
    spec = write_spec(tmp_path / "killed.yaml", three_trials("killed"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    drivers = [start_grid(tmp_path, spec, uri, "--quiet") for _ in range(2)]  # together
    try:
        refused = wait_for(
            lambda: next((d for d in drivers if d.poll() is not None), None), 120, "a refusal"
        )
        _, err = refused.communicate()
        assert refused.returncode == 2, err
        # One line naming the driver that runs the experiment, after Ray's own log lines.
        (driver,) = [d for d in drivers if d is not refused]
        assert (
            f"another driver: host {socket.gethostname()}, pid {driver.pid}, since "
            in (err.strip().splitlines()[-1])
        )
        assert "Traceback" not in err

        def one_finished_one_running():
            runs = trial_runs(uri, "killed")
            return bool(finished_names(runs)) and "RUNNING" in statuses(runs).values()

        wait_for(one_finished_one_running, 240, "a finished and a running trial", driver)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        for process in drivers:
            kill_group(process)  # what the driver started (its local Ray) goes with it
    before = statuses(trial_runs(uri, "killed"))
    finished_before = finished_names(trial_runs(uri, "killed"))
    assert "RUNNING" in before.values()  # the SIGKILL left a run open

    again = scaling(
        "run", str(spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    runs = trial_runs(uri, "killed")
    finished = [r.info.run_name for r in runs if r.data.tags["scaling.status"] == "FINISHED"]
    assert sorted(finished) == ["L1-d32-T128-s0", "L1-d32-T32-s0", "L1-d32-T64-s0"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # The trials finished before the kill were not run again, nor counted as waiting to run.
    assert f"{len(finished_before)} skipped (already FINISHED)" in again.stdout
    left = 3 - len(finished_before)
    assert f"{len(finished_before)} already FINISHED, {left} to run" in again.stdout
    assert f"RUNNING; {left - 1} pending, 1 running" in again.stdout
    for name in finished_before:
        assert [r.info.run_name for r in runs].count(name) == 1


def test_a_killed_worker_is_retried_from_its_last_resume_point(tmp_path):
    spec = write_spec(
        tmp_path / "worker.yaml",
        tiny_spec(
            "worker",
            model={"sizes": [{"n_layer": 2, "d_model": 128, "n_head": 4}]},
            grid={"seq_len": [64], "tokens": [262144]},
            train={"eval_interval_tokens": 32768, "lr": 3e-3},
            resources={"cpus_per_trial": 1},
        ),
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_grid(tmp_path, spec, uri, "--quiet")
    try:

        def evaluated_twice():
            runs = trial_runs(uri, "worker")
            if not runs:
                return None
            history = MlflowClient(uri).get_metric_history(runs[0].info.run_id, "val_loss")
            return runs[0] if len(history) >= 2 else None

        run = wait_for(evaluated_twice, 240, "two evaluations", driver)
        # The trial's worker among the processes this grid started (its local Ray's), and no
        # other Ray on the machine.
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True) if is_trial(p)]
        assert workers, "no Tune trial worker found"
        for worker in workers:
            worker.kill()
        out, err = driver.communicate(timeout=300)
    finally:
        kill_group(driver)
    assert driver.returncode == 0, out + err
    client = MlflowClient(uri)
    (final,) = trial_runs(uri, "worker")
    assert final.info.run_id == run.info.run_id and final.data.tags["scaling.status"] == "FINISHED"
    resumed = client.get_metric_history(run.info.run_id, "resumed_at")
    assert len(resumed) == 1 and resumed[0].value >= 65536  # not from step 0
    for key in ("val_loss", "train_loss"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps == sorted(set(steps)), f"{key} logged twice: {steps}"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [
        32768 * i for i in range(1, 9)
    ]


def test_diverged_out_of_memory_and_raising_trials_end_with_their_reasons_the_others_finish(
    tmp_path,
):
    """One grid, every way a trial can end: a diverged and an out-of-memory point are results
    of the study; a trial that raises is retried, then FAILED with its traceback, and the grid
    exits 1. (That a grid of results alone exits 0 is `GridOutcome.ok`, in test_callbacks.)"""
    spec = write_spec(
        tmp_path / "outcomes.yaml",
        tiny_spec(
            "outcomes",
            model={
                "sizes": [
                    TINY,
                    {**TINY, "d_model": 48},
                    {**TINY, "d_model": 64, "lr": 1e6},
                    {"n_layer": 1, "d_model": 131072, "n_head": 1},
                ]
            },
            resources={"cpus_per_trial": 1},
        ),
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_grid(
        tmp_path,
        spec,
        uri,
        "--quiet",
        env={"SCALING_INJECT_FAILURE": "L1-d48-T64-s0", "SCALING_MAX_FAILURES": "1"},
    )
    out, err = driver.communicate(timeout=300)
    kill_group(driver)
    assert driver.returncode == 1, out + err
    assert "grid done: 1 DIVERGED, 1 FAILED, 1 FINISHED, 1 OOM" in out
    runs = {r.info.run_name: r for r in trial_runs(uri, "outcomes")}
    assert statuses(runs.values()) == {
        "L1-d32-T64-s0": "FINISHED",
        "L1-d48-T64-s0": "FAILED",
        "L1-d64-T64-s0": "DIVERGED",
        "L1-d131072-T64-s0": "OOM",
    }
    assert "loss became nan" in runs["L1-d64-T64-s0"].data.tags["scaling.error"]
    assert (
        runs["L1-d131072-T64-s0"]
        .data.tags["scaling.error"]
        .startswith(
            "out of memory for L1-d131072 (params 206,158,823,424) at seq_len 64, micro-batch 64"
        )
    )
    failed = runs["L1-d48-T64-s0"]
    assert failed.data.tags["scaling.error"] == (
        "RuntimeError: failure injected into L1-d48-T64-s0 by SCALING_INJECT_FAILURE"
    )
    artifacts = [a.path for a in MlflowClient(uri).list_artifacts(failed.info.run_id)]
    assert artifacts == ["error.txt"]
    assert all(r.info.status != "RUNNING" for r in runs.values())


def test_ctrl_c_stops_the_trials_leaves_nothing_running_and_says_how_to_resume(tmp_path):
    spec = write_spec(tmp_path / "stopped.yaml", three_trials("stopped"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_grid(tmp_path, spec, uri, "--quiet")
    try:
        wait_for(
            lambda: "FINISHED" in statuses(trial_runs(uri, "stopped")).values(),
            240,
            "a finished trial",
            driver,
        )
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        kill_group(driver)
    assert driver.returncode == 130, out + err
    assert f"Resume with: scaling run {spec} --tracking-uri {uri}" in err
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("stopped")
    every_run = client.search_runs([experiment.experiment_id])
    assert not [r for r in every_run if r.info.status == "RUNNING"]


WSD_SIZE = {"n_layer": 2, "d_model": 128, "n_head": 4}  # a trunk slow enough to kill mid-run


def wsd_spec(name: str, sizes: list[dict], max_concurrent: int, last: int = 262144) -> dict:
    return tiny_spec(
        name,
        model={"sizes": sizes},
        grid={"seq_len": [64], "tokens": [65536, 131072, last]},
        train={"schedule": "wsd", "lr": 3e-3, "eval_interval_tokens": 32768},
        resources={"cpus_per_trial": 1, "max_concurrent": max_concurrent},
    )


def saved_points(folder, experiment: str) -> list[int]:
    found = (folder / "runs" / "branch_points" / experiment).glob("*/*/resume.json")
    return sorted(int(p.parent.name) for p in found)


def test_a_killed_trunk_resumes_its_branches_finish_once_and_a_diverged_trunks_are_recorded(
    tmp_path,
):
    """One WSD grid: the first trunk's worker is killed after its first branch point and
    resumes; the second trunk diverges and the third raises, and their branches are recorded
    with those reasons."""
    sizes = [WSD_SIZE, {**TINY, "lr": 1e6}, {**TINY, "d_model": 48}]
    spec = write_spec(tmp_path / "trunks.yaml", wsd_spec("trunks", sizes, max_concurrent=1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    inject = {"SCALING_INJECT_FAILURE": "L1-d48-T64-trunk-s0", "SCALING_MAX_FAILURES": "1"}
    driver = start_grid(tmp_path, spec, uri, "--quiet", env=inject)
    try:
        wait_for(lambda: saved_points(tmp_path, "trunks"), 240, "a branch point", driver)
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True) if is_trial(p)]
        assert len(workers) == 1, "the trunk should be the only run (max_concurrent 1)"
        workers[0].kill()
        out, err = driver.communicate(timeout=300)
    finally:
        kill_group(driver)
    assert driver.returncode == 1, out + err  # a failure: diverged points are results
    runs = {r.info.run_name: r for r in trial_runs(uri, "trunks")}
    assert len(runs) == len(trial_runs(uri, "trunks")) == 12  # one run each: 3 trunks, 9 branches
    assert statuses(runs.values()) == {
        "L2-d128-T64-trunk-s0": "FINISHED",
        "L2-d128-T64-D65.5K-s0": "FINISHED",
        "L2-d128-T64-D131K-s0": "FINISHED",
        "L2-d128-T64-D262K-s0": "FINISHED",
        "L1-d32-T64-trunk-s0": "DIVERGED",
        "L1-d32-T64-D65.5K-s0": "DIVERGED",
        "L1-d32-T64-D131K-s0": "DIVERGED",
        "L1-d32-T64-D262K-s0": "DIVERGED",
        "L1-d48-T64-trunk-s0": "FAILED",
        "L1-d48-T64-D65.5K-s0": "FAILED",
        "L1-d48-T64-D131K-s0": "FAILED",
        "L1-d48-T64-D262K-s0": "FAILED",
    }
    client = MlflowClient(uri)
    trunk = runs["L2-d128-T64-trunk-s0"]
    resumed = client.get_metric_history(trunk.info.run_id, "resumed_at")
    assert len(resumed) == 1 and resumed[0].value >= 32768  # not from step 0
    branch = runs["L2-d128-T64-D262K-s0"]
    assert branch.data.tags["scaling.kind"] == "branch"
    assert branch.data.tags["scaling.trunk"] == "L2-d128-T64-trunk-s0"
    assert branch.data.params["branch_at"] == "208896"
    history = [m.step for m in client.get_metric_history(branch.info.run_id, "val_loss")]
    assert history[0] == 208896 and history[-1] == 262144  # from its branch point on
    orphan = runs["L1-d32-T64-D262K-s0"].data.tags["scaling.error"]
    assert orphan.startswith("its trunk L1-d32-T64-trunk-s0 ended DIVERGED before 208896 tokens")
    assert "loss became nan" in orphan
    assert runs["L1-d48-T64-D65.5K-s0"].data.tags["scaling.error"] == (
        "its trunk L1-d48-T64-trunk-s0 ended FAILED before 53248 tokens: "
        "RuntimeError: failure injected into L1-d48-T64-trunk-s0 by SCALING_INJECT_FAILURE"
    )

    # The report opens with its verdict, then the trunks and branches and what they saved.
    made = scaling("report", "trunks", "--tracking-uri", uri, "--out", "report", cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    fits = json.loads((tmp_path / "report" / "fits.json").read_text())
    assert (fits["wsd"]["trunks"], fits["wsd"]["branches"]) == (3, 9)
    assert 0.3 < fits["wsd"]["ratio"] < 0.65  # the diverged and failed trunks spent little
    headings = [line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
                if line.startswith("#") or line.startswith("![")]  # fmt: skip
    assert headings[1:4] == ["## Verdict", "## Trunks and branches (WSD)",
                             "![loss_vs_compute.png](plots/loss_vs_compute.png)"]  # fmt: skip


def test_a_wsd_grid_whose_driver_was_killed_retrains_no_saved_trunk_segment(tmp_path):
    # A long last budget: the first branches finish while the trunk still runs.
    spec = write_spec(tmp_path / "segments.yaml", wsd_spec("segments", [WSD_SIZE], 2, 524288))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = start_grid(tmp_path, spec, uri, "--quiet")
    try:

        def a_branch_finished_while_the_trunk_runs():
            runs = trial_runs(uri, "segments")
            trunk = statuses(runs).get("L2-d128-T64-trunk-s0")
            return trunk == "RUNNING" and bool(finished_names(runs))

        wait_for(a_branch_finished_while_the_trunk_runs, 240, "a finished branch", driver)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        kill_group(driver)
    saved_before = saved_points(tmp_path, "segments")
    finished_before = finished_names(trial_runs(uri, "segments"))
    assert saved_before and finished_before

    again = scaling(
        "run", str(spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    runs = trial_runs(uri, "segments")
    names = [r.info.run_name for r in runs]
    for name in finished_before:
        assert names.count(name) == 1  # not run again
    latest = {r.info.run_name: r for r in sorted(runs, key=lambda r: r.info.start_time)}
    assert {n: r.data.tags["scaling.status"] for n, r in latest.items()} == {
        "L2-d128-T64-trunk-s0": "FINISHED",
        "L2-d128-T64-D65.5K-s0": "FINISHED",
        "L2-d128-T64-D131K-s0": "FINISHED",
        "L2-d128-T64-D524K-s0": "FINISHED",
    }
    if saved_before != [53248, 106496, 417792]:  # the trunk had more to train: it resumed
        trunk = latest["L2-d128-T64-trunk-s0"].info.run_id
        resumed = MlflowClient(uri).get_metric_history(trunk, "resumed_at")
        assert [m.value for m in resumed] == [max(saved_before)]

    # A budget added inside the grid: its trunk picks up at the last point saved before the
    # new one, and only the new branch and that trunk segment train.
    grown = wsd_spec("segments", [WSD_SIZE], 2, 524288)
    grown["grid"]["tokens"].insert(2, 262144)  # its branch point: 208896
    write_spec(spec, grown)
    third = scaling(
        "run", str(spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs"), cwd=tmp_path
    )
    assert third.returncode == 0, third.stdout + third.stderr
    assert "grid done: 2 FINISHED, 3 skipped (already FINISHED)" in third.stdout
    newest = max(trial_runs(uri, "segments"), key=lambda r: r.info.start_time)
    trunk = [r for r in trial_runs(uri, "segments") if r.info.run_name.endswith("trunk-s0")]
    trunk = max(trunk, key=lambda r: r.info.start_time).info.run_id
    resumed = MlflowClient(uri).get_metric_history(trunk, "resumed_at")
    assert [m.value for m in resumed] == [106496]
    curve = MlflowClient(uri).get_metric_history(trunk, "val_loss")
    assert max(m.step for m in curve) == 208896  # not on through 417792, saved before
    assert newest.info.run_name == "L2-d128-T64-D262K-s0"
    assert newest.data.tags["scaling.status"] == "FINISHED"
