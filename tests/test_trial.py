"""One trial in this process, no Ray: real Lightning training, metrics, checkpoint, outcomes."""

from __future__ import annotations

import itertools
import math
import shutil

import pytest
import torch
from helpers import tiny_spec

from scaling import trial as trial_lib
from scaling.data import ValidationWindows, prepare
from scaling.model import GPT
from scaling.spec import expand, parse

pytestmark = pytest.mark.slow  # real Lightning training


class Reports(list):
    """A `report` for trial.run that keeps the metrics it is given."""

    def __call__(self, metrics: dict, checkpoint) -> None:
        self.append(metrics)


def make_trial(**overrides):
    (trial,) = expand(parse(tiny_spec(**overrides)))
    return trial


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    trial = make_trial()
    reports = Reports()
    out = tmp_path_factory.mktemp("trial")
    return trial, trial_lib.run(trial, reports, out), reports


def test_a_trial_trains_to_its_budget_and_reports_the_contract_metrics(finished):
    _, result, reports = finished
    assert result.status == "FINISHED" and result.error is None
    training = [r for r in reports if "train_loss" in r]
    evaluations = [r for r in reports if "val_loss" in r]
    # Every log_interval_steps (2) optimizer steps, with step = tokens seen.
    assert [r["step"] for r in training] == [8192, 16384, 24576, 32768]
    for r in training:
        assert {"train_loss", "lr", "tokens_per_s", "mfu"} <= r.keys()
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
    # Every eval_interval_tokens, and at the end.
    assert [r["step"] for r in evaluations] == [16384, 32768]
    assert evaluations[-1]["val_loss"] == result.val_loss
    assert result.val_loss < math.log(257) - 1  # it learned something about bytes
    assert {"step_time_s", "step_time_spread", "peak_mem_bytes", "wall_s"} <= result.metrics.keys()
    # The median step, and how far the steps varied: the 90th over the 10th percentile.
    assert result.metrics["step_time_s"] > 0 and result.metrics["step_time_spread"] >= 1
    assert result.metrics["peak_mem_bytes"] > 50e6  # a Python process with torch in it
    assert result.params["precision"] in ("bf16", "fp32")


def test_the_schedule_warms_up_then_decays_to_min_lr_at_the_last_step(tmp_path):
    trial = make_trial(
        train={"warmup_tokens": 8192, "log_interval_steps": 1, "lr": 1e-3, "min_lr_ratio": 0.1}
    )
    reports = Reports()
    trial_lib.run(trial, reports, tmp_path / "schedule")
    lrs = [r["lr"] for r in reports if "lr" in r]
    assert lrs[:2] == pytest.approx([0.5e-3, 1e-3])
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))


