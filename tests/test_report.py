"""`scaling report`: a grid recorded in a real MLflow store with losses and timings drawn from
known laws, reported, and the report read back: fits.json, report.md, the parent run's
artifacts, and report.html in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from helpers import scaling, write_spec

from analysis.laws import ChinchillaLaw
from scaling import spec as spec_lib
from scaling.cli import main
from scaling.tracking import Tracker

# Chinchilla's law; at 1e11..1e12 FLOPs its N_opt (4e4..1e5) lies inside the sizes below.
LAW = ChinchillaLaw(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)
TIME_EXPONENT = 0.8  # time per token ∝ N^0.8 ...
CROSSOVER = 1000  # ... × (1 + T / 1000): attention equals the rest at T = 1000

SPEC = {
    "name": "known-laws",
    "model": {
        "sizes": [
            {"n_layer": 1, "d_model": 32, "n_head": 2},
            {"n_layer": 2, "d_model": 48, "n_head": 2},
            {"n_layer": 2, "d_model": 64, "n_head": 2},
            {"n_layer": 3, "d_model": 96, "n_head": 3},
            {"n_layer": 4, "d_model": 128, "n_head": 4},
        ]
    },
    "grid": {"seq_len": [128, 256], "compute": [1e11, 3e11, 1e12]},
    "train": {"tokens_per_step": 4096, "eval_interval_tokens": 65536, "eval_tokens": 4096},
}


def stalled(trial) -> bool:
    """The trial the machine slowed tenfold for a third of its run (it was shared)."""
    return trial.d_model == 128 and trial.seq_len == 256 and trial.flops > 5e11


def record_grid(uri: str, folder: Path) -> str:
    """Write SPEC's trials into the store as `scaling run` would, with known-law numbers; the
    largest size at T=128 and 1e12 FLOPs ends OOM. One trial, `stalled`, is recorded as trials
    were before they logged their median step: its mean step, dragged by the stall, and no
    spread. Returns the parent run id."""
    spec_file = write_spec(folder / "known-laws.yaml", SPEC)
    spec, trials = spec_lib.load(spec_file)
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id(spec.name)
    parent = tracker.start_grid(experiment_id, spec, spec_file, trials)
    rng = np.random.default_rng(0)
    for trial in trials:
        run_id = tracker.start_trial(experiment_id, parent, trial)
        if trial.n_layer == 4 and trial.seq_len == 128 and trial.flops > 5e11:
            tracker.end_trial(run_id, "OOM", "CUDA out of memory (recorded by the test)")
            continue
        # Context helps: the longer length reaches 2% lower loss; 0.3% noise on every loss.
        shift = 0.98 if trial.seq_len == 256 else 1.0
        seconds = 2e-9 * trial.params**TIME_EXPONENT * (1 + trial.seq_len / CROSSOVER)
        evals = [*range(65536, trial.tokens, 65536), trial.tokens]
        windows = []  # seconds per token, as each logged window of steps measured it
        for i, tokens in enumerate(evals):
            loss = shift * LAW.loss(trial.params, tokens) * np.exp(rng.normal(0, 0.003))
            step = tokens // trial.train.tokens_per_step
            windows.append(seconds * (10 if stalled(trial) and i % 3 == 2 else 1))
            tracker.log_metrics(
                run_id,
                {
                    "step": tokens,
                    "val_loss": loss,
                    "lr": trial.train.lr * trial.lr_factor(step - 1),
                    "tokens_per_s": 1 / windows[-1],
                    "mfu": 0.2 + 0.1 * np.log10(trial.params / 1e4),
                },
            )
        if stalled(trial):
            timing = {"step_time_s": float(np.mean(windows)) * 4096}
        else:
            timing = {"step_time_s": seconds * 4096, "step_time_spread": 1.05}
        tracker.log_metrics(run_id, {"step": trial.tokens, **timing})
        # Decoding, per token: 50 µs per 1e4 parameters, plus 1% per 100 tokens of context.
        for context in (64, trial.seq_len):
            decode = 5e-5 * trial.params / 1e4 * (1 + context / 10000)
            tracker.log_metrics(
                run_id, {"step": trial.tokens, f"decode_s_per_token_at_{context}": decode}
            )
        tracker.log_metrics(run_id, {"step": trial.tokens, "wall_s": seconds * trial.tokens})
        tracker.end_trial(run_id, "FINISHED", params={"precision": "bf16", "device": "cpu"})
    tracker.end_grid(parent)
    return parent


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{folder}/mlflow.db"
    parent = record_grid(uri, folder)
    result = scaling(
        "report",
        "known-laws",
        "--tracking-uri",
        uri,
        "--out",
        str(folder / "report"),
        "--budgets",
        "1e18,1e21",
        "--bootstrap",
        "300",
        "--target-flops",
        "1e21",
    )
    assert result.returncode == 0, result.stderr
    fits = json.loads((folder / "report" / "fits.json").read_text())
    return {"folder": folder, "uri": uri, "parent": parent, "stdout": result.stdout, "fits": fits}


@pytest.mark.slow  # the real command on a recorded grid
def test_the_known_law_is_recovered_with_intervals(report):
    fits = report["fits"]
    assert fits["seq_len"] == 256  # more finished runs there (one T=128 run went OOM)
    chinchilla = fits["chinchilla"]
    assert chinchilla["resamples"] == 300 and chinchilla["n_points"] == 15
    for name in ("alpha", "beta"):
        block = chinchilla[name]
        assert block["value"] == pytest.approx(getattr(LAW, name), abs=0.05), name
        assert block["ci95"][0] <= block["value"] <= block["ci95"][1]
    assert set(chinchilla) >= {"E", "A", "B", "alpha", "beta", "a", "resamples"}
    # Refitted without the largest size, the law predicts it to within a few percent.
    assert fits["held_out"]["held_out_params"] == pytest.approx(787584)
    assert fits["held_out"]["mean_abs_relative_error"] < 0.03
    assert "alpha = " in report["stdout"] and "held-out largest size" in report["stdout"]


@pytest.mark.slow  # the real command on a recorded grid
def test_compute_optimal_allocation_by_three_approaches(report):
    fits = report["fits"]
    approach_2 = fits["approach_2"]
    # In the grid's own FLOPs (head and attention counted: 2.3 times 6N for the smallest size)
    # the smallest budget's lowest loss is its smallest size: no minimum inside the sizes.
    assert approach_2["refused"] == [
        "budget 1.01e+11 FLOPs: no interior minimum (lowest loss at N = 1.24e+04, an end of "
        "the sizes tried), so N_opt lies outside the grid"
    ]
    assert len(approach_2["parabolas"]) == 2
    # Under the grid's own FLOPs (head and attention counted) the exponent is not exactly
    # a = 0.51, but parameters must take a real share of extra compute.
    assert 0.3 < approach_2["n_opt"]["exponent"] < 0.8
    assert fits["approach_1"]["refused"] == []
    assert fits["approach_1"]["n_opt"]["exponent"] > 0
    # The report opens with the three side by side and says whether they agree.
    verdict = fits["verdict"]
    assert set(verdict["a"]["by_approach"]) <= {"approach 1", "approach 2", "approach 3"}
    assert verdict["a"]["by_approach"]["approach 3"]["ci95"] is not None
    assert set(verdict["loss"]) == {"1e+18", "1e+21"}  # the --budgets given
    markdown = (report["folder"] / "report" / "report.md").read_text()
    assert markdown.index("## Verdict") < markdown.index("## Loss against parameters and data")
    assert verdict["verdict"] in markdown
    # One seed: the noise the bootstraps add is the scatter about the Chinchilla fit.
    assert fits["noise"]["source"] == "scatter about the Chinchilla fit"
    # Each size's curves (the lr each run logged) fitted with the curve law, or refused.
    assert len(fits["curves"]["laws"]) == 5
    assert "## The whole curve" in markdown


@pytest.mark.slow  # the real command on a recorded grid
def test_time_laws_and_the_two_claims(report):
    time = report["fits"]["time"]
    k = time["per_token_vs_params"]["256"]
    # The stalled trial's time is its median step, so it does not drag the law.
    assert k["exponent"] == pytest.approx(TIME_EXPONENT, abs=0.01)
    markdown = (report["folder"] / "report" / "report.md").read_text()
    assert (
        "Throughput varied beyond 2× (the 90th-percentile step time over the 10th) in 1 of 29 "
        "timed trials" in markdown
    )
    assert "L4-d128-T256-C1e+12-s0 (" in markdown
    unsteady = time["unsteady_trials"]
    assert unsteady["bound"] == 2.0 and unsteady["timed"] == 29
    assert [t["name"] for t in unsteady["trials"]] == ["L4-d128-T256-C1e+12-s0"]
    split = time["seq_len_split"]["L4-d128"]
    assert split["crossover"] == pytest.approx(CROSSOVER, rel=0.01)
    assert split["flop_model_crossover"] == 768
    claims = report["fits"]["claims"]
    assert claims["exponential"].startswith(
        "Doubling the model size increases training time exponentially: false."
    )
    # Two lengths: a + b·T goes through both exactly, so the claim cannot be tested.
    assert (
        "L4-d128: Doubling the sequence length quadruples the cost: cannot be tested here."
        in (claims["quadratic"])
    )
    # And the table of a + b·T says what its numbers are worth.
    assert "timed at 2 lengths only: a + b·T passes through both exactly" in markdown


@pytest.mark.slow  # the real command on a recorded grid
def test_predictions_and_failed_runs_are_listed(report):
    fits = report["fits"]
    rows = fits["predictions"]["rows"]
    assert [r["flops"] for r in rows] == [1e18, 1e21]
    law = LAW
    assert rows[1]["n_opt"]["value"] == pytest.approx(law.n_opt(1e21), rel=0.5)
    assert rows[1]["n_opt"]["ci95"][0] < rows[1]["n_opt"]["value"] < rows[1]["n_opt"]["ci95"][1]
    assert rows[1]["gpu_hours"] > rows[0]["gpu_hours"] > 0
    assert fits["predictions"]["gpu"] == "H100"
    assert fits["runs"]["not_finished"] == [
        {
            "name": "L4-d128-T128-C1e+12-s0",
            "status": "OOM",
            "error": "CUDA out of memory (recorded by the test)",
        }
    ]


@pytest.mark.slow  # the real command on a recorded grid
def test_the_report_files_and_the_dashboard_link(report):
    folder = report["folder"] / "report"
    names = {p.name for p in (folder / "plots").iterdir()}
    assert names == {
        "loss_vs_compute.png",
        "loss_vs_params.png",
        "isoflop.png",
        "training_curves.png",
        "curve_predictions.png",
        "time_per_token.png",
        "seq_len_split.png",
        "mfu_heatmap.png",
        "decode_latency.png",
    }
    markdown = (folder / "report.md").read_text()
    alpha = report["fits"]["chinchilla"]["alpha"]["value"]
    assert f"| alpha | {alpha:.4g} [" in markdown
    assert "L4-d128-T128-C1e+12-s0 | OOM" in markdown
    from mlflow import MlflowClient

    artifacts = MlflowClient(report["uri"]).list_artifacts(report["parent"], "report")
    assert {"report/report.html", "report/fits.json", "report/report.md"} <= {
        a.path for a in artifacts
    }
    html = (folder / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # nothing fetched


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "no chromium: `make test` installs Debian's chromium package"
    return found


@pytest.mark.slow  # the real command on a recorded grid
def test_the_report_opens_in_a_real_browser(report, tmp_path):
    """Chromium loads the report; a script added to a copy reads back every image's decoded
    width and the page's text, which --dump-dom prints."""
    html = (report["folder"] / "report" / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load', () => {"
        "const widths = [...document.images].map(i => i.naturalWidth);"
        "const out = document.createElement('pre'); out.id = 'probe';"
        "out.textContent = JSON.stringify({widths});"
        "document.body.appendChild(out);});</script>"
    )
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout)
    assert match, result.stderr[-2000:]
    widths = json.loads(match.group(1).replace("&quot;", '"'))["widths"]
    assert len(widths) == 9 and all(w > 0 for w in widths), widths
    alpha = report["fits"]["chinchilla"]["alpha"]["value"]
    error = report["fits"]["held_out"]["mean_abs_relative_error"]
    for headline in (f"{alpha:.4g}", f"{error:.2%}", "H100-hours", "quadruples the cost"):
        assert headline in result.stdout, headline


