"""Generation speed against context length, with and without the KV cache, per model size.

Batch 1, the product's GPT and `scaling.inference.decode_seconds`: the same measurement a trial
records after training, at the same precision (fp32 on CPUs, bf16 on CUDA). For each size and
context length 64 ... 1024, the seconds to generate one token when that many precede it. With
the cache a step runs one token through the network and attends to the cached keys (cost
O(N + L·d·context)); without, it recomputes the whole context (O(context · (N + L·d·context))).
One JSON object per (size, context, cache), then per size the cache's speed-up at the longest
context.
"""

from __future__ import annotations

import json

import torch

from scaling import hardware
from scaling.config import GPTConfig
from scaling.inference import decode_contexts, decode_precision, decode_seconds
from scaling.model import GPT

SIZES = [(2, 64, 2), (4, 128, 2), (4, 256, 4)]  # (n_layer, d_model, n_head)
SEQ_LEN = 1024


def main() -> None:
    device = hardware.device_type()
    precision = decode_precision(device)
    name = hardware.cpu_model() if device == "cpu" else device
    for n_layer, d_model, n_head in SIZES:
        torch.manual_seed(0)
        config = GPTConfig(n_layer, d_model, n_head, SEQ_LEN)
        model = GPT(config).to(device).eval()
        speedup = None
        for context in decode_contexts(SEQ_LEN):
            seconds = {}
            for use_cache in (True, False):
                seconds[use_cache] = min(
                    decode_seconds(model, context, precision, steps=16, use_cache=use_cache)
                    for _ in range(2)
                )
                print(
                    json.dumps(
                        {
                            "benchmark": "inference_cost",
                            "device": name,
                            "precision": precision,
                            "shape": config.name,
                            "params": config.params,
                            "context": context,
                            "kv_cache": use_cache,
                            "ms_per_token": round(seconds[use_cache] * 1e3, 3),
                            "tokens_per_s": round(1 / seconds[use_cache], 1),
                        }
                    ),
                    flush=True,
                )
            speedup = seconds[False] / seconds[True]
        print(
            json.dumps(
                {
                    "benchmark": "inference_cache_speedup",
                    "shape": config.name,
                    "context": SEQ_LEN,
                    "cache_speedup": round(speedup, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
