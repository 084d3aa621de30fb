#!/usr/bin/env bash
# The GPU check: one prepared run for a lent H100/H200, under 5 minutes, from the repo root:
#
#     bash benchmarks/gpu_check.sh            # JSON lines on stdout, and in $OUT/ when set
#
# It runs the product's trial path (scaling.trial.run: Lightning, the metrics callback) on a
# GPT-2-small-class model, L12-d768-h12 at sequence length 1024, bf16 autocast, attention
# through SDPA (flash on Hopper), torch.compile on (`auto` on CUDA), 524,288 tokens per step
# (GPT-2's), and reports tokens/s and MFU against the datasheet's 989e12 dense bf16 FLOP/s,
# with the compile time apart. Target: MFU >= 45%.
#
# No Ray and no MLflow are needed: the trial path knows nothing of them. It needs torch,
# lightning, numpy, psutil, pyyaml and pydantic; the device image has all but pydantic, which
# travels as wheels (see the device tool's README): the script says which are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
STEPS=${GPU_CHECK_STEPS:-24}
SHAPE=${GPU_CHECK_SHAPE:-12,768,12,1024}   # n_layer,d_model,n_head,seq_len (smaller for a dry run)
TOKENS_PER_STEP=${GPU_CHECK_TOKENS_PER_STEP:-524288}
MICRO_BATCH=${GPU_CHECK_MICRO_BATCH:-32}
OUT_DIR=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi here"

timeout 290 "$PYTHON" - "$STEPS" "$SHAPE" "$TOKENS_PER_STEP" "$MICRO_BATCH" <<'PY' | tee "$OUT_DIR/gpu_check.json"
import importlib.util
import json
import sys
import tempfile

missing = [m for m in ("torch", "lightning", "numpy", "psutil", "yaml", "pydantic")
           if importlib.util.find_spec(m) is None]
if missing:
    print(json.dumps({"benchmark": "gpu_check", "error": f"missing packages: {missing}"}))
    sys.exit(1)

import torch

from scaling import hardware
from scaling import trial as trial_lib
from scaling.contract import COMPILE_S, PEAK_MEM_BYTES, STEP_TIME_S
from scaling.spec import expand, parse

steps, shape, tokens_per_step, micro = sys.argv[1:5]
n_layer, d_model, n_head, seq_len = (int(v) for v in shape.split(","))
steps, tokens_per_step, micro = int(steps), int(tokens_per_step), int(micro)
raw = {
    "name": "gpu-check",
    "model": {"sizes": [{"n_layer": n_layer, "d_model": d_model, "n_head": n_head}]},
    "grid": {"seq_len": [seq_len], "tokens": [tokens_per_step * steps]},
    "train": {
        "tokens_per_step": tokens_per_step,
        "micro_batch_size": min(micro, tokens_per_step // seq_len),
        "lr": 6e-4,
        "warmup_tokens": tokens_per_step * 2,
        "eval_interval_tokens": tokens_per_step * steps,  # one validation, at the end
        "eval_tokens": seq_len * 64,
        "log_interval_steps": 2,
    },
    "resources": {"gpus_per_trial": 1 if torch.cuda.is_available() else 0},
}
(trial,) = expand(parse(raw))
reports = []
with tempfile.TemporaryDirectory() as out_dir:
    result = trial_lib.run(trial, report=lambda m, c: reports.append(m), out_dir=out_dir)
seconds = result.metrics.get(STEP_TIME_S)
tokens_per_s = tokens_per_step / seconds if seconds else None
precision = result.params.get("precision")
peak = hardware.peak_flops(precision) if precision else None
print(json.dumps({
    "benchmark": "gpu_check",
    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else hardware.cpu_model(),
    "torch": torch.__version__,
    "shape": trial.gpt_config.name,
    "seq_len": seq_len,
    "params": trial.params,
    "flops_per_token": trial.flops_per_token,
    "tokens_per_step": tokens_per_step,
    "micro_batch_size": trial.micro_batch_size,
    "steps": steps,
    "status": result.status.value,
    "error": result.error,
    "precision": precision,
    "compile": result.params.get("compile"),
    "compile_s": result.metrics.get(COMPILE_S),
    "step_time_s": seconds,
    "tokens_per_s": tokens_per_s,
    "peak_flops": peak,
    "mfu": tokens_per_s * trial.flops_per_token / peak if tokens_per_s and peak else None,
    "target_mfu": 0.45,
    "peak_mem_bytes": result.metrics.get(PEAK_MEM_BYTES),
    "val_loss": result.val_loss,
}))
PY