@pytest.mark.slow  # the real command on a recorded grid
def test_next_run_yaml_is_the_compute_optimal_run_as_a_spec_scaling_plan_accepts(report):
    path = report["folder"] / "report" / "next_run.yaml"
    text = path.read_text()
    assert text.startswith("# The compute-optimal run at 1e+21 FLOPs (C = 6·N·D)")
    planned = scaling("plan", str(path), "--json")
    assert planned.returncode == 0, planned.stderr
    (trial,) = json.loads(planned.stdout)
    law = ChinchillaLaw(
        **{k: report["fits"]["chinchilla"][k]["value"] for k in ["E", "A", "B", "alpha", "beta"]}
    )
    assert trial["params"] == pytest.approx(law.n_opt(1e21), rel=0.15)  # the shape rule's rounding
    assert trial["tokens"] == pytest.approx(law.d_opt(1e21), rel=0.01)
    assert trial["seq_len"] == 256  # the loss laws' length
    assert trial["est_seconds"] is None  # far too big to measure on this machine
    spec = spec_lib.load(path)[0]  # in the grid's own terms, from the spec MLflow holds
    assert spec.train.eval_tokens == 4096 and spec.data.source == "stdlib"
    assert spec.train.lr == 3e-3  # no LR axis: the LR its largest size trained at, and it says so
    assert "the grid did not sweep the LR" in text
    next_run = report["fits"]["next_run"]
    assert next_run["loss_ci95"][0] < next_run["loss"] < next_run["loss_ci95"][1]
    assert "## Next run" in (report["folder"] / "report" / "report.md").read_text()


