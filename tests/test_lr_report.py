"""A grid with a learning-rate axis, end to end on the analysis side: every cell's LR*, the
loss laws fitted on each cell's best run only, an unbracketed cell named, the LR law in
fits.json and the report, and a STOPPED run never fitted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.analyse import analyse
from analysis.laws import ChinchillaLaw
from analysis.report import write_report
from analysis.runs import from_csv

LAW = ChinchillaLaw(E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.37)
SIZES, BUDGETS = (1e6, 3e6, 1e7, 3e7), (1e8, 3e8, 1e9)
LRS = np.geomspace(1e-3, 3e-2, 5)  # a half-decade apart around every cell's optimum


def lr_star(N: float, D: float) -> float:
    """The known LR law the grid's losses are drawn from: LR* = 0.05 · N^-0.3 · D^0.1."""
    return 0.05 * N**-0.3 * D**0.1


def sweep_rows(rng) -> pd.DataFrame:
    """Loss = the Chinchilla law at (N, D) + 0.05·log(LR/LR*)² + noise; the smallest model at
    the smallest budget is swept only above its optimum, so it cannot bracket it."""
    rows = []
    for N in SIZES:
        for D in BUDGETS:
            lrs = LRS * 8 if (N, D) == (SIZES[0], BUDGETS[0]) else LRS
            for lr in lrs:
                penalty = 0.05 * np.log(lr / lr_star(N, D)) ** 2
                loss = LAW.loss(N, D) + penalty + rng.normal(0, 0.002)
                rows.append({"N": N, "D": D, "lr": lr, "loss": loss, "status": "FINISHED"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("lr")
    table = sweep_rows(np.random.default_rng(0))
    # A STOPPED run with the lowest loss of all: were it fitted, its cell's best would move.
    stopped = {"N": 3e7, "D": 1e9, "lr": 3e-3, "loss": 1.0, "status": "STOPPED"}
    table = pd.concat([table, pd.DataFrame([stopped])], ignore_index=True)
    table.to_csv(out / "sweep.csv", index=False)
    runs = from_csv(str(out / "sweep.csv"), {"params": "N", "tokens": "D", "val_loss": "loss"})
    analysis = analyse(runs, "sweep", source="CSV", bootstrap=100)
    folder = write_report(analysis, out / "report")
    return analysis, folder, json.loads((folder / "fits.json").read_text())


def test_every_cell_gets_its_lr_star_and_the_loss_laws_only_its_best_run(report):
    analysis, _, fits = report
    cells = analysis.learning_rates.sweep.cells
    assert len(cells) == len(SIZES) * len(BUDGETS)
    vertices = cells[cells["method"] == "vertex"]
    truth = [lr_star(N, D) for N, D in zip(vertices["params"], vertices["tokens"])]
    assert np.allclose(vertices["lr_star"], truth, rtol=0.1)
    assert len(analysis.points) == len(cells)  # one point per cell: its best LR
    assert fits["runs"]["fitted"] == len(cells)
    # Fitted on tuned points, the law of size and data is the one the losses were drawn from.
    assert fits["chinchilla"]["alpha"]["value"] == pytest.approx(LAW.alpha, abs=0.03)


def test_a_cell_whose_best_lr_is_at_the_edge_of_its_sweep_is_named(report):
    analysis, folder, fits = report
    (cell,) = analysis.learning_rates.sweep.unbracketed.to_dict("records")
    assert (cell["params"], cell["tokens"]) == (SIZES[0], BUDGETS[0])
    assert cell["note"] == "optimum not bracketed: extend the sweep below 0.008"
    assert (
        "optimum not bracketed: extend the sweep below 0.008" in (folder / "report.md").read_text()
    )
    assert fits["learning_rate"]["unbracketed"] == 1


def test_the_lr_law_is_recovered_and_written(report):
    _, folder, fits = report
    law = fits["learning_rate"]["lr_law"]
    assert law["exponent_N"] == pytest.approx(-0.3, abs=0.05)
    assert law["exponent_D"] == pytest.approx(0.1, abs=0.05)
    assert law["left_out"] == 1  # the unbracketed cell is a bound, not an estimate
    assert fits["learning_rate"]["lr_compute_law"]["exponent"] < 0
    assert {"lr_sweeps.png", "lr_law.png"} <= {p.name for p in (folder / "plots").iterdir()}
    assert "## Learning rate" in (folder / "report.md").read_text()


def test_a_stopped_run_is_never_fitted(report):
    analysis, _, fits = report
    assert (analysis.points["status"] == "FINISHED").all()
    assert 1.0 not in set(analysis.learning_rates.swept_points["val_loss"])
    assert [r["status"] for r in fits["runs"]["not_finished"]] == ["STOPPED"]


def test_a_finished_row_without_a_learning_rate_is_refused_not_silently_unswept(tmp_path):
    from analysis.runs import CsvError

    table = sweep_rows(np.random.default_rng(1))
    table["lr"] = table["lr"].astype(object)
    table.loc[3, "lr"] = "fast"
    table.to_csv(tmp_path / "sweep.csv", index=False)
    with pytest.raises(CsvError, match="column 'lr' row 4 is not a number"):
        from_csv(str(tmp_path / "sweep.csv"), {"params": "N", "tokens": "D", "val_loss": "loss"})
