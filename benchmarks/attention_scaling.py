"""Training step time against sequence length: dense attention against a sliding window.

L2-d128 (two heads of 64), a fixed 8,192 tokens per optimizer step, T = 256 ... 4096, for
`dense` and `sliding_window:256`: the product's GPT, its AdamW groups and precision, forward,
backward and step, timed in steady state. Dense attention costs O(T) per token, so its time per
token grows with T; the window's costs O(W), so its time per token should stay flat. The
benchmark fits time per token ∝ T^k for each (a power law by least squares in log space) and
prints one JSON object per (attention, T), then the two exponents against the target
(window k ≤ 0.15). Shapes alternate dense, window, dense, window and each keeps its faster
run, so drift in these shared cores hits both alike.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from analysis.fit import fit_power_law
from scaling import hardware
from scaling.config import GPTConfig
from scaling.model import GPT

TOKENS_PER_STEP = 8192
SEQ_LENS = [256, 512, 1024, 2048, 4096]
ATTENTION = {"dense": None, "sliding_window:256": 256}
WARMUP_STEPS, TIMED_STEPS = 2, 5


def step_seconds(config: GPTConfig, precision: str) -> float:
    """Mean seconds per optimizer step after a warm-up, batch = TOKENS_PER_STEP / T."""
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = TOKENS_PER_STEP // config.seq_len
    x = torch.randint(0, 256, (batch, config.seq_len))
    device = hardware.device_type()
    model, x = model.to(device), x.to(device)
    times = []
    for _ in range(WARMUP_STEPS + TIMED_STEPS):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            _, loss = model(x, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - start)
    return sum(times[WARMUP_STEPS:]) / TIMED_STEPS


def main() -> None:
    precision = hardware.resolve_precision("auto")
    device = hardware.cpu_model() if hardware.device_type() == "cpu" else hardware.device_type()
    best: dict[tuple[str, int], float] = {}
    for _ in range(2):
        for T in SEQ_LENS:
            for name, window in ATTENTION.items():
                seconds = step_seconds(GPTConfig(2, 128, 2, T, window=window), precision)
                best[name, T] = min(best.get((name, T), float("inf")), seconds)
    for (name, T), seconds in best.items():
        config = GPTConfig(2, 128, 2, T, window=ATTENTION[name])
        print(
            json.dumps(
                {
                    "benchmark": "attention_scaling",
                    "device": device,
                    "precision": precision,
                    "shape": config.name,
                    "attention": name,
                    "seq_len": T,
                    "step_s": round(seconds, 4),
                    "us_per_token": round(seconds / TOKENS_PER_STEP * 1e6, 2),
                    "flops_per_token": config.flops_per_token(),
                }
            ),
            flush=True,
        )
    T = np.array(SEQ_LENS, dtype=float)
    exponents = {}
    for name in ATTENTION:
        per_token = np.array([best[name, t] / TOKENS_PER_STEP for t in SEQ_LENS])
        exponents[name] = fit_power_law(T, per_token).exponent
    print(
        json.dumps(
            {
                "benchmark": "attention_scaling_fit",
                "device": device,
                "per_token_time_exponent_dense": round(exponents["dense"], 3),
                "per_token_time_exponent_window": round(exponents["sliding_window:256"], 3),
                "target_window_exponent_at_most": 0.15,
                "dense_over_window_at_4096": round(
                    best["dense", 4096] / best["sliding_window:256", 4096], 2
                ),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