@pytest.mark.slow  # the real command on a recorded grid
def test_bad_report_requests_get_one_line(report, tmp_path):
    uri = report["uri"]
    missing = scaling("report", "nosuch", "--tracking-uri", uri, "--out", str(tmp_path / "r"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"experiment: no experiment 'nosuch' in {uri}: run it where you ran `scaling run`, "
        "or pass --tracking-uri"
    )
    bad = scaling("report", "known-laws", "--tracking-uri", uri, "--budgets", "1e18,lots")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "--budgets: must be numbers separated by commas, got '1e18,lots'"
    target = scaling("report", "known-laws", "--tracking-uri", uri, "--target-flops", "-1")
    assert target.returncode == 2
    assert target.stderr.strip() == "--target-flops: must be positive FLOP counts, got '-1'"
    gpu = scaling("report", "known-laws", "--tracking-uri", uri, "--gpu", "TPU9")
    assert gpu.returncode == 2 and gpu.stderr.startswith("--gpu: unknown GPU 'TPU9', known: H200")
    assert not (tmp_path / "r").exists()


def test_commands_that_only_read_leave_no_store_where_there_was_none(tmp_path, monkeypatch, capsys):
    """From a folder without a store (MLflow's default store is ./mlflow.db), a command that
    only reads says where to look instead, and leaves the folder as it found it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for command in (["report", "smoke"], ["status", "smoke"], ["sample", "0123abcd"]):
        assert main(command) == 2, command
        assert capsys.readouterr().err == (
            f"no tracking store at {Path.cwd() / 'mlflow.db'}: run it where you ran "
            "`scaling run`, or pass --tracking-uri\n"
        )
    assert list(tmp_path.iterdir()) == []
    # SQLAlchemy's driver-qualified form of the URI is the same store, and refused the same.
    uri = f"sqlite+pysqlite:///{tmp_path / 'other.db'}"
    assert main(["status", "smoke", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err.startswith(f"no tracking store at {tmp_path / 'other.db'}:")
    assert list(tmp_path.iterdir()) == []


def test_an_experiment_with_nothing_finished_is_refused_with_its_reason():
    import pandas as pd

    from analysis.analyse import analyse
    from analysis.fit import FitError
    from analysis.runs import Runs

    oom = {"run_id": "a", "name": "L1-d32-T64-s0", "status": "OOM", "error": "out of memory"}
    table = pd.DataFrame([oom], columns=[*oom, "params", "tokens", "val_loss"])
    with pytest.raises(FitError, match=r"^experiment 'tiny' has no FINISHED trial to fit$"):
        analyse(Runs(table), "tiny")


@pytest.mark.slow  # the real command on a recorded grid
def test_the_inference_section_splits_training_from_generation(report):
    inference = report["fits"]["inference"]
    largest = [r for r in inference["cost_split"] if r["size"] == "L4-d128"]
    (row,) = largest  # at its longest length, T=256, from its largest run
    assert row["seq_len"] == 256
    assert row["decode_s_per_token"] == pytest.approx(5e-5 * 787584 / 1e4 * (1 + 256 / 10000))
    # A forward pass: a third of training's FLOPs per token.
    assert row["decode_flops_per_token"] == pytest.approx(row["train_flops_per_token"] / 3)
    assert row["tokens_to_match_training"] == pytest.approx(
        row["train_wall_s"] / row["decode_s_per_token"]
    )
    contexts = [r["context"] for r in inference["decode_s_per_token"] if r["size"] == "L4-d128"]
    assert contexts == [64, 256]
    markdown = (report["folder"] / "report" / "report.md").read_text()
    assert "## Inference" in markdown
    # 1% per 100 tokens of context: the caption says what the plot shows, not a textbook trend.
    assert "It is flat within 10% for L1-d32 (×1.02 from 64 to 256)" in markdown


# A grid over sequence length, dense against a sliding window of 256, whose time per token is
# c·(1 + keys attended / 1000): the window's flat beyond 256, the dense one's growing.
ATTENTION_SPEC = {
    "name": "attention-laws",
    "model": {
        "sizes": [
            {"n_layer": 2, "d_model": 64, "n_head": 1},
            {"n_layer": 2, "d_model": 128, "n_head": 2},
        ],
        "attention": ["dense", "sliding_window:256"],
    },
    "grid": {"seq_len": [256, 512, 1024, 2048, 4096], "tokens": [65536]},
    "train": {"tokens_per_step": 8192, "eval_interval_tokens": 65536, "eval_tokens": 8192},
}


def strict_json(path: Path) -> dict:
    """fits.json as a strict parser reads it: NaN and Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.slow  # the real command on a recorded grid
def test_the_report_splits_dense_from_windowed_attention(tmp_path):
    spec_file = write_spec(tmp_path / "attention-laws.yaml", ATTENTION_SPEC)
    spec, trials = spec_lib.load(spec_file)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id(spec.name)
    parent = tracker.start_grid(experiment_id, spec, spec_file, trials)
    for trial in trials:
        run_id = tracker.start_trial(experiment_id, parent, trial)
        keys = min(trial.seq_len, trial.gpt_config.window or trial.seq_len)
        seconds = 1e-8 * trial.params**0.5 * (1 + keys / CROSSOVER)
        tracker.log_metrics(
            run_id,
            {"step": trial.tokens, "val_loss": 2.0, "step_time_s": seconds * 8192, "wall_s": 9},
        )
        tracker.end_trial(run_id, "FINISHED")
    tracker.end_grid(parent)

    out = tmp_path / "report"
    result = scaling("report", "attention-laws", "--tracking-uri", uri, "--out", str(out))
    assert result.returncode == 0, result.stderr
    time = strict_json(out / "fits.json")["time"]
    dense, window = (time["seq_len_split"][m] for m in ("L2-d128", "L2-d128-W256"))
    assert dense["crossover"] == pytest.approx(CROSSOVER, rel=0.01)
    assert window["b_s_per_token_per_position"] == pytest.approx(0, abs=1e-15)
    assert window["crossover"] is None  # never: JSON has no infinity
    exponents = time["per_token_vs_seq_len"]
    # Per token: dense grows towards T^1 as attention takes over; the window stays flat.
    assert 0.3 < exponents["L2-d128"]["exponent"] < 0.8
    assert exponents["L2-d128-W256"]["exponent"] == pytest.approx(0, abs=0.01)
    markdown = (out / "report.md").read_text()
    assert "| L2-d128-W256 |" in markdown and "attention stops growing at the window" in markdown
    assert "with dense attention" in markdown  # the loss laws say which attention they use
    from mlflow import MlflowClient

    (windowed,) = MlflowClient(uri).search_runs(
        [experiment_id], "attributes.run_name = 'L2-d128-T4096-W256-s0'"
    )
    assert windowed.data.params["attention"] == "sliding_window:256"
    # 6 × (12·2·128² + 257·128) matmul weights + 12·2·128 × 256 keys, not × 4096.
    assert windowed.data.params["flops_per_token"] == "3343104"


def test_a_report_can_be_made_from_a_csv_of_final_results(tmp_path):
    """The analysis side alone: final (N, D, loss) rows, no shapes, curves or timings."""
    from analysis.analyse import analyse
    from analysis.report import write_report
    from analysis.runs import from_csv

    rows = [f"{N},{D},{LAW.loss(N, D)}" for N in (1e6, 3e6, 1e7, 3e7) for D in (1e8, 3e8, 1e9)]
    csv = tmp_path / "results.csv"
    csv.write_text("N,D,loss\n" + "\n".join(rows) + "\n")
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "val_loss": "loss"})
    out = write_report(analyse(runs, "results", source=str(csv), bootstrap=20), tmp_path / "r")
    fits = strict_json(out / "fits.json")
    assert fits["chinchilla"]["alpha"]["value"] == pytest.approx(LAW.alpha, abs=0.02)
    assert fits["time"]["per_token_vs_params"] == {}  # nothing was timed, and it says so
    assert len(list((out / "plots").iterdir())) == 9
    # Final losses have no curves: approach 1 is refused and its black line is not drawn.
    assert "so no envelope is drawn" in (out / "report.md").read_text()
    # Readable by whoever may read a folder made here (a colleague, a web server).
    (tmp_path / "plain").mkdir()
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def final_results_csv(path: Path, sizes, tokens) -> Path:
    """A CSV of final (N, D, loss) rows on LAW, one per size and token count."""
    rows = [f"{N},{D},{LAW.loss(N, D)}" for N in sizes for D in tokens]
    path.write_text("N,D,loss\n" + "\n".join(rows) + "\n")
    return path