def test_the_checkpoint_loads_with_weights_only_and_reproduces_the_validation_loss(finished):
    trial, result, _ = finished
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    assert checkpoint["config"]["d_model"] == trial.d_model
    assert checkpoint["tokens_seen"] == trial.tokens
    from scaling.config import GPTConfig

    model = GPT(GPTConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    windows = ValidationWindows(prepare(trial.data).val(), trial.seq_len, trial.train.eval_tokens)
    x = torch.stack([windows[i][0] for i in range(len(windows))])
    y = torch.stack([windows[i][1] for i in range(len(windows))])
    precision = torch.bfloat16 if result.params["precision"] == "bf16" else torch.float32
    with (
        torch.no_grad(),
        torch.autocast("cpu", dtype=precision, enabled=precision == torch.bfloat16),
    ):
        _, loss = model(x, y)
    assert loss.item() == pytest.approx(result.val_loss, abs=2e-2)


def test_the_same_seed_trains_the_same_model(finished, tmp_path):
    trial, result, _ = finished
    again = trial_lib.run(trial, None, tmp_path / "again")
    assert again.val_loss == pytest.approx(result.val_loss, abs=1e-6)


def test_gradient_accumulation_keeps_tokens_per_step_and_the_result(tmp_path):
    whole = make_trial(train={"precision": "fp32"})
    accumulated = make_trial(train={"precision": "fp32", "micro_batch_size": 16})
    assert accumulated.accumulate_grad_batches == 4 and accumulated.steps == whole.steps
    a_reports, b_reports = Reports(), Reports()
    a = trial_lib.run(whole, a_reports, tmp_path / "whole")
    b = trial_lib.run(accumulated, b_reports, tmp_path / "accumulated")
    assert [r["step"] for r in a_reports] == [r["step"] for r in b_reports]
    assert b.val_loss == pytest.approx(a.val_loss, abs=1e-3)
    a_train = [r["train_loss"] for r in a_reports if "train_loss" in r]
    b_train = [r["train_loss"] for r in b_reports if "train_loss" in r]
    assert b_train == pytest.approx(a_train, abs=1e-3)


def test_a_loss_that_goes_non_finite_ends_the_trial_as_diverged(tmp_path):
    trial = make_trial(train={"lr": 1e6})
    result = trial_lib.run(trial, None, tmp_path / "diverged")
    assert result.status == "DIVERGED"
    assert "loss became nan" in result.error


def test_running_out_of_memory_ends_the_trial_as_oom_with_the_size_that_failed(tmp_path):
    # 12·d² weights of d = 131072 want ~800 GB: the allocator refuses, as on a full GPU.
    trial = make_trial(model={"sizes": [{"n_layer": 1, "d_model": 131072, "n_head": 1}]})
    result = trial_lib.run(trial, None, tmp_path / "oom")
    assert result.status == "OOM"
    assert result.error.startswith("out of memory for L1-d131072 (params 206,158,823,424)")


def test_at_equal_tokens_a_bigger_model_reaches_a_lower_validation_loss(tmp_path):
    # A flat or inverted curve here means a bug in the schedule, the optimizer or the data.
    small, large = expand(
        parse(
            tiny_spec(
                model={
                    "sizes": [
                        {"n_layer": 1, "d_model": 32, "n_head": 2},
                        {"n_layer": 2, "d_model": 96, "n_head": 3},
                    ]
                },
                grid={"seq_len": [64], "tokens": [131072]},
                train={"lr": 3e-3, "eval_interval_tokens": 131072},
            )
        )
    )
    small_loss = trial_lib.run(small, None, tmp_path / "small").val_loss
    large_loss = trial_lib.run(large, None, tmp_path / "large").val_loss
    assert large_loss < small_loss - 0.1


def test_a_resumed_trial_continues_from_its_resume_point_to_the_same_result(tmp_path):
    trial = make_trial()
    kept = tmp_path / "kept"

    def keep_first_resume_point(metrics, checkpoint):
        if checkpoint is not None and not kept.exists():
            shutil.copytree(checkpoint, kept)

    whole = trial_lib.run(trial, keep_first_resume_point, tmp_path / "a", resume_points=True)
    assert sorted(p.name for p in kept.iterdir()) == [trial_lib.RESUME_FILE, trial_lib.RESUME_META]

    reports = Reports()
    resumed = trial_lib.run(
        trial, reports, tmp_path / "b", resume_from=kept / trial_lib.RESUME_FILE
    )
    # It picks up after the first evaluation (16384 tokens), not at step 0 ...
    assert [r["step"] for r in reports if "train_loss" in r] == [24576, 32768]
    assert [r["step"] for r in reports if "val_loss" in r] == [32768]
    # ... and ends where the uninterrupted run did: same data, same optimizer state.
    assert resumed.val_loss == pytest.approx(whole.val_loss, abs=1e-5)


def test_a_compiled_trial_times_its_compilation_apart_from_its_steps(tmp_path, finished):
    """`train.compile: true` compiles the model; the first step, mostly compilation, is
    reported as compile_s and kept out of the step time and tokens/s."""
    trial = make_trial(train={"compile": True, "log_interval_steps": 1})
    reports = Reports()
    result = trial_lib.run(trial, reports, tmp_path)
    assert result.status == "FINISHED" and result.params["compile"] is True
    assert result.metrics["compile_s"] > 5 * result.metrics["step_time_s"]
    # The first step is not in any reported window: the first report is for step 2.
    assert next(r["step"] for r in reports if "train_loss" in r) == 8192
    # Same data, same seed: the compiled model learns what the eager one does.
    _, eager, _ = finished
    assert result.val_loss == pytest.approx(eager.val_loss, abs=0.05)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state_dict"]
    assert not any(key.startswith("_orig_mod") for key in state)
    assert make_trial().train.compile == "auto" and trial_lib.hardware.resolve_compile("auto") is (
        torch.cuda.is_available()
    )


def test_a_sliding_window_trial_trains_and_its_checkpoint_keeps_the_window(tmp_path):
    from scaling.inference import load_model

    trial = make_trial(
        model={
            "sizes": [{"n_layer": 1, "d_model": 32, "n_head": 2}],
            "attention": "sliding_window:16",
        }
    )
    assert trial.name == "L1-d32-T64-W16-s0"
    result = trial_lib.run(trial, out_dir=tmp_path)
    assert result.status == "FINISHED", result.error
    assert result.val_loss < math.log(257) - 1
    model, saved_trial = load_model(result.checkpoint)
    assert model.config.window == 16 and saved_trial["attention"] == "sliding_window:16"
    # After training, what a generated token costs at each context up to the trained one.
    assert set(result.metrics) >= {"decode_s_per_token_at_64"}


def test_a_branch_from_its_trunks_checkpoint_trains_as_one_uninterrupted_wsd_run(tmp_path):
    # Four micro-batches a step, and evaluations every 5 steps: off the branch points (8, 16).
    train = {"schedule": "wsd", "warmup_tokens": 8192, "log_interval_steps": 1,
             "micro_batch_size": 16, "eval_interval_tokens": 20480}  # fmt: skip
    spec = parse(tiny_spec(grid={"seq_len": [64], "tokens": [40960, 81920]}, train=train))
    trunk, *branches = expand(spec)
    assert (trunk.kind, trunk.branch_points) == ("trunk", [32768, 65536])

    def keep_branch_points(metrics, checkpoint):
        if checkpoint is not None and metrics["step"] in trunk.branch_points:
            shutil.copytree(checkpoint, tmp_path / str(metrics["step"]))

    trial_lib.run(trunk, keep_branch_points, tmp_path / "trunk", resume_points=True)
    for branch in branches:  # 2 of 10 steps cooling down, and 4 of 20
        start = tmp_path / str(branch.branch_at) / trial_lib.RESUME_FILE
        branch_reports, whole_reports = Reports(), Reports()
        result = trial_lib.run(branch, branch_reports, tmp_path / "branch", resume_from=start)
        uninterrupted = branch.model_copy(update={"kind": "trial", "branch_at": 0, "trunk": None})
        whole = trial_lib.run(uninterrupted, whole_reports, tmp_path / "whole")

        def after_branch_point(reports, key, branch=branch):
            return {r["step"]: r[key] for r in reports if key in r and r["step"] > branch.branch_at}

        for key in ("train_loss", "lr"):
            branch_values = after_branch_point(branch_reports, key)
            assert len(branch_values) == branch.decay_steps
            assert branch_values == pytest.approx(after_branch_point(whole_reports, key), abs=1e-5)
        assert result.val_loss == pytest.approx(whole.val_loss, abs=1e-5)
        # Evaluated where the uninterrupted run is after the branch point: nothing extra.
        assert after_branch_point(branch_reports, "val_loss").keys() == {branch.tokens}

    # The trunk's steps were four micro-batches; a branch may split its own differently (a
    # rerun on other workers) and still trains every cooldown step, whole.
    eighths = branch.model_copy(
        update={"train": branch.train.model_copy(update={"micro_batch_size": 8})}
    )
    reports = Reports()
    start = tmp_path / str(branch.branch_at) / trial_lib.RESUME_FILE
    trial_lib.run(eighths, reports, tmp_path / "split", resume_from=start)
    losses = after_branch_point(reports, "train_loss")
    assert losses == pytest.approx(after_branch_point(whole_reports, "train_loss"), rel=1e-2)
