"""The device a trial trains on: its precision and its peak FLOP/s, the denominator of MFU.

GPUs get their datasheet's dense peak. A CPU has no trustworthy datasheet figure (turbo,
core count, AMX), so its peak is measured: the rate of a large matmul at the trial's
precision on the trial's threads, cached per machine so trials do not repeat it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Literal

import torch

from scaling.contract import GPU_PEAK_FLOPS, gpu_in_device_name


def cache_dir() -> Path:
    """Where scaling keeps data caches and measurements: $SCALING_CACHE_DIR or ~/.cache/scaling."""
    root = os.environ.get("SCALING_CACHE_DIR") or Path.home() / ".cache" / "scaling"
    return Path(root)


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_supported() -> bool:
    """bf16 pays only with hardware support: CUDA (Ampere on), or AVX512-BF16 / AMX on CPUs."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str) -> str:
    """The spec's `auto | bf16 | fp32` as the precision this device will use."""
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


def resolve_compile(compile: str | bool) -> bool:
    """The spec's `auto | true | false` as whether this device compiles the model: on CUDA
    torch.compile fuses the elementwise work around the matmuls; on this project's CPUs it
    measured no faster (benchmarks/RESULTS.md), so `auto` leaves CPUs eager."""
    return device_type() == "cuda" if compile == "auto" else bool(compile)


def lightning_precision(precision: str) -> Literal["bf16-mixed", "32-true"]:
    return "bf16-mixed" if precision == "bf16" else "32-true"


def peak_flops(precision: str) -> float:
    """Peak FLOP/s for MFU: the datasheet for a known GPU, else measured on this device."""
    if torch.cuda.is_available():
        gpu = gpu_in_device_name(torch.cuda.get_device_name())
        if gpu is not None:
            return GPU_PEAK_FLOPS[gpu][precision]
    return _cached_matmul_rate(precision)


def _cached_matmul_rate(precision: str) -> float:
    threads = torch.get_num_threads()
    key = f"{cpu_model()}|{device_type()}|{precision}|threads={threads}|torch={torch.__version__}"
    return cached_measurement("peak_flops.json", key, lambda: measure_matmul_rate(precision))


def cached_measurement(filename: str, key: str, measure) -> float:
    """`measure()` once per machine and `key`, kept in the cache folder's `filename`."""
    path = cache_dir() / filename
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    if key not in table:
        table[key] = measure()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1))
        os.replace(tmp, path)  # a reader never sees half a file
    return table[key]


def measure_matmul_rate(precision: str, n: int = 2048, seconds: float = 0.5) -> float:
    """FLOP/s of repeated n×n matmuls at this precision: the best this device does."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    device = device_type()
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):  # warm up kernels and caches
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best