def test_the_fitted_frontier_is_drawn_over_the_sizes_trained_and_marked_beyond(tmp_path):
    """Every size is larger than the law's optimum at every compute of this grid (7e8
    parameters at its largest), so where its smallest size trained that long, that size is
    the best the grid's models reach: the frontier runs through its runs, not below every
    run as the law's optimum over sizes the grid never trained would."""
    from analysis import curves
    from analysis.analyse import analyse
    from analysis.runs import from_csv

    csv = final_results_csv(tmp_path / "results.csv", (1e9, 3e9, 1e10), (1e8, 3e8, 1e9))
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "val_loss": "loss"})
    a = analyse(runs, "results", source=str(csv), bootstrap=20)
    frontier = curves.tabulate(a).frontier
    low, high = a.points["flops"].min(), a.points["flops"].max()
    inside = frontier[~frontier["extrapolated"]]
    assert inside["flops"].min() == pytest.approx(low) and inside["flops"].max() == high
    smallest = a.points[a.points["params"] == 1e9]
    through = np.interp(np.log(smallest["flops"]), np.log(inside["flops"]), inside["loss"])
    assert through == pytest.approx(smallest["val_loss"].to_numpy(), rel=2e-3)
    # Beyond the grid's compute, on both sides, the line is an extrapolation, and says so.
    beyond = frontier[frontier["extrapolated"]]
    assert ((beyond["flops"] < low) | (beyond["flops"] > high)).all()
    assert beyond["flops"].min() < low and beyond["flops"].max() > high
    assert (np.diff(frontier["loss"]) <= 0).all()  # joined, and never rising with compute


