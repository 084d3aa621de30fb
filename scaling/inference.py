"""Using a trained model: load a trial's checkpoint, sample text from BOS, time decoding.

Text is bytes (the tokenizer is the identity on UTF-8 bytes) and every document starts with
BOS, so a sample starts from BOS, then the prompt's bytes, and ends at the next BOS the model
writes (the end of its document) or after `max_new_tokens`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from scaling.config import BOS, GPTConfig
from scaling.contract import decode_metric
from scaling.model import GPT, KVCache


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    """The GPT in a trial's checkpoint (tensors and plain values only: weights_only),
    ready for inference, and the trial it came from."""
    saved = torch.load(checkpoint, map_location=device, weights_only=True)
    model = GPT(GPTConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), saved["trial"]


def encode(prompt: str) -> list[int]:
    return [BOS, *prompt.encode("utf-8")]


def decode(tokens: list[int]) -> str:
    """Bytes to text up to the first BOS (the end of the document); broken UTF-8 becomes �."""
    if BOS in tokens:
        tokens = tokens[: tokens.index(BOS)]
    return bytes(tokens).decode("utf-8", errors="replace")


def sample(
    model: GPT,
    prompt: str = "",
    max_new_tokens: int = 256,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
) -> str:
    """The prompt and the model's continuation of it, as text. Same seed, same text."""
    device = model.wte.weight.device
    idx = torch.tensor([encode(prompt)], device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, max_new_tokens, temperature, top_k, generator, stop_token=BOS)
    return prompt + decode(out[0, idx.size(1) :].tolist())


def decode_contexts(seq_len: int) -> list[int]:
    """Context lengths to time decoding at: 64, 128, ... doubling, and the full context."""
    contexts, c = [], 64
    while c < seq_len:
        contexts.append(c)
        c *= 2
    return [*contexts, seq_len]


def decode_seconds(
    model: GPT, context: int, precision: str = "fp32", steps: int = 8, use_cache: bool = True
) -> float:
    """Seconds to generate one token when `context` tokens precede it (batch 1), the mean of
    `steps` tokens ending at that context, after one untimed warm-up token. With the cache a
    step runs one token through the network; without, it recomputes all `context` of them."""
    device = model.wte.weight.device
    steps = max(1, min(steps, context - 2))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.no_grad(), autocast:
        if not use_cache:
            x = torch.randint(0, BOS, (1, context), device=device)
            model(x)  # warm-up
            start = time.perf_counter()
            for _ in range(steps):
                model(x)
            _synchronize(device)
            return (time.perf_counter() - start) / steps
        cache = KVCache(model.config)
        prompt = torch.randint(0, BOS, (1, context - steps - 1), device=device)
        model(prompt, cache=cache)
        token = prompt[:, -1:]
        model(token, cache=cache)  # warm-up: the first decode step allocates
        start = time.perf_counter()
        for _ in range(steps):
            model(token, cache=cache)
        _synchronize(device)
        return (time.perf_counter() - start) / steps


def decode_precision(device_type: str) -> str:
    """bf16 autocast on CUDA; fp32 on CPUs, where one token at a time spends more on autocast's
    per-call weight casts than bf16 saves (measured in benchmarks/RESULTS.md)."""
    return "bf16" if device_type == "cuda" else "fp32"


def decode_latencies(model: GPT) -> dict[str, float]:
    """Per-token decode seconds at each of `decode_contexts`, keyed as MLflow metrics."""
    precision = decode_precision(model.wte.weight.device.type)
    return {
        decode_metric(c): decode_seconds(model, c, precision)
        for c in decode_contexts(model.config.seq_len)
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":  # kernels run asynchronously there: wait before reading the clock
        torch.cuda.synchronize(device)
