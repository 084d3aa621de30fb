"""Datasheet peak FLOP/s of the GPUs people train on: the denominator of MFU on a GPU, and
what a report turns predicted FLOPs into GPU-hours with. Shared by both sides (no torch)."""

# Dense (no sparsity) peak FLOP/s from the vendors' datasheets, by precision.
GPU_PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},  # SXM; the PCIe card is lower (756e12)
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
}