def test_the_isoflop_plot_stars_no_optimum_outside_the_sizes_trained(tmp_path):
    """No FLOP budget of a size x tokens grid has 3 sizes, so the plot draws the fit's profiles
    at three budgets. At the grid's largest compute the law's optimum, 3.6e7 parameters, is
    above the largest size trained: approach 2 would refuse it, and the plot stars it no more."""
    from analysis import curves
    from analysis.analyse import analyse
    from analysis.runs import from_csv

    sizes = (1e6, 3e6, 1e7, 3e7)
    csv = final_results_csv(tmp_path / "results.csv", sizes, (1e8, 3e8, 1e9))
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "val_loss": "loss"})
    drawn = curves.tabulate(analyse(runs, "results", source=str(csv), bootstrap=20))
    assert drawn.isoflop_from_law and drawn.isoflop["flops"].nunique() == 3
    minima = drawn.isoflop_minima
    assert len(minima) == 2 and minima["params"].between(min(sizes), max(sizes)).all()


def test_the_report_says_when_the_loss_laws_length_trained_worse(tmp_path):
    """The loss laws use the longest length; where it trained to higher losses than a shorter
    one, cell for cell, the report says so beside the choice, and why."""
    from analysis.analyse import analyse
    from analysis.runs import from_csv
    from analysis.sections import title

    rows = [
        f"{N},{D},{T},4096,{LAW.loss(N, D) + (0.05 if T == 512 else 0)}"
        for N in (1e6, 3e6, 1e7, 3e7)
        for D in (1e8, 3e8, 1e9)
        for T in (128, 512)
    ]
    csv = tmp_path / "results.csv"
    csv.write_text("N,D,seq_len,tokens_per_step,loss\n" + "\n".join(rows) + "\n")
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "val_loss": "loss"})
    analysis = analyse(runs, "lengths", source=str(csv), bootstrap=20)
    assert analysis.seq_len == 512  # the longest of the lengths with the most runs
    text = " ".join(block[1] for block in title(analysis) if block[0] == "p")
    assert (
        "At T=512 the loss is higher than at T=128 in 12 of 12 matched (size, tokens) cells "
        "(mean +0.050 nats)" in text
    )
    assert "a step holds 8 windows of 512 against 32 of 128" in text
    from analysis.document import fits_document

    (comparison,) = fits_document(analysis)["length_comparisons"]
    assert comparison["other"] == 128 and comparison["higher"] == 12
    assert comparison["mean_difference"] == pytest.approx(0.05)
    # Lengths that trained alike are not worth a paragraph.
    rows = [f"{N},{D},{T},4096,{LAW.loss(N, D)}" for N in (1e6, 1e7) for D in (1e8, 1e9)
            for T in (128, 512)]  # fmt: skip
    csv.write_text("N,D,seq_len,tokens_per_step,loss\n" + "\n".join(rows) + "\n")
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "val_loss": "loss"})
    alike = analyse(runs, "lengths", source=str(csv), bootstrap=20)
    assert not any("matched (size, tokens) cells" in block[1] for block in title(alike))


