"""The Chinchilla fit: the published known answer, bootstrap intervals, recovery of random
known laws, and clear refusals where the data cannot identify the law."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import scaling

from analysis.cautions import ALLOCATION, EXPONENT
from analysis.curves import fixed_tokens
from analysis.fit import ChinchillaFit, FitError, fit_chinchilla, huber_objective
from analysis.laws import ChinchillaLaw
from scaling.cli import main

CHINCHILLA = Path(__file__).resolve().parent / "data" / "chinchilla_fig4_epoch.csv"
# The file's columns, and the 5 highest losses left out, as the replication fits them.
AS_THE_REPLICATION = ["--params-col", "Model Size", "--flops-col", "Training FLOP",
                      "--loss-col", "loss", "--drop-highest-loss", "5"]  # fmt: skip


def chinchilla_points():
    """Figure 4's points less the 5 highest losses, as the replication fits them."""
    df = pd.read_csv(CHINCHILLA).sort_values("loss").iloc[:-5]
    N = df["Model Size"].to_numpy()
    return N, df["Training FLOP"].to_numpy() / (6 * N), df["loss"].to_numpy()


@pytest.fixture(scope="module")
def chinchilla_fit():
    return fit_chinchilla(*chinchilla_points(), bootstrap=4000, seed=0)


def test_the_fit_recovers_the_replications_known_answer():
    fit = fit_chinchilla(*chinchilla_points(), bootstrap=50, seed=0)  # few resamples: fast
    expected = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
    for name, value in expected.items():
        assert getattr(fit.law, name) == pytest.approx(value, rel=0.005), name
        low, high = fit.interval(lambda law, name=name: getattr(law, name))
        assert low < getattr(fit.law, name) < high, name
    assert fit.objective == pytest.approx(1.018e-3, rel=0.005)
    assert (fit.n_points, fit.n_starts, fit.resamples) == (240, 4500, 50)
    assert fit.warnings() == []  # 240 points pin every parameter for what the report does


@pytest.mark.slow  # the replication's 4,000 resamples
def test_bootstrap_intervals_match_the_replication(chinchilla_fit):
    assert chinchilla_fit.resamples == 4000
    low, high = chinchilla_fit.interval(lambda law: law.alpha)
    assert low == pytest.approx(0.317, abs=0.01) and high == pytest.approx(0.373, abs=0.01)
    low, high = chinchilla_fit.interval(lambda law: law.beta)
    assert low == pytest.approx(0.331, abs=0.01) and high == pytest.approx(0.415, abs=0.01)
    assert chinchilla_fit.law.a == pytest.approx(0.513, abs=0.005)
    # Derived quantities get intervals too, and they bracket the point estimate.
    low, high = chinchilla_fit.interval(lambda law: law.n_opt(1e24))
    assert low < chinchilla_fit.law.n_opt(1e24) < high
    block = chinchilla_fit.to_dict()
    assert set(block) >= {"E", "A", "B", "alpha", "beta", "a", "resamples"}
    assert block["alpha"]["ci95"][0] < block["alpha"]["value"] < block["alpha"]["ci95"][1]


def test_an_interval_is_loose_when_it_cannot_serve_the_reports_use_of_it():
    # a chooses an allocation: 0.2 wide or more cannot tell Kaplan's 0.73 from Chinchilla's 0.5.
    assert ALLOCATION.caution("a", (0.13, 0.97)) == (
        "the 95% interval of a runs from 0.13 to 0.97: 0.84 wide, 0.2 or more, so it cannot "
        "tell Kaplan's a = 0.73 from Chinchilla's 0.5"
    )
    assert ALLOCATION.caution("a", (0.45, 0.6)) is None
    # An exponent extrapolates the law: ends over 2x apart, or 0 inside, do not pin it.
    assert EXPONENT.too_wide(0.022, 0.71) == "its ends are 32.3x apart, more than 2x"
    assert EXPONENT.too_wide(-0.05, 0.3) == "it includes 0"
    # Below 0 the loss rises with the quantity: no law to extrapolate, however narrow.
    assert EXPONENT.too_wide(-0.08, -0.04) == "it lies below 0: the loss rises, not falls"
    assert EXPONENT.too_wide(0.3, 0.4) is None and EXPONENT.caution("alpha", None) is None


