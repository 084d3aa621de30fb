"""How much of a WSD branch's seed noise it shares with its trunk's other branches, measured on a
finished grid with two seeds (the estimator study simulates WSD grids with this split).

For each (size, budget) the two seeds' difference in log final loss, d. A trunk's share of the
noise moves every branch of that size and seed together; a branch's own share moves it alone.
So the variance of d across a size's budgets measures twice the branch's own part, and the
variance across sizes of their mean d twice the trunk's plus a budget-count's share of the
branch's (a one-way random-effects split by moments).

    python benchmarks/seed_noise_split.py [SPEC] [--out DIR]
    python benchmarks/seed_noise_split.py --tracking-uri URI --experiment NAME

The first runs SPEC (default experiments/wsd.yaml, about 15 minutes on 2 cores here) with
seeds 0 and 1 into a SQLite store under DIR (default: a temporary folder; a rerun with the
same DIR skips what finished), as experiment `<name>-2seeds`; the second measures a grid
already run with two seeds. Prints JSON: each cell's difference between the seeds, each
part's standard deviation and the trunk's share of the variance.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml
from _grids import run, store

from analysis.runs import from_mlflow
from scaling.cli import configure
from scaling.contract import VAL_LOSS

REPO = Path(__file__).resolve().parents[1]


def run_two_seeds(spec_path: Path, out: Path) -> tuple[str, str]:
    """Run the spec with seeds 0 and 1 into the store under `out`: its URI and experiment."""
    raw = yaml.safe_load(spec_path.read_text())
    name = f"{raw['name']}-2seeds"
    spec = {**raw, "grid": {**raw["grid"], "seeds": [0, 1]}, "tracking": {"experiment": name}}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    run(path, out)
    return store(out), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "experiments" / "wsd.yaml"))
    parser.add_argument("--out", help="keep the grid's store here (default: a temp folder)")
    parser.add_argument("--tracking-uri", help="with --experiment: measure a grid already run")
    parser.add_argument("--experiment")
    args = parser.parse_args()
    if bool(args.tracking_uri) != bool(args.experiment):
        parser.error("--tracking-uri and --experiment go together: the store and its grid")
    configure()
    if args.experiment:
        uri, experiment = args.tracking_uri, args.experiment
    else:
        out = Path(args.out or tempfile.mkdtemp(prefix="seed_noise_split-")).resolve()
        out.mkdir(parents=True, exist_ok=True)
        uri, experiment = run_two_seeds(Path(args.spec), out)
    finished = from_mlflow(uri, experiment).finished
    seeds = sorted(finished["seed"].unique())[:2]
    if len(seeds) < 2:
        raise SystemExit(f"{experiment}: needs two seeds, has {len(seeds)}")
    log_loss = finished.assign(log_loss=np.log(finished[VAL_LOSS])).pivot_table(
        index="params", columns=["tokens", "seed"], values="log_loss"
    )
    d = log_loss.xs(seeds[1], axis=1, level="seed") - log_loss.xs(seeds[0], axis=1, level="seed")
    budgets = d.shape[1]
    branch_var = d.var(axis=1, ddof=1).mean() / 2
    trunk_var = max((d.mean(axis=1).var(ddof=1) - 2 * branch_var / budgets) / 2, 0.0)
    print(
        json.dumps(
            {
                "benchmark": "seed_noise_split",
                "experiment": experiment,
                "sizes": int(d.shape[0]),
                "budgets": budgets,
                "difference_percent": {
                    f"{params:.0f}": [round(100 * v, 2) for v in row]
                    for params, row in d.iterrows()
                },
                "seed_sd_per_run": round(float(np.sqrt((d**2).to_numpy().mean() / 2)), 5),
                "trunk_sd": round(float(np.sqrt(trunk_var)), 5),
                "branch_own_sd": round(float(np.sqrt(branch_var)), 5),
                "trunk_share": round(float(trunk_var / (trunk_var + branch_var)), 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
