"""`scaling run` for real: a two-trial grid into a SQLite MLflow store, checked against the
README's "What MLflow holds"; then `scaling status`, a rerun that skips, and the dashboard's
REST API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import SCALING, free_port, scaling, tiny_spec, write_spec
from mlflow import MlflowClient

from scaling import spec as spec_lib
from scaling.cli import main
from scaling.contract import Status
from scaling.tracking import Tracker

pytestmark = pytest.mark.slow  # the CLI runs a grid on a local Ray

CONTRACT_PARAMS = [
    "n_layer",
    "d_model",
    "n_head",
    "seq_len",
    "tokens",
    "params",
    "params_total",
    "flops_per_token",
    "attention",
    "seed",
]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two trials (two sequence lengths) run by the real CLI; returns what a test needs."""
    folder = tmp_path_factory.mktemp("grid")
    spec = write_spec(
        folder / "pair.yaml", tiny_spec("pair", grid={"seq_len": [32, 64], "tokens": [32768]})
    )
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = scaling(
        "run", str(spec), "--tracking-uri", uri, "--storage", str(folder / "runs"), cwd=folder
    )
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(scaling("plan", str(spec), "--json").stdout)
    return {
        "folder": folder,
        "spec": spec,
        "uri": uri,
        "run": result,
        "plan": plan,
        "client": MlflowClient(uri),
    }


def trial_runs(client, experiment_id):
    return client.search_runs([experiment_id], "tags.`scaling.role` = 'trial'")


def test_the_grid_is_one_parent_run_with_the_spec(grid):
    client = grid["client"]
    experiment = client.get_experiment_by_name("pair")
    assert experiment is not None
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'grid'")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["trials"] == "2"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["pair.yaml"]


def test_each_trial_is_a_child_run_with_the_contract_tags_and_params(grid):
    client = grid["client"]
    experiment = client.get_experiment_by_name("pair")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'grid'")
    runs = {run.info.run_name: run for run in trial_runs(client, experiment.experiment_id)}
    assert sorted(runs) == ["L1-d32-T32-s0", "L1-d32-T64-s0"]
    for planned in grid["plan"]:
        run = runs[planned["name"]]
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["scaling.status"] == "FINISHED"
        assert tags["scaling.trial_id"] == planned["trial_id"]
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert "scaling.error" not in tags
        for key in CONTRACT_PARAMS:
            assert params[key] == str(planned[key]), key
        # The rest of the resolved config, and what the device resolved.
        assert params["train.lr"] == "0.01" and params["train.tokens_per_step"] == "4096"
        assert (params["lr"], params["parametrization"]) == ("0.01", "standard")
        assert params["data.source"] == "stdlib"
        assert params["precision"] in ("bf16", "fp32")


def test_each_trial_has_the_contract_metrics_with_step_in_tokens(grid):
    client = grid["client"]
    experiment = client.get_experiment_by_name("pair")
    for run in trial_runs(client, experiment.experiment_id):
        run_id, tokens = run.info.run_id, int(run.data.params["tokens"])
        for key in ("train_loss", "lr", "tokens_per_s", "mfu"):
            steps = [m.step for m in client.get_metric_history(run_id, key)]
            assert steps == [8192, 16384, 24576, 32768], key
        val = client.get_metric_history(run_id, "val_loss")
        assert [m.step for m in val] == [16384, 32768]
        assert val[-1].value < val[0].value
        for key in ("step_time_s", "peak_mem_bytes", "wall_s"):
            (final,) = client.get_metric_history(run_id, key)
            assert final.step == tokens and final.value > 0
        assert [a.path for a in client.list_artifacts(run_id)] == ["checkpoint.pt"]
        # What a token costs to generate at the trained context, measured after training.
        (decode,) = client.get_metric_history(
            run_id, f"decode_s_per_token_at_{run.data.params['seq_len']}"
        )
        assert 0 < decode.value < 1


