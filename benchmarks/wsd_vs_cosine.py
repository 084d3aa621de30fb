"""WSD trunks and branches against cosine from scratch, on this machine: runs one grid
(default experiments/wsd.yaml) under both schedules, then prints JSON with

- the FLOPs the WSD grid spends over the cosine grid's (target at most 0.65),
- each budget's final validation loss under WSD against its cosine twin: the worst and the
  median relative difference (target: every one within 1%),
- the Approach-3 law of each grid (alpha, beta, a = beta/(alpha+beta)) with 95% bootstrap
  intervals (target: each grid's value inside the other's interval).

    python benchmarks/wsd_vs_cosine.py [SPEC] [--out DIR]

Both grids go to one SQLite store under DIR (default: a temporary folder), as experiments
`<name>-wsd` and `<name>-cosine`; a rerun with the same DIR skips what finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import yaml
from _grids import law, run, store

from analysis.analyse import analyse
from scaling.cli import configure
from scaling.contract import SCHEDULE_PARAMS, VAL_LOSS
from scaling.spec import cosine_twin, expand, parse

REPO = Path(__file__).resolve().parents[1]


def grid_specs(spec_path: Path, out: Path) -> dict[str, Path]:
    """The spec under wsd and its cosine twin, each as its own experiment."""
    raw = yaml.safe_load(spec_path.read_text())
    cosine = {**raw, "train": {k: v for k, v in raw["train"].items() if k not in SCHEDULE_PARAMS}}
    paths = {}
    for schedule, spec in (("wsd", raw), ("cosine", cosine)):
        spec = {**spec, "tracking": {"experiment": f"{raw['name']}-{schedule}"}}
        paths[schedule] = out / f"{raw['name']}-{schedule}.yaml"
        paths[schedule].write_text(yaml.safe_dump(spec, sort_keys=False))
    return paths


def inside(value: dict, other: dict) -> bool:
    low, high = other["ci95"]
    return low <= value["value"] <= high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(REPO / "experiments" / "wsd.yaml"))
    parser.add_argument("--out", help="keep both grids' store here (default: a temp folder)")
    args = parser.parse_args()
    configure()
    out = Path(args.out or tempfile.mkdtemp(prefix="wsd_vs_cosine-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = grid_specs(Path(args.spec), out)
    wall = {schedule: round(run(path, out), 1) for schedule, path in paths.items()}

    spec = parse(yaml.safe_load(paths["wsd"].read_text()))
    spent = sum(t.trained_flops for t in expand(spec))
    cosine_flops = sum(t.flops for t in expand(cosine_twin(spec)))

    from analysis.runs import from_mlflow

    analyses = {
        schedule: analyse(from_mlflow(store(out), f"{spec.name}-{schedule}"), schedule)
        for schedule in paths
    }
    losses = {
        schedule: dict(zip(a.points["name"], a.points[VAL_LOSS]))
        for schedule, a in analyses.items()
    }
    differences = {
        name: (losses["wsd"][name] - cosine) / cosine
        for name, cosine in losses["cosine"].items()
        if name in losses["wsd"]
    }
    laws = {schedule: law(a.chinchilla) for schedule, a in analyses.items()}  # type: ignore[arg-type]
    print(
        json.dumps(
            {
                "benchmark": "wsd_vs_cosine",
                "spec": str(args.spec),
                "store": store(out),
                "flops": {"wsd": spent, "cosine": cosine_flops},
                "flops_ratio": round(spent / cosine_flops, 3),
                "target_flops_ratio": 0.65,
                "budgets_compared": len(differences),
                "val_loss_relative_difference": {
                    name: round(d, 4) for name, d in sorted(differences.items())
                },
                "worst_relative_difference": round(max(differences.values(), key=abs), 4),
                "median_relative_difference": round(statistics.median(differences.values()), 4),
                "target_abs_relative_difference": 0.01,
                "approach_3": laws,
                "each_inside_the_others_interval": {
                    name: inside(laws["wsd"][name], laws["cosine"][name])
                    and inside(laws["cosine"][name], laws["wsd"][name])
                    for name in laws["wsd"]
                },
                "wall_s": wall,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