def test_a_fit_warns_where_its_intervals_leave_a_and_alpha_loose():
    """alpha from 0.02 to 0.72 (under the old rule's width of 1) and, through it, a from
    0.34 to 0.95: both named, with why; beta, pinned, is not."""
    law = ChinchillaLaw(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)
    samples = [replace(law, alpha=alpha) for alpha in np.linspace(0.02, 0.72, 41)]
    fit = ChinchillaFit(law, 1e-3, n_points=12, n_starts=4500, resamples=41, samples=samples)
    alpha, a = fit.warnings()
    assert alpha.startswith("the 95% interval of alpha runs from 0.0") and "x apart" in alpha
    assert "does not pin the law's extrapolation" in alpha
    assert a.startswith("the 95% interval of a runs from 0.34") and "Kaplan's" in a
    assert fit.to_dict()["warnings"] == [alpha, a]


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2, 3))])
def test_random_known_laws_are_recovered_from_noisy_grids(seed):
    rng = np.random.default_rng(seed)
    truth = ChinchillaLaw(
        E=rng.uniform(1.5, 2.5),
        A=rng.uniform(200, 800),
        B=rng.uniform(1000, 4000),
        alpha=rng.uniform(0.25, 0.45),
        beta=rng.uniform(0.25, 0.45),
    )
    N = np.repeat(np.logspace(7, 10, 8), 6)
    D = np.tile(np.logspace(8, 11, 6), 8)
    L = truth.loss(N, D) * np.exp(rng.normal(0, 0.002, N.size))  # 0.2% noise
    fit = fit_chinchilla(N, D, L)
    # The optimizer does at least as well as the truth itself on the noisy points ...
    truth_x = np.array(
        [[np.log(truth.A), np.log(truth.B), np.log(truth.E), truth.alpha, truth.beta]]
    )
    at_truth, _ = huber_objective(truth_x, np.log(N), np.log(D), np.log(L), np.ones((1, N.size)))
    assert fit.objective <= at_truth[0]
    # ... and finds the law that made them.
    law = fit.law
    assert abs(law.alpha - truth.alpha) < 0.03 and abs(law.beta - truth.beta) < 0.03
    assert abs(law.E / truth.E - 1) < 0.03
    # What users bet on: the predicted loss well beyond the grid.
    assert abs(law.loss(1e11, 1e12) / truth.loss(1e11, 1e12) - 1) < 0.01


def test_resamples_may_leave_the_valley_where_the_fits_E_went_to_0():
    """On the smoke grid's shape (4 sizes x 3 budgets) with 0.3% noise these points do not
    show the loss flattening and the fit puts E at 0 and a at 0.22 (the truth: 2.49 and
    0.51). Resamples fitted only from that optimum could not leave the valley: E's interval
    was one value and a's missed the truth. Each resample also starts in the other bands of E."""
    truth = ChinchillaLaw(E=2.49, A=839, B=142, alpha=0.368, beta=0.389)
    N = np.repeat([12384.0, 55536.0, 98624.0, 332448.0], 3)
    D = np.tile([200704.0, 499712.0, 1249280.0], 4)
    L = truth.loss(N, D) * np.exp(np.random.default_rng(2).normal(0, 0.003, N.size))
    fit = fit_chinchilla(N, D, L, bootstrap=200)
    assert fit.law.E < 1e-3 and fit.law.a == pytest.approx(0.219, abs=0.01)
    low, high = fit.interval(lambda law: law.E)
    assert low < 1e-3 and high > truth.E
    low, high = fit.interval(lambda law: law.a)
    assert low < fit.law.a and truth.a < high


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_resamples_that_run_off_are_kept_quietly():
    """The demo's T=512 points but its largest size (the report's held-out fit, 2026-11-30):
    some of their 1,000 resamples run off to an A of 1e300 or more. They stay in the samples
    (intervals and bands leave out what they cannot compute) without an overflow warning in
    the report's output, and a band at a token count given as a Python float does not raise
    OverflowError (one resample here has beta in the thousands)."""
    N = np.repeat([12384.0, 55536.0, 98624.0, 332448.0], 3)
    D = np.tile([200704.0, 499712.0, 1249280.0], 4)
    L = [3.3182, 2.9105, 2.6538, 3.0956, 2.9022, 2.5983]
    L += [3.0147, 2.7497, 2.5412, 2.9756, 2.7120, 2.5234]
    fit = fit_chinchilla(N[:9], D[:9], L[:9], bootstrap=1000)
    assert not np.isfinite([law.A for law in fit.samples]).all()
    points = pd.DataFrame({"params": N, "tokens": D})
    assert fixed_tokens(fit, points)["low"].notna().all()