def test_sample_generates_reproducible_text_from_a_trials_checkpoint(grid, capsys):
    client = grid["client"]
    experiment = client.get_experiment_by_name("pair")
    run_id = next(
        run.info.run_id
        for run in trial_runs(client, experiment.experiment_id)
        if run.info.run_name == "L1-d32-T64-s0"
    )
    flags = ("--prompt", "def ", "--max-new-tokens", "40", "--seed", "3")
    first = scaling("sample", run_id, "--tracking-uri", grid["uri"], *flags)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("def ") and len(first.stdout) > len("def \n")

    def sample(*flags: str) -> tuple[int, str, str]:
        """The same command in this process: torch is imported once, not per call."""
        code = main(["sample", run_id, "--tracking-uri", grid["uri"], *flags])
        printed = capsys.readouterr()
        return code, printed.out, printed.err

    assert sample(*flags) == (0, first.stdout, "")  # the same seed, the same text
    greedy = [sample("--temperature", "0", "--seed", str(s))[1] for s in (1, 2)]
    assert greedy[0] == greedy[1]  # greedy decoding does not draw

    assert sample("--prompt", "def ", "--max-new-tokens", "60") == (
        2,
        "",
        "--max-new-tokens: BOS + 4 prompt bytes + 60 new tokens = 65, more than the 64-token "
        "context L1-d32-T64-s0 was trained with (its learned positions end there)\n",
    )
    assert sample("--prompt", "x" * 63) == (
        2,
        "",
        "--prompt: BOS + 63 prompt bytes leave no room in the 64-token context L1-d32-T64-s0 "
        "was trained with\n",
    )
    unknown = scaling("sample", "0123abcd", "--tracking-uri", grid["uri"])
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"RUN_ID: no run '0123abcd' in {grid['uri']}"


def test_status_prints_the_trials_by_status(grid):
    result = scaling("status", "pair", "--tracking-uri", grid["uri"])
    assert result.returncode == 0, result.stderr
    assert "pair: 2 FINISHED" in result.stdout
    assert "L1-d32-T32-s0" in result.stdout and "L1-d32-T64-s0" in result.stdout
    missing = scaling("status", "nope", "--tracking-uri", grid["uri"])
    assert missing.returncode == 2
    assert missing.stderr == (
        f"experiment: no experiment 'nope' in {grid['uri']}: run it where you ran "
        "`scaling run`, or pass --tracking-uri\n"
    )


def test_status_sorts_by_size_length_and_tokens_and_shows_the_median_throughput(tmp_path, capsys):
    """Budgets sort as numbers (205K before 1.23M, where text puts `D1.23M` first), and the
    tokens/s shown is each trial's median: the last value logged would hide a stall."""
    raw = tiny_spec("budgets", grid={"seq_len": [64, 32], "tokens": [1228800, 204800]})
    spec_file = write_spec(tmp_path / "budgets.yaml", raw)
    spec, trials = spec_lib.load(spec_file)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)  # the runs as `scaling run` records them, without training
    experiment_id = tracker.experiment_id("budgets")
    parent = tracker.start_grid(experiment_id, spec, spec_file, trials)
    for trial in trials:
        run_id = tracker.start_trial(experiment_id, parent, trial)
        for tokens, rate in ((8192, 9000), (16384, 10000), (24576, 500)):  # a stall at the end
            tracker.log_metrics(run_id, {"step": tokens, "tokens_per_s": rate})
        tracker.end_trial(run_id, Status.FINISHED)
    assert main(["status", "budgets", "--tracking-uri", uri]) == 0
    table = capsys.readouterr().out
    assert "median tokens/s" in table
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines()]
    # trial, status, params, seq_len, tokens, val_loss, median tokens/s
    assert [row[:7] for row in rows if row] == [
        [f"L1-d32-T{length}-D{budget}-s0", "FINISHED", "12.4K", length, budget, "", "9K"]
        for length in ("32", "64")
        for budget in ("205K", "1.23M")
    ]


