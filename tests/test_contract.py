"""The contract between the two sides: names that round-trip, GPUs by any spelling, and the
analysis side importing nothing of the training side but the contract."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from helpers import REPO, tiny_spec

from scaling import contract
from scaling.contract import ModelName, Status, TrialName
from scaling.spec import expand, parse


def test_every_trial_name_a_grid_makes_parses_back_to_its_shape_and_point():
    spec = tiny_spec(
        model={
            "sizes": [{"n_layer": 2, "d_model": 64, "n_head": 2}],
            "attention": ["dense", "sliding_window:16"],
        },
        grid={"seq_len": [32, 64], "tokens": [32768, 1.3e6], "seeds": [0, 3]},
    )
    trials = expand(parse(spec))
    assert len(trials) == 16
    for trial in trials:
        name = TrialName.parse(trial.name)
        assert str(name) == trial.name
        assert (name.model.n_layer, name.model.d_model) == (trial.n_layer, trial.d_model)
        assert (name.seq_len, name.seed) == (trial.seq_len, trial.seed)
        assert name.model.window == contract.parse_attention(trial.attention)
        assert name.budget == contract.tokens_budget(trial.tokens)
    compute = TrialName.parse("L4-d128-T128-C1e+12-s0")
    assert compute.budget == "C1e+12" and str(compute.model) == "L4-d128"


def test_model_names_carry_the_window_apart_from_the_shape():
    windowed = ModelName.parse("L2-d128-W256")
    assert (windowed.shape, windowed.window, str(windowed)) == ("L2-d128", 256, "L2-d128-W256")
    assert ModelName.parse("L2-d128").window is None
    for bad in ("N=1e+06", "L2-d128-T64-s0", "l2-d128"):
        with pytest.raises(ValueError, match="is not a model name"):
            ModelName.parse(bad)


def test_attention_has_one_spelling():
    assert contract.attention_name(contract.parse_attention("sliding_window:0256")) == (
        "sliding_window:256"
    )
    assert contract.parse_attention("dense") is None
    for bad in ("sliding_window:0", "sliding_window:-8", "window:8", "Dense"):
        with pytest.raises(ValueError, match="must be 'dense' or 'sliding_window:W'"):
            contract.parse_attention(bad)


def test_flops_per_token_count_the_keys_a_window_attends_to():
    dense = contract.flops_per_token(2, 128, 4096, 257)
    windowed = contract.flops_per_token(2, 128, 4096, 257, window=256)
    # 6 × (12·2·128² + 257·128) matmul weights + 12·2·128 per key.
    assert windowed == 6 * (12 * 2 * 128**2 + 257 * 128) + 12 * 2 * 128 * 256 == 3343104
    assert dense - windowed == 12 * 2 * 128 * (4096 - 256)


def test_decode_metrics_name_their_context():
    assert contract.decode_metric(512) == "decode_s_per_token_at_512"
    assert contract.decode_context("decode_s_per_token_at_512") == 512
    assert contract.decode_context("val_loss") is None


def test_statuses_map_to_mlflows_own():
    statuses = (Status.FINISHED, Status.OOM, Status.KILLED, Status.STOPPED)
    assert [s.mlflow_status for s in statuses] == ["FINISHED", "FAILED", "KILLED", "KILLED"]
    # A stopped trial is the search's decision, not the tool's failure: `scaling run` exits 0.
    results = {Status.FINISHED, Status.OOM, Status.DIVERGED, Status.STOPPED}
    assert {s for s in Status if s.is_result} == results
    assert f"{Status.OOM}" == "OOM" and Status("DIVERGED") is Status.DIVERGED


def test_gpu_names_are_case_insensitive_and_a100_is_not_a10():
    assert contract.gpu_named("h100") == "H100" and contract.gpu_named(" a10 ") == "A10"
    assert contract.gpu_named("TPU9") is None
    assert contract.gpu_in_device_name("NVIDIA A100-SXM4-80GB") == "A100"
    assert contract.gpu_in_device_name("NVIDIA H100 80GB HBM3") == "H100"
    assert contract.gpu_in_device_name("Tesla T4") is None


def test_the_analysis_reads_columns_the_training_side_writes():
    from analysis.runs import PARAM_COLUMNS

    # The metric columns are the contract's own names; the params are spelled in runs.py.
    written = {*contract.TRIAL_PARAMS, *contract.RUN_PARAMS, *contract.TUNING_PARAMS}
    assert set(PARAM_COLUMNS) <= written


def test_the_contract_is_standard_library_only():
    tree = ast.parse((REPO / "scaling" / "contract.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= sys.stdlib_module_names | {"__future__"}, imported


def test_the_analysis_side_never_imports_the_training_side():
    """Every analysis module: neither torch, lightning nor ray, and of `scaling` only the
    contract, so a report can be made on a laptop from a tracking server or a CSV."""
    modules = sorted(
        f"analysis.{path.stem}"
        for path in (REPO / "analysis").glob("*.py")
        if path.stem != "__init__"
    )
    code = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'ray', 'lightning', 'scaling') and m not in ('scaling', 'scaling.contract')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