def test_data_that_cannot_identify_the_law_is_refused():
    N = np.logspace(7, 9, 6)
    D = np.logspace(9, 11, 6)
    L = np.linspace(3, 2, 6)
    with pytest.raises(FitError, match="needs at least 5 points, got 4"):
        fit_chinchilla(N[:4], D[:4], L[:4])
    with pytest.raises(FitError, match="one model size"):
        fit_chinchilla(np.full(6, 1e8), D, L)
    with pytest.raises(FitError, match="one token count"):
        fit_chinchilla(N, np.full(6, 1e10), L)
    with pytest.raises(FitError, match="positive and finite"):
        fit_chinchilla(N, D, np.r_[L[:-1], np.nan])


@pytest.mark.slow  # the real command in a fresh process
def test_scaling_fit_prints_the_fit_with_intervals_and_writes_json(tmp_path):
    out = tmp_path / "fits.json"
    result = scaling(
        "fit",
        str(CHINCHILLA),
        *AS_THE_REPLICATION,
        "--bootstrap",
        "200",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "240 points, 4500 starts" in result.stdout and "alpha = 0.3473  [" in result.stdout
    block = json.loads(out.read_text())["chinchilla"]
    assert block["alpha"]["value"] == pytest.approx(0.3473, rel=0.005)
    assert block["resamples"] == 200 and len(block["E"]["ci95"]) == 2


def test_scaling_fit_prints_the_warnings_its_json_holds(tmp_path, capsys):
    """Points from a law with no floor send E to 0: the fit says so on screen, not only in
    the JSON."""
    no_floor = ChinchillaLaw(E=0.0, A=482.0, B=2085.0, alpha=0.35, beta=0.37)
    sizes, budgets = (1e6, 3e6, 1e7, 3e7), (1e8, 3e8, 1e9)
    rows = [f"{N:g},{D:g},{no_floor.loss(N, D)}" for N in sizes for D in budgets]
    csv = tmp_path / "no_floor.csv"
    csv.write_text("params,tokens,loss\n" + "\n".join(rows) + "\n")
    out = tmp_path / "fits.json"
    assert main(["fit", str(csv), "--bootstrap", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    warnings = json.loads(out.read_text())["chinchilla"]["warnings"]
    assert warnings and warnings[0].startswith("E went to 0")
    for warning in warnings:
        assert f"warning: {warning}\n" in printed
    # The report's summary on screen says them too, under the numbers they qualify.
    assert (
        main(["report", "--csv", str(csv), "--bootstrap", "20", "--out", str(tmp_path / "r")]) == 0
    )
    printed = capsys.readouterr().out
    for warning in warnings:
        assert f"  warning: {warning}\n" in printed


@pytest.mark.slow  # the real command in a fresh process
def test_scaling_fit_refuses_bad_input_with_one_line(tmp_path):
    result = scaling("fit", str(CHINCHILLA), "--out", str(tmp_path / "f.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{CHINCHILLA}: --params-col: no column 'params' (columns: x, y, color, Model Size, "
        "Training FLOP, hex_color, loss)"
    )
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("params,tokens,loss\n1e8,1e9,3.0\n1e8,2e9,2.9\n")
    result = scaling("fit", str(tiny), "--out", str(tmp_path / "f.json"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{tiny}: a Chinchilla fit has 5 parameters and needs at least 5 points, got 2"
    )
    assert not (tmp_path / "f.json").exists()


@pytest.mark.slow  # the real command in a fresh process
def test_scaling_report_from_a_csv_gives_the_replications_answer(tmp_path):
    out = tmp_path / "report"
    result = scaling(
        "report",
        "--csv",
        str(CHINCHILLA),
        *AS_THE_REPLICATION,
        "--bootstrap",
        "10",
        "--gpu",
        "h100",  # GPU names are case-insensitive
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    fits = json.loads((out / "fits.json").read_text())
    expected = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
    for name, value in expected.items():
        assert fits["chinchilla"][name]["value"] == pytest.approx(value, rel=0.005), name
    assert fits["runs"]["fitted"] == 240 and fits["seq_len"] is None
    assert fits["predictions"]["gpu"] == "H100"
    assert fits["source"] == f"CSV {CHINCHILLA}"
    # The fit `scaling fit` makes of the same rows (in order of loss, the replication's 5
    # highest left out) with the same seed and resamples: the same, intervals included.
    N, D, L = chinchilla_points()
    order = np.argsort(L, kind="stable")
    alone = fit_chinchilla(N[order], D[order], L[order], bootstrap=10, seed=0).to_dict()
    assert json.loads(json.dumps({**alone, "seq_len": None})) == fits["chinchilla"]

    for args, message in (
        (["smoke", "--csv", str(CHINCHILLA)], "report: give an EXPERIMENT from MLflow or --csv "
         "FILE, not both"),
        ([], "report: give an EXPERIMENT from MLflow, or --csv FILE"),
        (["--csv", ""], "CSV: an empty path names no file"),
    ):  # fmt: skip
        refused = scaling("report", *args, "--out", str(tmp_path / "x"))
        assert (refused.returncode, refused.stderr.strip()) == (2, message)
    assert not (tmp_path / "x").exists()


def test_a_csv_of_runs_reads_with_a_column_mapping():
    from analysis.runs import from_csv

    runs = from_csv(
        str(CHINCHILLA), {"params": "Model Size", "flops": "Training FLOP", "val_loss": "loss"}
    )
    assert len(runs.finished) == 245
    row = runs.table.iloc[0]
    assert row["tokens"] == pytest.approx(row["flops"] / (6 * row["params"]))
    with pytest.raises(ValueError, match=r"params: no column 'params' \(columns: x, y"):
        from_csv(str(CHINCHILLA))


def test_a_csv_of_results_may_list_runs_that_did_not_finish(tmp_path):
    """Only FINISHED rows must hold numbers; they come in order of loss, the highest left out
    when asked; FLOPs beside a tokens column are not needed."""
    from analysis.runs import CsvError, from_csv

    csv = tmp_path / "results.csv"
    csv.write_text(
        "params,tokens,flops,loss,status\n"
        "1e6,1e8,n/a,3.0,FINISHED\n"
        "2e6,1e8,n/a,2.5,FINISHED\n"
        "4e6,1e8,n/a,,OOM\n"
        "8e6,1e8,n/a,2.2,FINISHED\n"
    )
    runs = from_csv(str(csv), {"val_loss": "loss"}, drop_highest_loss=1)
    assert list(runs.finished["val_loss"]) == [2.2, 2.5]
    assert list(runs.finished["flops"]) == [6 * 8e6 * 1e8, 6 * 2e6 * 1e8]
    assert list(runs.not_finished["status"]) == ["OOM"]
    with pytest.raises(CsvError, match="cannot leave out 3 of 3 finished rows"):
        from_csv(str(csv), {"val_loss": "loss"}, drop_highest_loss=3)
    csv.write_text("params,tokens,loss\n1e6,1e8,3.0\n2e6,1e8,\n")
    with pytest.raises(CsvError, match="loss: column 'loss' row 2 is not a number"):
        from_csv(str(csv), {"val_loss": "loss"})