def test_a_trunk_resumed_by_a_later_grid_run_keeps_its_whole_curve(tmp_path):
    """A budget added to a WSD grid resumes each trunk in a new grid run, whose run logs only
    from its branch point on: the report reads the trunk's curve and LR from both runs."""
    from analysis.runs import from_mlflow

    raw = tiny_spec("resumed", grid={"seq_len": [64], "tokens": [16384, 32768]},
                    train={"schedule": "wsd"})  # fmt: skip
    spec, trials = spec_lib.load(write_spec(tmp_path / "resumed.yaml", raw))
    (trunk,) = [t for t in trials if t.kind == "trunk"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)  # the runs as `scaling run` records them, without training
    experiment_id = tracker.experiment_id("resumed")
    for tokens in ((4096, 8192, 12288), (16384, 20480)):  # to its first branch point, then on
        parent = tracker.start_grid(experiment_id, spec, tmp_path / "resumed.yaml", [trunk])
        run_id = tracker.start_trial(experiment_id, parent, trunk)
        for step in tokens:
            tracker.log_metrics(run_id, {"step": step, "val_loss": 4 - step / 8192, "lr": 0.01})
        tracker.end_trial(run_id, Status.FINISHED)
        tracker.end_grid(parent)
    runs = from_mlflow(uri, "resumed")
    (latest,) = runs.trunks["run_id"]
    assert latest == run_id
    assert runs.curves[latest]["tokens"].tolist() == [4096, 8192, 12288, 16384, 20480]
    assert runs.lrs[latest]["tokens"].tolist() == [4096, 8192, 12288, 16384, 20480]


def ray_sessions() -> set[Path]:
    """The local Ray sessions this machine has started (one folder each)."""
    return set(Path(tempfile.gettempdir(), "ray").glob("session_2*"))


def test_a_rerun_skips_the_finished_trials(grid):
    before = ray_sessions()
    result = scaling(
        "run",
        str(grid["spec"]),
        "--tracking-uri",
        grid["uri"],
        "--storage",
        str(grid["folder"] / "runs"),
        cwd=grid["folder"],
    )
    assert result.returncode == 0, result.stderr
    assert "nothing to run: 2 of 2 already FINISHED" in result.stdout
    assert ray_sessions() == before  # with nothing left to run, no Ray was started
    client = grid["client"]
    experiment = client.get_experiment_by_name("pair")
    assert len(trial_runs(client, experiment.experiment_id)) == 2
    # ... and no grid run: the report still attaches to the one that trained the trials.
    grids = client.search_runs([experiment.experiment_id], "tags.`scaling.role` = 'grid'")
    assert len(grids) == 1


