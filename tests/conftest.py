"""Session fixtures. Real components only: the stdlib corpus, real Lightning, real MLflow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """One token cache for the whole session, away from the user's ~/.cache."""
    path = tmp_path_factory.mktemp("scaling-cache")
    os.environ["SCALING_CACHE_DIR"] = str(path)
    return path
