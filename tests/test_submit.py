"""What `scaling submit` refuses before it contacts a cluster, and what it carries to one.
(A grid submitted to a real cluster is in test_cluster.py.)"""

from __future__ import annotations

import pytest
from helpers import tiny_spec, write_spec

from scaling import jobs
from scaling import spec as spec_lib
from scaling.cli import main

NOWHERE = "http://127.0.0.1:9"  # nothing answers there: a refusal must come first


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A folder to submit from, with text files that a relative data.path names."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus" / "more").mkdir(parents=True)
    (tmp_path / "corpus" / "a.txt").write_text("one document")
    (tmp_path / "corpus" / "more" / "b.txt").write_text("another")
    return tmp_path


def files_spec(folder, path: str):
    raw = tiny_spec("files", data={"source": "files", "path": path})
    return write_spec(folder / "files.yaml", raw)


def test_a_submitted_grid_carries_its_spec_and_the_data_files_at_their_relative_paths(corpus):
    spec_path = files_spec(corpus, "corpus/**/*.txt")
    spec, _ = spec_lib.load(spec_path)
    into = corpus / "job"
    into.mkdir()
    jobs.working_dir(spec, spec_path, into)
    carried = sorted(p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file())
    assert carried == ["corpus/a.txt", "corpus/more/b.txt", "files.yaml"]
    assert jobs.entrypoint(spec_path, ["--storage", "s3://b/p"]) == (
        "scaling run files.yaml --quiet --storage s3://b/p"
    )


def test_a_working_dir_over_the_job_servers_limit_is_refused_in_one_line(corpus, capsys):
    with open(corpus / "corpus" / "big.txt", "wb") as big:
        big.truncate(101 * 2**20)  # sparse: the size without the disk
    spec = files_spec(corpus, "corpus/*.txt")
    code = main(["submit", str(spec), "--tracking-uri", NOWHERE, "--address", NOWHERE])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert error.startswith(f"{spec}: data.path: the files a submitted grid carries come to 101")
    assert "over the job server's 100 MiB limit" in error


@pytest.mark.parametrize(
    "options, message",
    [
        ([], "--tracking-uri: a submitted grid is recorded from the cluster's head"),
        (["--tracking-uri", "sqlite:///mlflow.db"], "an absolute sqlite:////"),
        (["--tracking-uri", NOWHERE, "--storage", "runs"], "--storage: 'runs' is relative"),
        (["--tracking-uri", NOWHERE, "--spool", "spool"], "--spool: 'spool' is relative"),
    ],
)
def test_submit_refuses_what_the_clusters_head_could_not_use(
    corpus, capsys, monkeypatch, options, message
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = files_spec(corpus, "corpus/*.txt")
    assert main(["submit", str(spec), "--address", NOWHERE, *options]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and message in error


def test_a_job_server_that_does_not_answer_is_named(corpus, capsys):
    spec = files_spec(corpus, "corpus/*.txt")
    assert main(["submit", str(spec), "--tracking-uri", NOWHERE, "--address", NOWHERE]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"--address: cannot reach the Ray job server at {NOWHERE}: ")
