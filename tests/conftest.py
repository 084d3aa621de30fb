"""Session fixtures. Real components only: the stdlib corpus, real Lightning, real MLflow.
Everything a test writes lies under pytest's temporary folders, HOME included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scaling.cli import configure

configure()  # the command's environment, for the tests that call the library in this process


@pytest.fixture(scope="session", autouse=True)
def home(tmp_path_factory) -> Path:
    """A HOME and a working folder of the session's own: Ray writes its auth token under
    ~/.ray, and a SQLite MLflow store keeps artifacts in ./mlruns, so the tests (and the Rays
    and commands they start) touch neither the user's home nor the checkout."""
    path = tmp_path_factory.mktemp("home")
    os.environ["HOME"] = str(path)
    os.chdir(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """One token cache for the whole session, away from the user's ~/.cache."""
    path = tmp_path_factory.mktemp("scaling-cache")
    os.environ["SCALING_CACHE_DIR"] = str(path)
    return path