@pytest.mark.parametrize(
    "width, low, high",
    [
        (7, 1.2e4, 3.3e5),  # the smoke grid's sizes on time_per_token: `3×10⁴4×10⁴` before
        (4.5, 3.2e4, 1.25e6),  # its tokens on a panel of training_curves
        (3.6, 5.1e4, 1.9e5),  # under a decade with one power of ten inside
        (3.6, 2.1e5, 4.9e5),  # no power of ten inside
        (7, 6.4e1, 5.12e2),  # decode_latency's contexts
        (7, 1e3, 1e12),  # many decades
    ],
)
def test_the_tick_labels_of_a_log_axis_never_collide(tmp_path, width, low, high):
    """Every figure of the report goes through `plots.save`, which labels its log axes."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from analysis.plots import save

    fig, ax = plt.subplots(figsize=(width, width * 0.6))
    ax.plot([low, high], [high, low])
    ax.set(xscale="log", yscale="log")
    save(fig, tmp_path / "plot.png")  # which closes it: drawn again to read its labels back
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    for axis, extent in ((ax.xaxis, "intervalx"), (ax.yaxis, "intervaly")):
        spans = sorted(
            tuple(getattr(label.get_window_extent(renderer), extent))
            for label in axis.get_ticklabels(minor=False) + axis.get_ticklabels(minor=True)
            if label.get_visible() and label.get_text()
        )
        assert len(spans) >= 2, f"{low:g} to {high:g}: fewer than two labels"
        for (_, end), (start, _) in pairwise(spans):
            assert end < start, f"{low:g} to {high:g}: labels overlap"


def test_the_decode_latency_caption_says_what_the_timings_show():
    import pandas as pd

    from analysis.captions import decode_latency

    contexts = [64, 128, 256, 512]
    timings = {
        "L1-d32": [6.2e-3, 7.0e-3, 8.3e-3, 7.4e-3],  # a busy machine: up and down
        "L2-d64": [4.0e-4, 3.9e-4, 3.8e-4, 4.1e-4],  # flat: the keys do not show at this size
        "L8-d1024": [1.0e-3, 1.1e-3, 1.3e-3, 1.7e-3],  # grows with the keys attended
    }
    curves = pd.DataFrame(
        [(size, c, s) for size, seconds in timings.items() for c, s in zip(contexts, seconds)],
        columns=["size", "context", "seconds"],
    )
    caption = decode_latency(curves)
    assert "It grows with the context for L8-d1024 (×1.70 from 64 to 512)" in caption
    assert "It is flat within 10% for L2-d64 (×1.02 from 64 to 512)" in caption
    assert "rises and falls without a trend for L1-d32 (×1.19 from 64 to 512)" in caption
    assert decode_latency(curves.iloc[:0]).startswith("Seconds to generate one token")


def test_a_loose_grid_gets_a_caution_wherever_an_interval_cannot_serve_its_use(tmp_path):
    """An IsoFLOP grid (four budgets 2x apart, sizes 2x apart, so four sizes share one token
    count) with 4% noise: each interval the report leans on is too wide for its use, and
    each says so."""
    from analysis.analyse import analyse
    from analysis.report import write_report
    from analysis.runs import from_csv

    rng = np.random.default_rng(0)
    sizes = LAW.n_opt(2.8e17) * 2.0 ** np.arange(-3, 4)
    rows = [
        f"{N},{C / (6 * N)},{C},{LAW.loss(N, C / (6 * N)) * np.exp(rng.normal(0, 0.04))}"
        for C in 1e17 * 2.0 ** np.arange(4)
        for N in sizes
    ]
    csv = tmp_path / "results.csv"
    csv.write_text("N,D,C,loss\n" + "\n".join(rows) + "\n")
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "flops": "C", "val_loss": "loss"})
    out = write_report(analyse(runs, "loose", source=str(csv), bootstrap=50), tmp_path / "r")
    cautions = [line for line in (out / "report.md").read_text().splitlines() if "Caution" in line]
    allocation = "so it cannot tell Kaplan's a = 0.73 from Chinchilla's 0.5"
    extrapolation = "so it does not pin the law's extrapolation"
    for what, use in (
        ("a", allocation),  # approach 3
        ("alpha", extrapolation),
        ("a by approach 2 (IsoFLOP)", allocation),
        ("alpha at D = 2.99e+09", extrapolation),
    ):
        found = [line for line in cautions if f"the 95% interval of {what} runs from" in line]
        assert len(found) == 1 and use in found[0], (what, cautions)


def test_four_sizes_at_fixed_tokens_get_a_caution_on_E_as_well_as_alpha(tmp_path):
    """The smoke grid's final losses at T=512 (a real run): four sizes at 1.25M tokens cannot
    say where the loss flattens, and the section says so of E, not only of alpha."""
    from analysis.analyse import analyse
    from analysis.runs import from_csv
    from analysis.sections import fixed_tokens

    smoke = {12384: (3.3182, 2.9105, 2.6538), 55536: (3.0956, 2.9022, 2.5983),
             98624: (3.0147, 2.7497, 2.5412), 332448: (2.9756, 2.7120, 2.5234)}  # fmt: skip
    tokens = (200704, 499712, 1249280)
    rows = [f"{N},{D},{L}" for N, losses in smoke.items() for D, L in zip(tokens, losses)]
    csv = tmp_path / "smoke.csv"
    csv.write_text("N,D,loss\n" + "\n".join(rows) + "\n")
    runs = from_csv(str(csv), {"params": "N", "tokens": "D", "val_loss": "loss"})
    section = fixed_tokens(analyse(runs, "smoke", source=str(csv), bootstrap=50))
    cautions = [text for kind, text, *_ in section if text.startswith("Caution")]
    assert any("interval of E at D = 1.25e+06" in c for c in cautions), cautions
    assert any("interval of alpha at D = 1.25e+06" in c for c in cautions), cautions
