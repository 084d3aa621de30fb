"""Training throughput: the product's trial path against a plain PyTorch loop, in one process.

For each shape, (a) a plain loop written here, nanoGPT-style: the same GPT module, the same
training windows, batch, micro-batching and precision, AdamW with the same parameter groups,
the same schedule and clipping, and nothing else; (b) `scaling.trial.run`, exactly the path a
grid's worker runs (Lightning Trainer, data module, the metrics callback, a report function
receiving every metric). Both are timed per optimizer step; the first 10% of steps (warm-up)
are left out. The paths alternate a, b, a, b and each keeps its faster run, so drift in the
machine (these are shared cores) hits both alike.

Prints one JSON object per shape and one for the device's matmul rates; MFU is against the
measured bf16 (or fp32) matmul rate, the same denominator the product uses on a CPU.
"""

from __future__ import annotations

import json
import tempfile
import time

import torch

from scaling import hardware
from scaling import trial as trial_lib
from scaling.contract import STEP_TIME_S, Status
from scaling.data import RandomWindows, prepare
from scaling.model import GPT
from scaling.spec import expand, parse

SHAPES = [  # (n_layer, d_model, n_head, seq_len, optimizer steps per run)
    (4, 128, 4, 256, 60),
    (4, 256, 4, 256, 40),
    (6, 384, 6, 256, 25),
    (4, 256, 4, 1024, 25),
]
TOKENS_PER_STEP = 8192


def trial_for(n_layer: int, d_model: int, n_head: int, seq_len: int, steps: int):
    raw = {
        "name": "throughput",
        "model": {"sizes": [{"n_layer": n_layer, "d_model": d_model, "n_head": n_head}]},
        "grid": {"seq_len": [seq_len], "tokens": [TOKENS_PER_STEP * steps]},
        # One validation, at the end: throughput is about training steps.
        "train": {
            "tokens_per_step": TOKENS_PER_STEP,
            "eval_interval_tokens": TOKENS_PER_STEP * steps,
            "eval_tokens": 8192,
            "warmup_tokens": TOKENS_PER_STEP * 2,
        },
    }
    (trial,) = expand(parse(raw))
    return trial


def steady(step_times: list[float]) -> float:
    kept = step_times[len(step_times) // 10 :]
    return sum(kept) / len(kept)


def plain_loop(trial, precision: str) -> float:
    """Seconds per optimizer step of the same training with no framework around it."""
    train = trial.train
    torch.manual_seed(trial.seed)
    model = GPT(trial.gpt_config)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": matrices, "weight_decay": train.weight_decay},
            {"params": vectors, "weight_decay": 0.0},
        ],
        lr=train.lr,
        betas=(train.beta1, train.beta2),
    )
    cache = prepare(trial.data, progress=False)
    windows = RandomWindows(
        cache.train(),
        trial.seq_len,
        trial.batch_size,
        trial.micro_batch_size,
        trial.steps,
        trial.seed,
    )
    accumulate = trial.accumulate_grad_batches
    step_times = []
    for step in range(trial.steps):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = train.lr * trial.lr_factor(step)
        for part in range(accumulate):
            x, y = windows[step * accumulate + part]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                _, loss = model(x, y)
            (loss / accumulate).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the loop reads its loss, as any logging loop does
        step_times.append(time.perf_counter() - start)
    return steady(step_times)


def trial_path(trial) -> float:
    """Seconds per optimizer step of `scaling.trial.run`, as a grid's worker runs it."""
    reports = []
    with tempfile.TemporaryDirectory() as out_dir:
        result = trial_lib.run(trial, report=lambda m, c: reports.append(m), out_dir=out_dir)
    assert result.status == Status.FINISHED, result.error
    return result.metrics[STEP_TIME_S]


def precision_gain(rates: dict) -> dict:
    """What bf16 autocast buys over fp32 in training, on one shape: `precision: auto` takes
    bf16 only where the device has it, and this is the measurement that says it pays."""
    trial = trial_for(4, 256, 4, 256, 12)
    fp32, bf16 = plain_loop(trial, "fp32"), plain_loop(trial, "bf16")
    return {
        "benchmark": "precision",
        "shape": "L4-d256",
        "seq_len": 256,
        "bf16_supported": hardware.bf16_supported(),
        "fp32_tokens_per_s": round(TOKENS_PER_STEP / fp32),
        "bf16_tokens_per_s": round(TOKENS_PER_STEP / bf16),
        "bf16_speedup": round(fp32 / bf16, 2),
        "auto_picks": hardware.resolve_precision("auto"),
    }


