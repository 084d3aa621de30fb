"""Does the best learning rate hold across widths, and does tuning each cell move the law?
On this machine, it runs

- experiments/lr_transfer.yaml (4 widths at a fixed depth, 5 LRs, under µP) and its twin
  under the standard parametrization, and prints each width's LR* (the vertex of a parabola in
  log LR) for both, and the ratio of the largest LR* to the smallest (target under µP at most
  1.5; standard as measured);
- experiments/smoke.yaml at its longest length with the LR swept (1/3, 1 and 3 times its
  train.lr), and prints the Approach-3 law fitted at one LR (the spec's) against the law
  fitted on each (size, tokens) cell's best LR.

    python benchmarks/lr_transfer.py [--out DIR]

Every grid goes to one SQLite store under DIR (default: a temporary folder); a rerun with the
same DIR skips what finished.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from _grids import law, run, store

from analysis.analyse import finished_runs
from analysis.fit import fit_chinchilla
from analysis.learning_rate import sweep
from analysis.runs import from_mlflow
from scaling.cli import configure
from scaling.contract import VAL_LOSS

REPO = Path(__file__).resolve().parents[1]
SMOKE_LR_MULTIPLIERS = [1 / 3, 1, 3]


def specs(out: Path) -> dict[str, Path]:
    """lr_transfer under µP and under standard, and the smoke grid swept at its longest length."""
    transfer = yaml.safe_load((REPO / "experiments" / "lr_transfer.yaml").read_text())
    model = {
        k: v for k, v in transfer["model"].items() if k not in ("parametrization", "base_width")
    }
    smoke = yaml.safe_load((REPO / "experiments" / "smoke.yaml").read_text())
    grid = {**smoke["grid"], "seq_len": [max(smoke["grid"]["seq_len"])]}
    raw = {
        "mup": transfer,
        "standard": {**transfer, "model": model},
        "smoke": {**smoke, "grid": {**grid, "lr_multipliers": SMOKE_LR_MULTIPLIERS}},
    }
    paths = {}
    for name, spec in raw.items():
        spec = {**spec, "tracking": {"experiment": f"{spec['name']}-{name}"}}
        paths[name] = out / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(spec, sort_keys=False))
    return paths


def finished(out: Path, experiment: str) -> pd.DataFrame:
    return finished_runs(from_mlflow(store(out), experiment), experiment)


def lr_star_per_width(points: pd.DataFrame) -> dict:
    cells = sweep(points).cells.sort_values("params")
    stars = {
        row["size"]: {
            "lr_star": round(row["lr_star"], 5),
            "ci95": None if pd.isna(row["ci95_low"]) else [row["ci95_low"], row["ci95_high"]],
            "method": row["method"],
            "bracketed": bool(row["bracketed"]),
            "note": row["note"] if isinstance(row["note"], str) else None,
            "best_val_loss": round(row["best_val_loss"], 4),
        }
        for _, row in cells.iterrows()
    }
    ratio = round(cells["lr_star"].max() / cells["lr_star"].min(), 2)
    # With a width's optimum outside its sweep, its LR* is a bound and so is the ratio.
    return {
        "lr_star": stars,
        "ratio": ratio,
        "every_width_bracketed": bool(cells["bracketed"].all()),
    }


def approach_3(points: pd.DataFrame) -> dict:
    fit = fit_chinchilla(points["params"], points["tokens"], points[VAL_LOSS], bootstrap=1000)
    return {**law(fit), "n_points": len(points)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="keep the grids' store here (default: a temp folder)")
    args = parser.parse_args()
    configure()
    out = Path(args.out or tempfile.mkdtemp(prefix="lr_transfer-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = specs(out)
    wall = {name: round(run(path, out), 1) for name, path in paths.items()}
    experiments = {name: yaml.safe_load(p.read_text())["tracking"]["experiment"]
                   for name, p in paths.items()}  # fmt: skip
    # The spec's LRs only: a store kept from an earlier sweep may hold others.
    swept = [float(lr) for lr in yaml.safe_load(paths["mup"].read_text())["grid"]["lr"]]
    transfer = {}
    for parametrization in ("standard", "mup"):
        runs = finished(out, experiments[parametrization])
        runs = runs[runs["lr"].apply(lambda lr: any(abs(lr / s - 1) < 1e-9 for s in swept))]
        transfer[parametrization] = lr_star_per_width(runs)
    smoke = finished(out, experiments["smoke"])
    spec_lr = yaml.safe_load((REPO / "experiments" / "smoke.yaml").read_text())["train"]["lr"]
    at_one_lr = smoke[(smoke["lr"] - float(spec_lr)).abs() < 1e-12]
    at_best_lr = smoke[smoke["run_id"].isin(sweep(smoke).best_run_ids)]
    print(
        json.dumps(
            {
                "benchmark": "lr_transfer",
                "store": store(out),
                "transfer": transfer,
                "target_mup_ratio": 1.5,
                "smoke_approach_3": {
                    "at_one_lr": approach_3(at_one_lr),
                    "at_each_cells_best_lr": approach_3(at_best_lr),
                    "cells_whose_best_lr_is_not_the_specs": int(
                        (~at_best_lr["run_id"].isin(at_one_lr["run_id"])).sum()
                    ),
                },
                "wall_s": wall,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
