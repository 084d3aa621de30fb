"""What a trial will cost before it runs: wall time and peak memory, for `scaling plan`.

On this machine the time comes from measurement: a few optimizer steps of the trial's own
model, micro-batch and precision (cached per device and shape, so a plan measures each shape
once), times the trial's steps, plus its validations and set-up. For a named GPU it comes from
the FLOPs at an assumed MFU, which the plan prints. Memory is the model's training state
(fp32 weights, gradients and AdamW's two moments: 16 bytes a parameter), one micro-batch's
activations, and on a CPU the process itself (Python, torch, Lightning), measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil
import torch

from scaling import hardware
from scaling.contract import GPU_PEAK_FLOPS
from scaling.model import GPT
from scaling.spec import TrialSpec

SETUP_S = 0.5  # Trainer, data module and the final checkpoint of a small trial, measured
ACTIVATION_BYTES = 34  # per token, layer and width unit under mixed precision (Korthikanti
# et al. 2022), attention scores not stored (flash / memory-efficient SDPA)
LOGIT_BYTES = 10  # per token and vocabulary entry: bf16 logits, fp32 copy for the loss, grad
# Random training windows touch most pages of the memory-mapped token cache over a trial: the
# standard library's 31 M tokens are 62 MB of uint16, resident once read.
TOKEN_PAGES_BYTES = 64 * 2**20
# Beyond this many FLOPs an optimizer step is not measured here (a CPU takes minutes per step):
# such a trial, or one whose training state would not fit in this machine's memory, is
# planned with --device instead.
MEASURED_STEP_FLOPS = 2e12
# Below this many parameters a GPU's MFU falls far short of what large models reach: a step's
# fixed costs (kernel launches, the optimizer's many small tensors, Python) outweigh its
# matmuls. nanoGPT's 124M model is about where 40% becomes reachable.
FULL_MFU_PARAMS = 1e8


@dataclass(frozen=True)
class Estimate:
    seconds: float
    peak_bytes: int


def activation_bytes(trial: TrialSpec) -> int:
    tokens = trial.micro_batch_size * trial.seq_len
    config = trial.gpt_config
    return tokens * (
        config.n_layer * config.d_model * ACTIVATION_BYTES + config.vocab_size * LOGIT_BYTES
    )


def state_bytes(trial: TrialSpec) -> int:
    return 16 * trial.params_total


def measured_step_seconds(trial: TrialSpec, precision: str, steps: int = 3) -> float:
    """Seconds per optimizer step of this trial's model on this device, measured (cached)."""
    key = (
        f"{hardware.cpu_model()}|{hardware.device_type()}|threads={torch.get_num_threads()}|"
        f"torch={torch.__version__}|{trial.gpt_config.name}|T={trial.seq_len}|{trial.attention}|"
        f"micro={trial.micro_batch_size}x{trial.accumulate_grad_batches}|{precision}"
    )
    return hardware.cached_measurement(
        "step_seconds.json", key, lambda: _time_steps(trial, precision, steps)
    )


