"""`scaling plan`'s estimates against what the smoke grid then measures.

Plans `experiments/smoke.yaml` (step times measured here, per shape), runs it with
`scaling run` on a local Ray into a scratch MLflow store, and compares each trial's estimated
wall time and peak memory with its measured `wall_s` and `peak_mem_bytes`. Prints one JSON
object per trial and a summary. Target: every estimate within ±30%.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow import MlflowClient

from scaling.contract import PEAK_MEM_BYTES, WALL_S, trial_runs_filter

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "experiments" / "smoke.yaml"
SCALING = str(Path(sys.executable).with_name("scaling"))


def main() -> None:
    plan = json.loads(
        subprocess.run(
            [SCALING, "plan", str(SPEC), "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        subprocess.run(
            [SCALING, "run", str(SPEC), "--tracking-uri", uri, "--storage", folder, "--quiet"],
            cwd=folder,
            capture_output=True,
            check=True,
        )
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("smoke")
        runs = client.search_runs([experiment.experiment_id], trial_runs_filter())
        measured = {r.info.run_name: r.data.metrics for r in runs}
    time_errors, memory_errors = [], []
    for trial in plan:
        metrics = measured[trial["name"]]
        time_error = trial["est_seconds"] / metrics[WALL_S] - 1
        memory_error = trial["est_peak_bytes"] / metrics[PEAK_MEM_BYTES] - 1
        time_errors.append(time_error)
        memory_errors.append(memory_error)
        print(
            json.dumps(
                {
                    "benchmark": "plan_estimate",
                    "trial": trial["name"],
                    "est_seconds": round(trial["est_seconds"], 2),
                    "wall_s": round(metrics[WALL_S], 2),
                    "time_error": round(time_error, 3),
                    "est_peak_mib": round(trial["est_peak_bytes"] / 2**20),
                    "peak_mib": round(metrics[PEAK_MEM_BYTES] / 2**20),
                    "memory_error": round(memory_error, 3),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "benchmark": "plan_estimate_summary",
                "trials": len(plan),
                "worst_time_error": round(max(time_errors, key=abs), 3),
                "worst_memory_error": round(max(memory_errors, key=abs), 3),
                "within_30_percent": sum(
                    abs(t) <= 0.3 and abs(m) <= 0.3 for t, m in zip(time_errors, memory_errors)
                ),
                "target": "every trial within ±30% in time and memory",
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
