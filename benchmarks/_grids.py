"""What the benchmarks that run whole grids share: running a spec with the real `scaling run`
into one SQLite store, and an Approach-3 law with its intervals as JSON. Not a benchmark."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from analysis.fit import ChinchillaFit

SCALING = str(Path(sys.executable).with_name("scaling"))


def store(out: Path) -> str:
    return f"sqlite:///{out / 'mlflow.db'}"


def run(spec: Path, out: Path) -> float:
    """Run `spec` with `scaling run` into the store under `out`; the wall seconds it took (a
    rerun skips what finished)."""
    started = time.perf_counter()
    subprocess.run(
        [SCALING, "run", str(spec), "--tracking-uri", store(out), "--storage", str(out / "runs"),
         "--quiet"],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def law(fit: ChinchillaFit) -> dict:
    """alpha, beta and a = beta/(alpha+beta), each with its 95% bootstrap interval."""
    values = {}
    for name in ("alpha", "beta", "a"):
        value = getattr(fit.law, name)
        low, high = fit.interval(lambda law, name=name: getattr(law, name)) or (None, None)
        values[name] = {"value": round(value, 4), "ci95": [round(low, 4), round(high, 4)]}
    return values