def _time_steps(trial: TrialSpec, precision: str, steps: int) -> float:
    device = hardware.device_type()
    torch.manual_seed(0)
    model = GPT(trial.gpt_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shape = (trial.micro_batch_size, trial.seq_len)
    x = torch.randint(0, trial.gpt_config.vocab_size, shape, device=device)
    y = torch.randint(0, trial.gpt_config.vocab_size, shape, device=device)

    def step() -> None:
        for _ in range(trial.accumulate_grad_batches):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                _, loss = model(x, y)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    step()  # warm-up: kernels, allocator, caches
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def _evaluations(trial: TrialSpec) -> int:
    interval = trial.train.eval_interval_tokens
    return -(-trial.trained_tokens // interval) if interval < trial.trained_tokens else 1


def estimate_here(trial: TrialSpec, process_bytes: int) -> Estimate:
    """On this machine: measured step time; `process_bytes` is the bare process's memory.
    A trial too big to measure here has an infinite time (see `too_big_here`)."""
    cpu = hardware.device_type() == "cpu"
    peak = state_bytes(trial) + activation_bytes(trial) + (process_bytes if cpu else 0)
    if too_big_here(trial, peak):
        return Estimate(float("inf"), peak)
    precision = hardware.resolve_precision(trial.train.precision)
    step_s = measured_step_seconds(trial, precision)
    # A validation is forward passes only: about a third of a training step per token.
    eval_s = trial.train.eval_tokens / trial.train.tokens_per_step * step_s / 3
    steps = trial.trained_tokens // trial.train.tokens_per_step  # a branch's trunk did the rest
    seconds = steps * step_s + _evaluations(trial) * eval_s + SETUP_S
    return Estimate(seconds, peak)


def too_big_here(trial: TrialSpec, peak_bytes: int) -> bool:
    """Whether measuring the trial's steps here would exhaust this machine's memory, or (on a
    CPU) take minutes a step."""
    cpu = hardware.device_type() == "cpu"
    memory = (
        psutil.virtual_memory().total if cpu else torch.cuda.get_device_properties(0).total_memory
    )
    if peak_bytes > 0.8 * memory:
        return True
    step_flops = trial.flops_per_token * trial.train.tokens_per_step
    return cpu and step_flops > MEASURED_STEP_FLOPS


def estimate_on_gpu(trial: TrialSpec, gpu: str, mfu: float) -> Estimate:
    """On a named GPU at an assumed MFU: FLOPs over the achieved rate, plus validations."""
    rate = GPU_PEAK_FLOPS[gpu]["bf16"] * mfu
    train_s = trial.trained_flops / rate
    eval_s = _evaluations(trial) * trial.train.eval_tokens * trial.flops_per_token / 3 / rate
    return Estimate(train_s + eval_s + SETUP_S, state_bytes(trial) + activation_bytes(trial))


def estimates(trials: list[TrialSpec], gpu: str | None = None, mfu: float = 0.4):
    """Each trial's estimate, and a line saying on what basis: measured on this machine, or
    on one `gpu` (a name of the GPU table) per trial at an assumed MFU."""
    if gpu is None:
        process = process_bytes()
        basis = "estimates: step times measured here, one shape at a time"
        return [estimate_here(t, process) for t in trials], basis
    basis = (
        f"estimates: one {gpu} per trial at an assumed MFU of {mfu:.0%}, plus {SETUP_S:g} s "
        "set-up a trial"
    )
    small = sum(t.params < FULL_MFU_PARAMS for t in trials)
    if small:
        basis += (
            f"; {small} of {len(trials)} trials train models under {FULL_MFU_PARAMS / 1e6:.0f}M "
            "parameters, which run far below that MFU (kernel launches, the optimizer and "
            "Python take most of a small model's step), so their times are lower bounds"
        )
    return [estimate_on_gpu(t, gpu, mfu) for t in trials], basis


# What `scaling plan --json` lists of each trial, with its estimate.
# `flops` is the grid point's compute (6ND-like); `trained_flops` what the run itself spends:
# less for a WSD branch, whose trunk trained its first `branch_at` tokens.
PLAN_FIELDS = ("name", "trial_id", "kind", "n_layer", "d_model", "n_head", "seq_len", "tokens",
               "seed", "attention", "params", "params_total", "flops_per_token", "flops", "steps",
               "batch_size", "branch_at", "trunk", "trained_tokens", "trained_flops")  # fmt: skip


def plan_row(trial: TrialSpec, guess: Estimate) -> dict:
    row = {key: getattr(trial, key) for key in PLAN_FIELDS}
    row.update(
        tokens_per_param=trial.tokens / trial.params,
        est_seconds=guess.seconds if guess.seconds != float("inf") else None,  # too big here
        est_peak_bytes=guess.peak_bytes,
    )
    return row


def process_bytes() -> int:
    """Resident memory of a process holding what a grid's trial worker holds besides its
    model: torch, Lightning, Ray Tune and the token cache's pages."""
    import lightning  # noqa: F401
    import ray.tune  # noqa: F401

    return psutil.Process().memory_info().rss + TOKEN_PAGES_BYTES
