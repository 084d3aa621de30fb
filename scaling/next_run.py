"""next_run.yaml: the report's next run as a spec that `scaling plan` and `scaling run` accept.

The analysis side says what to train (N, D, LR, loss, cost: `analysis.recipe.NextRun`); this
side turns it into a grid of one point in the grid's own terms: its data, parametrization
and training settings, the shape the aspect-ratio rule gives for N, and a batch for the
budget. Checked by the same loader a user's spec goes through before it is written.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml

from scaling import spec as spec_lib
from scaling.config import GPTConfig
from scaling.estimate import ACTIVATION_BYTES, LOGIT_BYTES
from scaling.spec import ModelSpec, SizeSpec, Spec, TrainSpec, shape_for_params

FILE = "next_run.yaml"
# A micro-batch's activations are kept under this: room beside the training state on an
# 80 GB GPU for models up to a few billion parameters.
MICRO_BATCH_ACTIVATIONS = 32 * 2**30


def deepseek_batch(flops: float) -> float:
    """DeepSeek LLM's (arXiv 2401.02954) near-optimal batch in tokens: 0.2920·C^0.3271."""
    return 0.2920 * flops**0.3271


def next_run_spec(run, grid: Spec | None, experiment: str) -> dict[str, Any]:
    """The spec of `run` (an `analysis.recipe.NextRun`), in the terms of the grid's spec
    (None, for results from a CSV: the defaults)."""
    model = grid.model if grid else ModelSpec(sizes=[SizeSpec(params=run.params)])
    train = grid.train if grid else TrainSpec()
    shape = shape_for_params(run.params, model.aspect_ratio, model.head_dim)
    seq_len = run.seq_len or (max(grid.grid.seq_len) if grid else 2048)
    # A power of two of sequences, so that micro-batches and workers divide it.
    sequences = 2 ** max(0, round(math.log2(max(1.0, deepseek_batch(run.flops) / seq_len))))
    per_step = sequences * seq_len
    micro = sequences
    per_sequence = seq_len * (
        shape.n_layer * shape.d_model * ACTIVATION_BYTES + shape.vocab_size * LOGIT_BYTES
    )
    while micro > 1 and micro * per_sequence > MICRO_BATCH_ACTIVATIONS:
        micro //= 2
    steps = max(1, round(run.tokens / per_step))
    grid_warmup = train.warmup_tokens // train.tokens_per_step
    overrides = {
        "tokens_per_step": per_step,
        "micro_batch_size": micro,
        "lr": float(f"{run.lr:.3g}"),
        # As many warm-up steps as the grid took, and at least 1% of the run.
        "warmup_tokens": max(grid_warmup, math.ceil(steps / 100)) * per_step,
        "eval_interval_tokens": max(1, steps // 20) * per_step,
        "eval_tokens": max(1, round(train.eval_tokens / seq_len)) * seq_len,
    }
    train_values = {**train.model_dump(mode="json"), **overrides}
    defaults = TrainSpec().model_dump(mode="json")
    size = {"n_layer": shape.n_layer, "d_model": shape.d_model, "n_head": shape.n_head}
    model_values: dict[str, Any] = {"sizes": [size], "attention": run.attention}
    if grid is not None and model.parametrization == "mup":
        # The grid's base model, head width included: the next run's attention scale follows
        # µP's 1/head_dim from there, whether its family widened heads or added them.
        base_head_dim = spec_lib.expand(grid)[0].base_head_dim
        model_values.update(
            parametrization="mup", base_width=model.base_width, base_head_dim=base_head_dim
        )
    raw = {
        "name": f"{experiment}-next",
        "data": grid.data.model_dump(mode="json", exclude_none=True)
        if grid
        else {"source": "stdlib"},
        "model": model_values,
        "grid": {"seq_len": [seq_len], "tokens": [float(f"{steps * per_step:.4g}")]},
        "train": {k: v for k, v in train_values.items() if v != defaults.get(k) and v is not None},
        "resources": {"gpus_per_trial": 1, "cpus_per_trial": 8},
    }
    return raw


def _comments(run, raw: dict, grid: Spec | None, experiment: str) -> str:
    size = raw["model"]["sizes"][0]
    params = GPTConfig(size["n_layer"], size["d_model"], size["n_head"], 1).params
    interval = f" [{run.loss_ci95[0]:.4g}, {run.loss_ci95[1]:.4g}]" if run.loss_ci95 else ""
    cost = (
        f"{run.gpu_hours:,.3g} {run.gpu}-hours at MFU {run.mfu:.1%}"
        if run.gpu_hours
        else f"no MFU known for {run.gpu}-hours: pass --mfu to scaling report"
    )
    grid_batch = f"{grid.train.tokens_per_step:,}" if grid else "an unknown number of"
    lines = [
        f"The compute-optimal run at {run.flops:.3g} FLOPs (C = 6·N·D), written by `scaling report "
        f"--target-flops` for experiment '{experiment}' on {time.strftime('%Y-%m-%d')}.",
        f"Predicted validation loss {run.loss:.4g}{interval} (95% bootstrap interval of the "
        "Chinchilla fit; this far beyond the grid, the law's form is an assumption).",
        f"N = {run.params:.3g} non-embedding parameters: L{size['n_layer']}-d{size['d_model']} "
        f"by the aspect-ratio rule has {params:.3g}. D = {run.tokens:.3g} tokens.",
        f"Peak LR {run.lr:.3g}: {run.lr_source}.",
        f"Batch {raw['train']['tokens_per_step']:,} tokens per step from DeepSeek LLM's "
        f"B_opt = 0.292·C^0.3271 (the grid has no batch axis, and its LRs were measured at "
        f"{grid_batch} tokens per step).",
        f"Cost: {cost}.",
        "Check it with `scaling plan next_run.yaml` (add --device to estimate on a GPU).",
    ]
    if grid is None:
        lines.insert(0, "The grid's spec was not found (a CSV, or MLflow lost it): data, model "
                        "and training settings below are the defaults; check them.")  # fmt: skip
    return "".join(f"# {line}\n" for line in lines) + "\n"


def write_next_run(run, grid: Spec | None, experiment: str, out_dir: str | Path) -> Path:
    """Write next_run.yaml into `out_dir`, after the spec loader has accepted it."""
    raw = next_run_spec(run, grid, experiment)
    path = Path(out_dir) / FILE
    spec_lib.expand(spec_lib.parse(raw, str(path)), str(path))  # a SpecError here is a bug
    text = _comments(run, raw, grid, experiment) + yaml.safe_dump(raw, sort_keys=False)
    staging = path.with_name(f".{FILE}.tmp")
    staging.write_text(text)
    staging.replace(path)
    return path
