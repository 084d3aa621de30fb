"""The spool: a grid's MLflow writes journaled on local disk and replayed, into the grid's own
store or into another, each once. Real SQLite stores; the outage itself, with a real server
going away mid-grid, is in test_outage.py."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from scaling.spool import APPLIED, Spool, SpoolError


def store(tmp_path, name: str) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / name}.db")


def write_a_run(spool: Spool, client: MlflowClient, tmp_path) -> str:
    """What a grid writes of one trial, through the spool."""
    experiment_id = client.create_experiment("spooled")
    parent = spool.create_run(experiment_id, tags={"role": "grid"}, run_name="grid").info.run_id
    run = spool.create_run(experiment_id, tags={"mlflow.parentRunId": parent}, run_name="t1")
    run_id = run.info.run_id
    spool.log_batch(run_id, params=[Param("tokens", "65536")], tags=[RunTag("status", "RUNNING")])
    for step in (1, 2, 3):
        spool.log_batch(run_id, metrics=[Metric("val_loss", 4.0 - step, 1000 + step, step)])
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"weights")
    spool.log_artifact(run_id, str(checkpoint))
    checkpoint.unlink()  # as the driver's scratch folder goes
    spool.set_tag(run_id, "status", "FINISHED")
    spool.set_terminated(run_id, "FINISHED")
    spool.set_terminated(parent, "FINISHED")
    return run_id


def only_trial(client: MlflowClient):
    experiment = client.get_experiment_by_name("spooled")
    (run,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 't1'")
    return run


def test_a_spool_writes_through_while_the_store_answers_and_replays_into_another(tmp_path):
    home, other = store(tmp_path, "home"), store(tmp_path, "other")
    spool = Spool(tmp_path / "spool", home, "spooled")
    run_id = write_a_run(spool, home, tmp_path)
    assert not spool.waiting  # all written through, in place
    assert only_trial(home).info.run_id == run_id
    spool.close()

    # Everything again, into a store that has never seen the grid.
    replay = Spool.open(tmp_path / "spool", other.tracking_uri)
    assert len(replay.waiting) == 10 and replay.drain(60)
    run = only_trial(other)
    grid = other.search_runs([run.info.experiment_id], "attributes.run_name = 'grid'")[0]
    assert run.data.tags["mlflow.parentRunId"] == grid.info.run_id  # its key, resolved
    assert run.data.params == {"tokens": "65536"} and run.data.tags["status"] == "FINISHED"
    assert run.info.status == "FINISHED"
    history = other.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert [a.path for a in other.list_artifacts(run.info.run_id)] == ["checkpoint.pt"]
    replay.close()

    # A replay whose record of what it wrote was lost writes nothing twice.
    applied = tmp_path / "spool" / APPLIED
    lines = [json.loads(line) for line in applied.read_text().splitlines()]
    applied.write_text(
        "".join(json.dumps(x) + "\n" for x in lines if x["store"] != other.tracking_uri)
    )
    again = Spool.open(tmp_path / "spool", other.tracking_uri)
    assert again.drain(60)
    run = only_trial(other)  # still one
    assert len(other.get_metric_history(run.info.run_id, "val_loss")) == 3
    again.close()


def test_a_spool_has_one_writer(tmp_path):
    spool = Spool(tmp_path / "spool", store(tmp_path, "home"), "spooled")
    with pytest.raises(SpoolError, match="is in use by the driver that writes it"):
        Spool.open(tmp_path / "spool")
    spool.close()
    Spool.open(tmp_path / "spool").close()


def test_a_journal_line_cut_short_by_a_crash_is_dropped_and_the_next_starts_clean(tmp_path):
    home = store(tmp_path, "home")
    spool = Spool(tmp_path / "spool", home, "spooled")
    write_a_run(spool, home, tmp_path)
    spool.close()
    journal = tmp_path / "spool" / "writes.jsonl"
    journal.write_text(journal.read_text() + '{"seq": 10, "op": "log_b')  # the crash
    reopened = Spool.open(tmp_path / "spool")
    assert not reopened.waiting and reopened.count == 10
    reopened.set_terminated(only_trial(home).info.run_id, "FINISHED")
    assert json.loads(journal.read_text().splitlines()[-1])["seq"] == 10
    reopened.close()


def test_a_spool_that_is_not_one_is_named(tmp_path):
    with pytest.raises(SpoolError, match=r"is not a spool \(no readable meta.json\)"):
        Spool.open(tmp_path)
