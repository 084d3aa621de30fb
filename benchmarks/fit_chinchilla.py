"""How long the Chinchilla Approach 3 fit takes on the published data: the full 4,500-start
fit (target: at most 10 s on a 2-core machine), and 4,000 bootstrap resamples. Prints JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from analysis.fit import fit_chinchilla

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_fig4_epoch.csv"


def main() -> None:
    df = pd.read_csv(DATA).sort_values("loss").iloc[:-5]
    N = df["Model Size"].to_numpy()
    D = df["Training FLOP"].to_numpy() / (6 * N)
    started = time.perf_counter()
    fit = fit_chinchilla(N, D, df["loss"].to_numpy())
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    fit_chinchilla(N, D, df["loss"].to_numpy(), bootstrap=4000)
    with_bootstrap_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "benchmark": "fit_chinchilla",
                "points": fit.n_points,
                "starts": fit.n_starts,
                "fit_s": round(fit_s, 2),
                "target_fit_s": 10,
                "fit_and_4000_resamples_s": round(with_bootstrap_s, 2),
                "alpha": round(fit.law.alpha, 4),
                "beta": round(fit.law.beta, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
