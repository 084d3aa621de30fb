"""What a trained model costs to use: decode latency against context, and the training /
inference split.

Each finished trial timed generation after training (batch 1, KV cache): seconds per new token
with `context` tokens before it. Per generated token, the forward pass costs
2·(matmul weights) + 4·L·d·(keys attended) FLOPs, against training's 6·(matmul weights) +
12·L·d·T per token; the report sets one against the other, and says how many generated tokens
cost as much time as the training run did.
"""

from __future__ import annotations

import math

import pandas as pd

from scaling.contract import WALL_S, attention_flops_per_key, keys_attended, parse_attention


def attention_flops(row) -> int:
    """Training FLOPs per token per attended key of a run: QKᵀ and AV, forward and backward."""
    return attention_flops_per_key(int(row["n_layer"]), int(row["d_model"]))


def keys(row) -> int:
    """Keys a query of a run attends to at its trained length."""
    return keys_attended(int(row["seq_len"]), parse_attention(row["attention"]))


def decode_curves(finished: pd.DataFrame, decode: pd.DataFrame) -> pd.DataFrame:
    """Median decode seconds per token by model (`size`) and context, from each model's runs
    at its longest trained length (those reach the longest contexts)."""
    if decode.empty:
        return pd.DataFrame(columns=["size", "context", "seconds", "params"])
    longest = finished[finished["seq_len"] == finished.groupby("size")["seq_len"].transform("max")]
    joined = decode.merge(longest[["run_id", "size", "params"]], on="run_id")
    curves = joined.groupby(["size", "context"], as_index=False).agg(
        seconds=("seconds", "median"), params=("params", "first")
    )
    return curves.sort_values(["params", "size", "context"], ignore_index=True)


def cost_split(finished: pd.DataFrame, decode: pd.DataFrame) -> pd.DataFrame:
    """Per model at its longest trained length: training against inference, per token in FLOPs
    and seconds, and the generated tokens whose decode time equals the training run's time."""
    curves = decode_curves(finished, decode)
    rows = []
    for size, group in finished.groupby("size", sort=False):
        longest = group[group["seq_len"] == group["seq_len"].max()]
        if longest.empty:  # results without lengths (a CSV)
            continue
        run = longest.loc[longest["tokens"].idxmax()]
        T = int(run["seq_len"])
        at_context = curves[(curves["size"] == size) & (curves["context"] == T)]
        if at_context.empty:
            continue
        decode_s = float(at_context["seconds"].iloc[0])
        wall_s = float(run[WALL_S]) if pd.notna(run.get(WALL_S)) else math.nan
        span = keys(run)
        attention = attention_flops(run)
        matmul_flops = run["flops_per_token"] - attention * span  # 6 × matmul weights
        inference_flops = matmul_flops / 3 + attention / 3 * span
        rows.append(
            {
                "size": size,
                "params": run["params"],
                "seq_len": T,
                "train_flops_per_token": float(run["flops_per_token"]),
                "decode_flops_per_token": float(inference_flops),
                "train_s_per_token": float(run["time_per_token"]),
                "decode_s_per_token": decode_s,
                "train_tokens": int(run["tokens"]),
                "train_wall_s": wall_s,
                "tokens_to_match_training": wall_s / decode_s if decode_s > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)