def test_a_hopeless_learning_rate_is_stopped_early_against_its_cells_earlier_runs(tmp_path):
    """search.stop_hopeless on a real grid: lr 1e-2 trains first, in a run of its own; the
    rerun that adds lr 1e-5 (far too small) compares it, at its first validation half its
    budget in, with the curve MLflow holds of 1e-2, and stops it. A third run trains nothing."""
    good = tiny_spec("hopeless", grid={"seq_len": [64], "tokens": [32768], "lr": [1e-2]})
    both = tiny_spec("hopeless", grid={"seq_len": [64], "tokens": [32768], "lr": [1e-2, 1e-5]},
                     search={"stop_hopeless": True})  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for raw in (good, both):
        spec = write_spec(tmp_path / "hopeless.yaml", raw)
        run = ["run", str(spec), "--tracking-uri", uri, "--storage", str(tmp_path / "runs")]
        result = scaling(*run, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr  # stopping is no failure
    assert "1 STOPPED, 1 skipped (already FINISHED or STOPPED)" in result.stdout, result.stdout
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("hopeless")
    runs = {r.info.run_name: r for r in trial_runs(client, experiment.experiment_id)}
    kept, stopped = runs["L1-d32-T64-lr0.01-s0"], runs["L1-d32-T64-lr1e-05-s0"]
    assert kept.data.tags["scaling.status"] == "FINISHED"
    assert stopped.data.tags["scaling.status"] == "STOPPED"
    assert stopped.info.status == "KILLED"
    assert stopped.data.tags["scaling.error"].startswith("stopped at 16384 tokens: val_loss ")
    history = client.get_metric_history(stopped.info.run_id, "val_loss")
    assert max(m.step for m in history) == 16384  # it trained no further than the stop
    rerun = scaling(*run, cwd=tmp_path)
    assert "nothing to run: 2 of 2 already FINISHED or STOPPED" in rerun.stdout, rerun.stderr


def test_an_unusable_store_fails_before_anything_runs(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tiny_spec())
    result = scaling("run", str(spec), "--tracking-uri", "http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("--tracking-uri: cannot use tracking store http://127.0.0.1:9")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_dashboard_serves_the_runs_over_rest(grid):
    port = free_port()
    server = subprocess.Popen(
        [*SCALING, "ui", "--tracking-uri", grid["uri"], "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        experiment = None
        deadline = time.monotonic() + 90
        while experiment is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"{base}/experiments/get-by-name?experiment_name=pair", timeout=5
                ) as response:
                    experiment = json.load(response)["experiment"]
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                time.sleep(0.5)
        assert experiment is not None, "the dashboard did not answer within 90 s"
        body = json.dumps(
            {
                "experiment_ids": [experiment["experiment_id"]],
                "filter": "tags.`scaling.role` = 'trial'",
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        assert sorted(r["info"]["run_name"] for r in runs) == ["L1-d32-T32-s0", "L1-d32-T64-s0"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_dashboard_of_a_store_that_is_not_there_is_refused(tmp_path):
    """`mlflow server` would create the store it is pointed at: a misplaced path would show an
    empty dashboard and leave an empty store behind."""
    missing = tmp_path / "mlflow.db"
    result = scaling("ui", "--tracking-uri", f"sqlite:///{missing}", "--port", str(free_port()),
                     cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        f"no tracking store at {missing}: run it where you ran `scaling run`, or pass "
        "--tracking-uri\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_analysis_side_reads_the_grid_back_as_one_table(grid):
    from analysis.runs import from_mlflow

    runs = from_mlflow(grid["uri"], "pair")
    table = runs.table
    assert list(table["name"]) == ["L1-d32-T32-s0", "L1-d32-T64-s0"]
    assert list(runs.finished["name"]) == list(table["name"]) and runs.not_finished.empty
    planned = {p["name"]: p for p in grid["plan"]}
    for _, row in table.iterrows():
        for key in ("params", "tokens", "seq_len", "flops_per_token"):
            assert row[key] == planned[row["name"]][key]
        assert 0 < row["val_loss"] < 6 and row["tokens_per_s"] > 0 and row["wall_s"] > 0
        curve = runs.curves[row["run_id"]]
        assert list(curve["tokens"]) == [16384, 32768]
        assert list(curve["flops"]) == [t * row["flops_per_token"] for t in curve["tokens"]]
        assert curve["val_loss"].iloc[-1] == row["val_loss"]
    # One scaling run's trials only, by its parent run.
    client = grid["client"]
    experiment = client.get_experiment_by_name("pair")
    parents = client.search_runs(
        [experiment.experiment_id],
        "tags.`scaling.role` = 'grid'",
        order_by=["attributes.start_time ASC"],
    )
    assert len(from_mlflow(grid["uri"], "pair", parents[0].info.run_id).table) == 2


def test_a_report_of_a_grid_too_small_to_fit_says_why(grid):
    """The report of real trials: two runs cannot identify a loss law, and the report says so
    instead of failing; the one size's time against length is still split."""
    out = grid["folder"] / "report"
    result = scaling("report", "pair", "--tracking-uri", grid["uri"], "--out", str(out))
    assert result.returncode == 0, result.stderr
    fits = json.loads((out / "fits.json").read_text())
    assert fits["seq_len"] == 64 and fits["runs"]["fitted"] == 1
    assert fits["chinchilla"] == {
        "refused": "a Chinchilla fit has 5 parameters and needs at least 5 points, got 1"
    }
    assert fits["predictions"]["refused"].startswith("no predictions: the Chinchilla fit")
    split = fits["time"]["seq_len_split"]["L1-d32"]
    assert split["flop_model_crossover"] == 192 and split["a_s_per_token"] > 0
    assert (out / "report.html").stat().st_size > 10_000
    assert "Refused: a Chinchilla fit has 5 parameters" in (out / "report.md").read_text()