def attention_seconds(trial, precision: str, repeats: int = 10) -> tuple[float, float]:
    """Forward and backward seconds of one layer's causal SDPA on one step's batch: the kernel
    the profile blames, timed alone so the benchmark itself shows what caps MFU."""
    config = trial.gpt_config
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    device = hardware.device_type()
    shape = (trial.batch_size, config.n_head, trial.seq_len, config.head_dim)
    q, k, v = (torch.randn(shape, dtype=dtype, device=device, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape, dtype=dtype, device=device)

    def attention():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

    def seconds(work) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats

    for _ in range(3):
        attention().backward(grad)
    forward = seconds(attention)
    return forward, seconds(lambda: attention().backward(grad)) - forward


def attention_share(trial, precision: str, step_seconds: float, rate: float) -> dict:
    """How much of a step the attention kernel takes, and the MFU the rest would allow."""
    forward, backward = attention_seconds(trial, precision)
    config = trial.gpt_config
    # QKᵀ and AV: 4·B·H·T²·head_dim FLOPs forward, twice that backward (FLOP convention).
    flops = 4 * trial.batch_size * config.n_head * trial.seq_len**2 * config.head_dim
    per_step = config.n_layer * (forward + backward)
    flops_per_step = TOKENS_PER_STEP * trial.flops_per_token
    return {
        "benchmark": "attention_kernel",
        "shape": config.name,
        "seq_len": trial.seq_len,
        "precision": precision,
        "forward_flops": round(flops / forward / 1e9, 1) * 1e9,
        "backward_flops": round(2 * flops / backward / 1e9, 1) * 1e9,
        "share_of_step": round(per_step / step_seconds, 3),
        "mfu_if_attention_were_free": round(flops_per_step / (step_seconds - per_step) / rate, 3),
    }


def main() -> None:
    device = hardware.device_type()
    rates = {p: hardware.measure_matmul_rate(p, seconds=2.0) for p in ("fp32", "bf16")}
    print(
        json.dumps(
            {
                "benchmark": "matmul_rate",
                "device": hardware.cpu_model() if device == "cpu" else device,
                "threads": torch.get_num_threads(),
                "fp32_flops": round(rates["fp32"] / 1e9, 1) * 1e9,
                "bf16_flops": round(rates["bf16"] / 1e9, 1) * 1e9,
                "bf16_over_fp32": round(rates["bf16"] / rates["fp32"], 2),
            }
        ),
        flush=True,
    )
    precision = hardware.resolve_precision("auto")
    print(json.dumps(precision_gain(rates)), flush=True)
    for n_layer, d_model, n_head, seq_len, steps in SHAPES:
        trial = trial_for(n_layer, d_model, n_head, seq_len, steps)
        plain, product = [], []
        for _ in range(2):
            plain.append(plain_loop(trial, precision))
            product.append(trial_path(trial))
        a, b = min(plain), min(product)
        flops_per_step = TOKENS_PER_STEP * trial.flops_per_token
        plain_mfu, trial_mfu = (round(flops_per_step / t / rates[precision], 3) for t in (a, b))

        print(
            json.dumps(
                {
                    "benchmark": "train_throughput",
                    "shape": f"L{n_layer}-d{d_model}",
                    "seq_len": seq_len,
                    "precision": precision,
                    "tokens_per_step": TOKENS_PER_STEP,
                    "plain_tokens_per_s": round(TOKENS_PER_STEP / a),
                    "trial_tokens_per_s": round(TOKENS_PER_STEP / b),
                    "trial_over_plain": round(a / b, 3),
                    "target_trial_over_plain": 0.95,
                    "plain_mfu": plain_mfu,
                    "trial_mfu": trial_mfu,
                    "target_mfu": 0.5 if (n_layer, d_model, seq_len) == (6, 384, 256) else None,
                }
            ),
            flush=True,
        )
        if (n_layer, d_model, seq_len) == (6, 384, 256):
            print(json.dumps(attention_share(trial, precision, a, rates[precision])), flush=True)


if __name__ == "__main__":
    main()
