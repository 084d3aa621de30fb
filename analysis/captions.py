"""The report's figure captions: each says something a reader can check against the tables."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LOSS_VS_COMPUTE = (
    "Validation curves of every finished run (thin), final losses (dots), their lower "
    "envelope (approach 1, black) and the Chinchilla fit's lowest loss at each compute with "
    "its 95% bootstrap band: solid over the grid's compute, the best of the models it "
    "trained (its sizes, at token counts within its own); dotted on grey beyond it, an "
    "extrapolation whose sizes and tokens widen in proportion to the compute. FLOPs are the "
    "grid's own (output head and attention counted): the frontier takes each size's FLOPs "
    "per token from a power law fitted to the grid's sizes."
)
NO_ENVELOPE = " Approach 1 was refused (its reason is under Verdict), so no envelope is drawn."
TRUNKS_AND_BRANCHES = (
    "Validation curves of the WSD trunks (dashed: constant learning rate) and of their "
    "cooldown branches (thin, each from its branch point to its budget), final losses (dots), "
    "approach 1's lower envelope (black) and the Chinchilla fit's lowest loss at each compute "
    "with its 95% bootstrap band (dotted on grey beyond the grid's compute: an "
    "extrapolation). The branches are the grid's points. Only a branch's end is "
    "annealed, so approach 1 joins each size's final losses into its curve."
)
ISOFLOP_PARABOLAS = (
    "Final loss against model size, coloured by training FLOPs; approach 2's parabolas in "
    "log N (solid) and their minima (stars), each within the sizes its parabola went "
    "through: a budget whose minimum falls outside them has no star, and the text says why."
)
ISOFLOP_FROM_LAW = (
    "Final loss against model size, coloured by training FLOPs; the grid has no FLOP budget "
    "with 3 sizes, so the dashed lines are the Chinchilla fit's profiles at three budgets "
    "across the grid, with their minima (stars) only where they fall within the sizes "
    "trained: approach 2's rule, which places no optimum outside the sizes tried."
)
LOSS_VS_PARAMS = (
    "Final losses coloured by training tokens, and the Chinchilla fit at the smallest, "
    "middle and largest token counts of the grid, E + B/D^beta + A/N^alpha, with 95% "
    "bootstrap bands; the grey region is beyond the largest size trained."
)
TRAINING_CURVES = (
    "Validation loss during training, by model size (colour), one panel per sequence length."
)
TIME_PER_TOKEN = (
    "Measured time per training token (log-log) with the fitted power law t ∝ N^k per length."
)
SEQ_LEN_SPLIT = (
    "Time per token against sequence length per size: per sequence the cost is a·T + b·T², "
    "so per token a (dense layers, dotted) plus b·T (attention). Dashed: what the FLOP model "
    "(12·L·d·T attention FLOPs per token) predicts, matched to the measured time at the "
    "shortest length; where the measured line is flatter, attention costs less than its "
    "FLOPs on this hardware. Squares and dash-dots: the same shape with a sliding window, "
    "whose attention stops growing at the window."
)
MFU_HEATMAP = "Model FLOPs utilisation by size and sequence length (achieved / peak FLOP/s)."
MFU_NOT_MEASURED = "Model FLOPs utilisation by size and sequence length: not measured here."
DECODE_LATENCY = (
    "Seconds to generate one token, batch 1 with the KV cache, at each context length, "
    "measured by every trial after training (median over the runs of a size at its longest "
    "trained length)."
)
FLAT_DECODE = 0.10  # a model whose decode times all lie within 10% of its fastest is flat


def decode_latency(curves: pd.DataFrame) -> str:
    """DECODE_LATENCY, and what its timings (`size`, `context`, `seconds`) show per model: a
    time that grows with the context, stays flat, or rises and falls with timing noise."""
    shows: dict[str, list[str]] = {"grows": [], "flat": [], "noisy": []}
    for size, curve in curves.groupby("size", sort=False):
        curve = curve.sort_values("context")
        seconds, contexts = list(curve["seconds"]), list(curve["context"])
        named = f"{size} (×{seconds[-1] / seconds[0]:.2f} from {contexts[0]} to {contexts[-1]})"
        steps_up = all(b >= a * (1 - FLAT_DECODE / 2) for a, b in pairwise(seconds))
        if max(seconds) <= min(seconds) * (1 + FLAT_DECODE):
            shows["flat"].append(named)
        elif steps_up and seconds[-1] > seconds[0] * (1 + FLAT_DECODE):
            shows["grows"].append(named)
        else:
            shows["noisy"].append(named)
    said = {
        "grows": "It grows with the context for {}: each new token attends to more keys.",
        "flat": f"It is flat within {FLAT_DECODE:.0%} for {{}}: at these sizes the keys "
        "attended do not show in the time.",
        "noisy": "It rises and falls without a trend for {}: timing noise (a busy machine) "
        "larger than any growth.",
    }
    found = [said[kind].format(", ".join(names)) for kind, names in shows.items() if names]
    return " ".join([DECODE_LATENCY, *found])


LR_SWEEPS = (
    "Final loss against peak learning rate for every run of the sweep, one panel per size, "
    "coloured by training tokens; the least-squares parabola in log LR of each cell and its "
    "vertex, LR* (stars). A red ring marks a cell whose best LR sits at an edge of its sweep: "
    "its optimum is not bracketed. The loss laws are fitted on each cell's best LR only."
)
LR_LAW = (
    "LR* of each cell against model size, coloured by training tokens, with 95% intervals "
    "where the cell had the residuals to give one; triangles are cells whose optimum was not "
    "bracketed (a bound, pointing the way the optimum lies), left out of the fit; lines are "
    "the fitted LR law at each token budget."
)
CURVE_PREDICTIONS = (
    "Validation curves (dots, one panel per size) and each size's schedule-aware law over "
    "every step of each run's schedule (lines): where a line leaves its dots the law misfits "
    "that schedule."
)
