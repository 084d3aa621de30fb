"""How fast the training data path delivers tokens, against what the smallest model trains.

Prints one JSON object per measurement. The data path should never be the bottleneck:
loader tokens/s ought to be many times the training tokens/s.
"""

from __future__ import annotations

import json
import time

from scaling import trial as trial_lib
from scaling.contract import STEP_TIME_S
from scaling.data import ByteDataModule, prepare
from scaling.hardware import cpu_model
from scaling.spec import DataSpec, expand, parse


def loader_tokens_per_s(seq_len: int, batch_size: int, steps: int = 200) -> float:
    cache = prepare(DataSpec(), progress=False)
    data = ByteDataModule(cache, seq_len, batch_size, batch_size, steps, steps, 65536, seed=0)
    start = time.perf_counter()
    for _batch in data.train_dataloader():
        pass
    return steps * batch_size * seq_len / (time.perf_counter() - start)


def training_tokens_per_s(seq_len: int) -> float:
    raw = {
        "name": "bench",
        "model": {"sizes": [{"n_layer": 2, "d_model": 64, "n_head": 2}]},
        "grid": {"seq_len": [seq_len], "tokens": [8192 * 30]},
        "train": {"tokens_per_step": 8192, "eval_interval_tokens": 10**9, "eval_tokens": 8192},
    }
    (trial,) = expand(parse(raw))
    result = trial_lib.run(trial, out_dir="/tmp/scaling-bench")
    return trial.train.tokens_per_step / result.metrics[STEP_TIME_S]


def main() -> None:
    for seq_len in (128, 256):
        loader = loader_tokens_per_s(seq_len, 8192 // seq_len)
        training = training_tokens_per_s(seq_len)
        print(
            json.dumps(
                {
                    "benchmark": "data_loader",
                    "cpu": cpu_model(),
                    "shape": "L2-d64",
                    "seq_len": seq_len,
                    "loader_tokens_per_s": round(loader),
                    "training_tokens_per_s": round(training),
                    "ratio": round(loader / training, 1),
                    "target_ratio": 20,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
