"""A trial on two data-parallel workers (Ray Train's TorchTrainer launched from a Tune trial,
Lightning with RayDDPStrategy over gloo): it trains what one worker trains, and reports the
tokens and MFU of both."""

from __future__ import annotations

import pytest
from helpers import run_grid, tiny_spec, trial_runs, write_spec
from mlflow import MlflowClient

from scaling import trial as trial_lib
from scaling.spec import expand, parse

pytestmark = pytest.mark.slow  # Ray Train workers on a local Ray

SPEC = tiny_spec(
    "ddp",
    grid={"seq_len": [64], "tokens": [32768]},
    resources={"cpus_per_trial": 1, "workers_per_trial": 2},
)


def test_a_two_worker_trial_matches_one_worker_and_counts_both(tmp_path):
    spec = write_spec(tmp_path / "ddp.yaml", SPEC)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_grid(spec, uri, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    client = MlflowClient(uri)
    (run,) = trial_runs(uri, "ddp")
    assert run.data.tags["scaling.status"] == "FINISHED"
    assert run.data.params["resources.workers_per_trial"] == "2"
    assert run.data.params["micro_batch_size"] == "32"  # each worker takes half the batch
    val = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in val] == [16384, 32768]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "tokens_per_s")] == [
        8192,
        16384,
        24576,
        32768,
    ]
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]

    # The same trial on one worker: the same windows and the same averaged gradients.
    (single,) = expand(parse(tiny_spec("ddp", grid={"seq_len": [64], "tokens": [32768]})))
    reference = trial_lib.run(single, None, tmp_path / "single")
    assert val[-1].value == pytest.approx(reference.val_loss, abs=0.03)
