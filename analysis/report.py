"""The scaling report: every fit of a grid, its plots, and what they predict for bigger runs.

`analyse(runs)` does the fitting and returns an `Analysis` (each fit, or the reason the data
could not support it); `write_report(analysis, out_dir)` writes report.html (self-contained),
report.md, fits.json and plots/*.png, building the directory aside and moving it into place so
a reader never finds half a report.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from analysis import frontier, inference, timing
from analysis.fit import (
    ChinchillaFit,
    FitError,
    SaturatingFit,
    fit_chinchilla,
    fit_power_law,
    fit_saturating,
)
from analysis.laws import PowerLaw
from analysis.runs import Runs
from scaling.contract import GPU_PEAK_FLOPS, ModelName, parse_attention

DEFAULT_BUDGETS = (1e18, 1e20, 1e22)
DEFAULT_GPU = "H100"


def size_name(row) -> str:
    """`L4-d256`, or `L4-d256-W256` for a sliding window of 256: a different model to time."""
    if pd.isna(row["n_layer"]):  # a CSV of results may give only the parameter count
        return f"N={row['params']:.3g}"
    window = parse_attention(row["attention"])
    return str(ModelName(int(row["n_layer"]), int(row["d_model"]), window))


@dataclass
class Analysis:
    """Every fit of one report. A field holding a `str` holds the reason that fit was refused."""

    experiment: str
    source: str
    runs: Runs
    finished: pd.DataFrame  # the finished runs with a loss, each with its `size` name
    seq_len: int | None  # the sequence length the loss fits use
    attention: str  # the attention the loss fits use
    points: pd.DataFrame  # the finished runs at that length and attention
    chinchilla: ChinchillaFit | str
    held_out: frontier.HeldOut | str
    approach_1: frontier.ComputeOptimal | str
    approach_2: frontier.ComputeOptimal | str
    fixed_tokens: SaturatingFit | str  # direct E + A/N^alpha where one token count has 3+ sizes
    fixed_tokens_D: float | None
    time_vs_params: dict[int, PowerLaw | str]  # by sequence length
    seq_len_costs: dict[str, timing.SeqLenCost | str]  # by size name
    seq_len_exponents: dict[str, PowerLaw | str]  # time per token ∝ T^k, by size name
    decode_curves: pd.DataFrame  # size, context, seconds per generated token
    cost_split: pd.DataFrame  # training against inference, per size
    claims: dict[str, str]
    predictions: pd.DataFrame | str
    gpu: str
    mfu: float | None
    mfu_source: str
    notes: list[str] = field(default_factory=list)


def _attempt(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except FitError as exc:
        return str(exc)


def analyse(
    runs: Runs,
    experiment: str,
    source: str = "",
    budgets=DEFAULT_BUDGETS,
    gpu: str = DEFAULT_GPU,
    mfu: float | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Analysis:
    """Fit everything the grid supports; refusals are kept as messages, not raised."""
    finished = runs.finished.dropna(subset=["val_loss", "params", "tokens"]).copy()
    if finished.empty:
        raise FitError(f"experiment '{experiment}' has no FINISHED trial to fit")
    if "attention" not in finished:
        finished["attention"] = "dense"
    finished["attention"] = finished["attention"].fillna("dense")
    finished["size"] = finished.apply(size_name, axis=1)
    # Loss depends on context length and attention, so the loss laws use one of each: the
    # attention with the most finished runs (dense on a tie), then the length with the most,
    # the longest of those on a tie (the context users usually plan for).
    kinds = finished.groupby("attention").size()
    attention = max(kinds.index, key=lambda k: (kinds[k], k == "dense"))
    same_attention = finished[finished["attention"] == attention]
    counts = same_attention.groupby("seq_len").size()
    if counts.empty:  # results without lengths (a CSV): all of them
        seq_len, points = None, same_attention
    else:
        seq_len = int(max(counts.index, key=lambda T: (counts[T], T)))
        points = same_attention[same_attention["seq_len"] == seq_len]
    N, D, L = (points[c].to_numpy(float) for c in ("params", "tokens", "val_loss"))

    chinchilla = _attempt(fit_chinchilla, N, D, L, bootstrap=bootstrap, seed=seed)
    held_out = _attempt(frontier.held_out_prediction, N, D, L, bootstrap=min(bootstrap, 200))
    approach_1 = _attempt(
        frontier.approach_1, {r: runs.curves[r] for r in points["run_id"]}, points
    )
    approach_2 = _attempt(frontier.approach_2, N, D, points["flops"], L)
    by_tokens = points.groupby("tokens")
    D_fixed = max(by_tokens.groups, key=lambda d: (by_tokens.get_group(d)["params"].nunique(), d))
    fixed = by_tokens.get_group(D_fixed)
    fixed_tokens = _attempt(
        fit_saturating, fixed["params"], fixed["val_loss"], bootstrap=min(bootstrap, 200)
    )

    timed = finished.dropna(subset=["time_per_token"])
    # Time against size compares like with like: the attention the loss laws use.
    same_kind = timed[timed["attention"] == attention]
    time_vs_params = {
        int(T): _attempt(
            fit_power_law, group["params"], group["time_per_token"], f"time per token at T={T}"
        )
        for T, group in same_kind.groupby("seq_len")
    }
    seq_len_costs = {}
    for size, group in timed.groupby("size", sort=False):
        seq_len_costs[size] = _attempt(
            timing.fit_seq_len_cost,
            group["seq_len"],
            group["time_per_token"],
            d_model=int(group["d_model"].iloc[0]),
        )
    seq_len_exponents = {
        size: _attempt(
            fit_power_law,
            group["seq_len"],
            group["time_per_token"],
            f"time per token against sequence length for {size}",
            min_points=2,
        )
        for size, group in timed.groupby("size", sort=False)
    }
    claims = _claims(timed, seq_len, attention, seq_len_costs)

    if mfu is None and "mfu" in points and points["mfu"].notna().any():
        largest = points[points["params"] == points["params"].max()]
        mfu = float(largest["mfu"].median())
        device = largest["device"].dropna()
        mfu_source = (
            f"the median MFU of the grid's largest size ({largest['size'].iloc[0]}, "
            f"T={seq_len}) on {device.iloc[0] if len(device) else 'its device'}"
        )
    else:
        mfu_source = "given with --mfu" if mfu is not None else "no MFU was measured"
    predictions = (
        _predictions(chinchilla, budgets, gpu, mfu)
        if isinstance(chinchilla, ChinchillaFit)
        else f"no predictions: the Chinchilla fit was refused ({chinchilla})"
    )
    return Analysis(
        experiment,
        source,
        runs,
        finished,
        seq_len,
        attention,
        points,
        chinchilla,
        held_out,
        approach_1,
        approach_2,
        fixed_tokens,
        float(D_fixed),
        time_vs_params,
        seq_len_costs,
        seq_len_exponents,
        inference.decode_curves(finished, runs.decode),
        inference.cost_split(finished, runs.decode),
        claims,
        predictions,
        gpu,
        mfu,
        mfu_source,
    )


def _claims(timed: pd.DataFrame, seq_len: int, attention: str, costs: dict) -> dict[str, str]:
    at_length = timed[(timed["seq_len"] == seq_len) & (timed["attention"] == attention)]
    exponential = _attempt(
        timing.claim_exponential, at_length["params"], at_length["time_per_token"]
    )
    quadratic = []
    for size, cost in reversed(list(costs.items())):  # the largest size first
        runs = timed[timed["size"] == size]
        lengths = sorted(runs["seq_len"].unique())
        window = parse_attention(runs["attention"].iloc[0])
        text = (
            timing.claim_quadratic(cost, lengths[:-1] or lengths, window)
            if not isinstance(cost, str)
            else cost
        )
        quadratic.append(f"{size}: {text}")
    return {
        "quadratic": "\n".join(quadratic) or "no size was timed at two or more lengths",
        "exponential": exponential,
    }


def _predictions(fit: ChinchillaFit, budgets, gpu: str, mfu: float | None) -> pd.DataFrame:
    peak = GPU_PEAK_FLOPS[gpu]["bf16"]
    rows = []
    for C in budgets:
        row = {"flops": float(C)}
        for name, quantity in (
            ("n_opt", lambda law, C=C: law.n_opt(C)),
            ("d_opt", lambda law, C=C: law.d_opt(C)),
            ("loss", lambda law, C=C: law.loss_opt(C)),
        ):
            row[name] = float(quantity(fit.law))
            row[f"{name}_ci95"] = fit.interval(quantity)
        row["gpu_hours"] = C / (peak * mfu) / 3600 if mfu else None
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# fits.json


def _value(value, interval=None) -> dict:
    return {"value": float(value), "ci95": list(interval) if interval else None}


def fits_document(a: Analysis) -> dict:
    def block(result, to_dict):
        return {"refused": result} if isinstance(result, str) else to_dict(result)

    document = {
        "experiment": a.experiment,
        "source": a.source,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seq_len": a.seq_len,
        "attention": a.attention,
        "runs": {
            "finished": len(a.runs.finished),
            "fitted": len(a.points),
            "not_finished": [
                {"name": r["name"], "status": r["status"], "error": r["error"]}
                for _, r in a.runs.not_finished.iterrows()
            ],
        },
        "chinchilla": block(a.chinchilla, lambda f: {**f.to_dict(), "seq_len": a.seq_len}),
        "held_out": block(a.held_out, frontier.HeldOut.to_dict),
        "approach_1": block(a.approach_1, frontier.ComputeOptimal.to_dict),
        "approach_2": block(a.approach_2, frontier.ComputeOptimal.to_dict),
        "loss_vs_params": block(
            a.fixed_tokens,
            lambda f: {
                "tokens": a.fixed_tokens_D,
                **{
                    name: _value(getattr(f.law, name), f.interval(lambda s, n=name: getattr(s, n)))
                    for name in ("E", "A", "alpha")
                },
            },
        ),
        "time": {
            "per_token_vs_params": {
                str(T): block(law, PowerLaw.to_dict) for T, law in a.time_vs_params.items()
            },
            "seq_len_split": {
                size: block(
                    cost,
                    lambda c: {
                        "a_s_per_token": c.a,
                        "b_s_per_token_per_position": c.b,
                        "crossover": c.crossover,
                        "flop_model_crossover": c.flop_model_crossover,
                    },
                )
                for size, cost in a.seq_len_costs.items()
            },
            "per_token_vs_seq_len": {
                size: block(law, PowerLaw.to_dict) for size, law in a.seq_len_exponents.items()
            },
        },
        "inference": {
            "decode_s_per_token": a.decode_curves.drop(columns="params").to_dict("records"),
            "cost_split": a.cost_split.to_dict("records"),
        },
        "claims": a.claims,
    }
    if isinstance(a.predictions, str):
        document["predictions"] = {"refused": a.predictions}
    else:
        document["predictions"] = {
            "gpu": a.gpu,
            "peak_flops": GPU_PEAK_FLOPS[a.gpu]["bf16"],
            "mfu": a.mfu,
            "mfu_source": a.mfu_source,
            "convention": "C = 6·N·D; N_opt, D_opt and loss from the Chinchilla fit",
            "rows": [
                {
                    "flops": r["flops"],
                    "n_opt": _value(r["n_opt"], r["n_opt_ci95"]),
                    "d_opt": _value(r["d_opt"], r["d_opt_ci95"]),
                    "loss": _value(r["loss"], r["loss_ci95"]),
                    "gpu_hours": r["gpu_hours"],
                }
                for _, r in a.predictions.iterrows()
            ],
        }
    return _finite(json.loads(json.dumps(document, default=_jsonable)))


def _finite(value):
    """JSON has no NaN or infinity: an undefined number (a crossover that never comes, a
    time that was not measured) is written as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# Plots: each returns its caption, and says something a reader can check against the tables.


def _size_colours(sizes) -> dict[str, tuple]:
    cmap = plt.get_cmap("viridis")
    return {s: cmap(i / max(1, len(sizes) - 1) * 0.9) for i, s in enumerate(sizes)}


def _model_styles(sizes) -> dict[str, tuple]:
    """(colour, marker, line) per model: one colour per shape, and its sliding-window
    variant (`-W256`) drawn with squares and dash-dots."""
    shapes = list(dict.fromkeys(size.split("-W")[0] for size in sizes))
    colours = _size_colours(shapes)
    return {
        size: (colours[size.split("-W")[0]], *(("s", "-.") if "-W" in size else ("o", "-")))
        for size in sizes
    }


def _sizes_in_order(frame: pd.DataFrame) -> list[str]:
    return list(frame.sort_values("params")["size"].drop_duplicates())


def plot_loss_vs_compute(a: Analysis, path: Path) -> str:
    colours = _size_colours(_sizes_in_order(a.points))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, run in a.points.iterrows():
        curve = a.runs.curves.get(run["run_id"])
        if curve is not None and "flops" in curve:
            ax.plot(curve["flops"], curve["val_loss"], color=colours[run["size"]], alpha=0.5, lw=1)
    for size, group in a.points.groupby("size"):
        ax.scatter(group["flops"], group["val_loss"], color=colours[size], label=size, zorder=3)
    if not isinstance(a.approach_1, str):
        env = a.approach_1.points
        ax.plot(env["flops"], env["loss"], color="black", lw=2.5, label="lower envelope")
    if not isinstance(a.chinchilla, str):
        C = np.logspace(
            np.log10(a.points["flops"].min() / 3), np.log10(a.points["flops"].max() * 30), 60
        )
        fit = a.chinchilla
        frontier_of = _frontier_in_grid_flops(a.points)
        ax.plot(
            C, frontier_of(fit.law, C), "--", color="crimson", label="Chinchilla fit: best loss"
        )
        if fit.samples:
            band = np.array([frontier_of(law, C) for law in fit.samples[:300]])
            low, high = np.nanpercentile(band, [2.5, 97.5], axis=0)
            ax.fill_between(C, low, high, color="crimson", alpha=0.15, label="95% interval")
    ax.set(xscale="log", xlabel="training FLOPs", ylabel="validation loss (nats/byte)")
    ax.set_title(f"Loss against compute, T={a.seq_len}")
    ax.legend(fontsize=8)
    _save(fig, path)
    return (
        "Validation curves of every finished run (thin), final losses (dots), their lower "
        "envelope (approach 1, black) and the Chinchilla fit's lowest loss at each compute with "
        "its 95% bootstrap band, over sizes from 1/100 to 100 times the grid's. FLOPs are the "
        "grid's own (output head and attention counted): the frontier takes each size's FLOPs "
        "per token from a power law fitted to the grid's sizes."
    )


def _frontier_in_grid_flops(points: pd.DataFrame):
    """min over N of L(N, C / flops_per_token(N)): the compute-optimal loss under the grid's
    FLOP count, with flops_per_token(N) a power law through the grid's sizes."""
    per_token = fit_power_law(points["params"], points["flops_per_token"], "FLOPs per token")
    N = np.logspace(np.log10(points["params"].min() / 100), np.log10(points["params"].max() * 100))

    def frontier(law, C):
        D = np.asarray(C, float)[:, None] / per_token(N)[None, :]
        with np.errstate(all="ignore"):
            return np.nanmin(law.loss(N[None, :], D), axis=1)

    return frontier


def _losses_coloured_by(fig, ax, points: pd.DataFrame, column: str, cmap: str, label: str):
    """Final loss against parameters, coloured on a log scale by `column`; returns the scale."""
    values = points[column]
    norm = LogNorm(values.min(), max(values.max(), values.min() * 1.01))
    cmap = plt.get_cmap(cmap)
    dots = ax.scatter(
        points["params"], points["val_loss"], c=values, cmap=cmap, norm=norm, zorder=3
    )
    fig.colorbar(dots, ax=ax, label=label)
    return norm, cmap


def plot_loss_vs_params(a: Analysis, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tokens = a.points["tokens"]
    norm, cmap = _losses_coloured_by(fig, ax, a.points, "tokens", "plasma", "training tokens")
    n_max = a.points["params"].max()
    N = np.logspace(np.log10(a.points["params"].min() / 2), np.log10(n_max * 30))
    if not isinstance(a.chinchilla, str):
        fit = a.chinchilla
        for D in sorted({tokens.min(), float(np.exp(np.log(tokens).mean())), tokens.max()}):
            ax.plot(N, fit.law.at_tokens(D)(N), color=cmap(norm(D)), lw=1.5)
            if fit.samples:
                band = np.array([s.at_tokens(D)(N) for s in fit.samples])
                low, high = np.percentile(band, [2.5, 97.5], axis=0)
                ax.fill_between(N, low, high, color=cmap(norm(D)), alpha=0.12)
    ax.axvspan(n_max, N[-1], color="grey", alpha=0.1, label="extrapolation")
    ax.set(xscale="log", xlabel="parameters N (non-embedding)", ylabel="validation loss")
    ax.set_title(f"Loss against parameters at fixed tokens, T={a.seq_len}")
    ax.legend(fontsize=8)
    _save(fig, path)
    return (
        "Final losses coloured by training tokens, and the Chinchilla fit at the smallest, "
        "middle and largest token counts of the grid, E + B/D^beta + A/N^alpha, with 95% "
        "bootstrap bands; the grey region is beyond the largest size trained."
    )


def plot_isoflop(a: Analysis, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    flops = a.points["flops"]
    norm, cmap = _losses_coloured_by(fig, ax, a.points, "flops", "cividis", "training FLOPs")
    parabolas = [] if isinstance(a.approach_2, str) else a.approach_2.parabolas
    budgets = frontier.isoflop_budgets(flops)
    for parabola in parabolas:
        group = a.points[np.isclose(budgets, parabola["flops"])]
        logn = np.linspace(np.log(group["params"].min()), np.log(group["params"].max()))
        colour = cmap(norm(parabola["flops"]))
        ax.plot(np.exp(logn), np.polyval(parabola["coefficients"], logn), color=colour)
        best = np.polyval(parabola["coefficients"], np.log(parabola["n_opt"]))
        ax.plot(parabola["n_opt"], best, "*", ms=14, color=colour, mec="black")
    shown = "approach 2's parabolas in log N (solid) and their minima (stars)"
    if not parabolas and not isinstance(a.chinchilla, str):
        # No IsoFLOP budgets in the grid: show what the fitted law says the profiles look like.
        per_token = fit_power_law(a.points["params"], a.points["flops_per_token"], "FLOPs/token")
        N = np.logspace(
            np.log10(a.points["params"].min() / 10), np.log10(a.points["params"].max() * 10)
        )
        for C in np.geomspace(flops.min(), flops.max(), 3):
            loss = a.chinchilla.law.loss(N, C / per_token(N))
            colour = cmap(norm(C))
            ax.plot(N, loss, "--", color=colour, label=f"fit at C = {C:.2g}")
            k = int(np.nanargmin(loss))
            if 0 < k < len(N) - 1:  # a minimum at the edge of the sizes drawn is no minimum
                ax.plot(N[k], loss[k], "*", ms=14, color=colour, mec="black")
        ax.legend(fontsize=8)
        shown = (
            "the grid has no FLOP budget with 3 sizes, so the dashed lines are the Chinchilla "
            "fit's profiles at three budgets across the grid, with their minima (stars) where "
            "they fall inside the sizes drawn"
        )
    ax.set(xscale="log", xlabel="parameters N", ylabel="final validation loss")
    ax.set_title(f"IsoFLOP profiles, T={a.seq_len}")
    _save(fig, path)
    return f"Final loss against model size, coloured by training FLOPs; {shown}."


def plot_training_curves(a: Analysis, path: Path) -> str:
    finished = a.finished
    lengths = sorted(finished["seq_len"].unique())
    colours = _size_colours(_sizes_in_order(finished))
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 4), squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for _, run in finished[finished["seq_len"] == T].sort_values("params").iterrows():
            curve = a.runs.curves.get(run["run_id"])
            if curve is not None and len(curve):
                ax.plot(curve["tokens"], curve["val_loss"], color=colours[run["size"]], lw=1.2)
        for size, colour in colours.items():
            ax.plot([], [], color=colour, label=size)
        ax.set(xscale="log", xlabel="training tokens", ylabel="validation loss", title=f"T={T}")
        ax.legend(fontsize=8)
    _save(fig, path)
    return "Validation loss during training, by model size (colour), one panel per sequence length."


def plot_time_per_token(a: Analysis, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = a.finished.dropna(subset=["time_per_token"])
    timed = timed[timed["attention"] == a.attention]
    for T, group in timed.groupby("seq_len"):
        (dots,) = ax.plot(group["params"], group["time_per_token"] * 1e6, "o")
        law = a.time_vs_params.get(int(T))
        if not isinstance(law, PowerLaw):
            continue
        N = np.logspace(np.log10(group["params"].min()), np.log10(group["params"].max()))
        ci = law.exponent_ci95
        label = f"T={T}: t ∝ N^{law.exponent:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        ax.plot(N, law(N) * 1e6, color=dots.get_color(), label=label)
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="time per token (µs)")
    ax.set_title("Training time per token against model size")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no timings in these runs", ha="center", transform=ax.transAxes)
    _save(fig, path)
    return (
        "Measured time per training token (log-log) with the fitted power law t ∝ N^k per length."
    )


def plot_seq_len_split(a: Analysis, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = a.finished.dropna(subset=["time_per_token"])
    styles = _model_styles(_sizes_in_order(timed))
    T = np.linspace(0, timed["seq_len"].max() * 1.1, 100)
    for size, group in timed.groupby("size"):
        colour, marker, line = styles[size]
        ax.plot(group["seq_len"], group["time_per_token"] * 1e6, marker, color=colour)
        cost = a.seq_len_costs.get(size)
        if isinstance(cost, timing.SeqLenCost):
            ax.plot(T, (cost.a + cost.b * T) * 1e6, line, color=colour, label=f"{size}: a + b·T")
            ax.plot(T, np.full_like(T, cost.a * 1e6), ":", color=colour, lw=1)
        # What the FLOP model expects: time in proportion to FLOPs per token, whose attention
        # part is 12·L·d·min(T, window), scaled to the measured time at the shortest length.
        at_shortest = group[group["seq_len"] == group["seq_len"].min()]
        shortest = at_shortest.iloc[0]
        attention = inference.attention_flops(shortest)
        dense = shortest["flops_per_token"] - attention * inference.keys(shortest)
        per_flop = at_shortest["time_per_token"].median() / shortest["flops_per_token"]
        window = parse_attention(shortest["attention"])
        keys = T if window is None else np.minimum(T, window)
        ax.plot(T, (dense + attention * keys) * per_flop * 1e6, "--", color=colour, lw=0.8)
    ax.plot([], [], ":", color="grey", label="dense part a (no attention)")
    ax.plot([], [], "--", color="grey", label="FLOP model, matched at the shortest T")
    ax.set(xlabel="sequence length T", ylabel="time per token (µs)", ylim=(0, None))
    ax.set_title("Time per token against sequence length: dense a + attention b·T")
    ax.legend(fontsize=8)
    _save(fig, path)
    return (
        "Time per token against sequence length per size: per sequence the cost is a·T + b·T², "
        "so per token a (dense layers, dotted) plus b·T (attention). Dashed: what the FLOP model "
        "(12·L·d·T attention FLOPs per token) predicts, matched to the measured time at the "
        "shortest length; where the measured line is flatter, attention costs less than its "
        "FLOPs on this hardware. Squares and dash-dots: the same shape with a sliding window, "
        "whose attention stops growing at the window."
    )


def plot_decode_latency(a: Analysis, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = a.decode_curves
    styles = _model_styles(list(curves["size"].drop_duplicates()))
    for size, curve in curves.groupby("size", sort=False):
        colour, marker, line = styles[size]
        ax.plot(curve["context"], curve["seconds"] * 1e3, marker + line, color=colour, label=size)
    if curves.empty:
        ax.text(0.5, 0.5, "no decode timings in these runs", ha="center", transform=ax.transAxes)
    ax.set(xscale="log", xlabel="context length (tokens before the new one)")
    ax.set(ylabel="ms per generated token", ylim=(0, None))
    ax.set_title("Generation latency against context (batch 1, KV cache)")
    if not curves.empty:
        ax.legend(fontsize=8)
    _save(fig, path)
    return (
        "Seconds to generate one token, batch 1 with the KV cache, at each context length, "
        "measured by every trial after training (median over the runs of a size at its longest "
        "trained length). A dense model's cost per token grows with the keys it attends to; a "
        "sliding window's stops growing at the window."
    )


def plot_mfu_heatmap(a: Analysis, path: Path) -> str:
    timed = a.finished.dropna(subset=["mfu", "seq_len"])
    if timed.empty:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no MFU measured in these runs", ha="center", transform=ax.transAxes)
        ax.axis("off")
        _save(fig, path)
        return "Model FLOPs utilisation by size and sequence length: not measured here."
    sizes = _sizes_in_order(timed)
    table = timed.pivot_table(index="size", columns="seq_len", values="mfu", aggfunc="median")
    table = table.reindex(sizes) * 100
    fig, ax = plt.subplots(figsize=(1.6 * len(table.columns) + 3, 0.6 * len(sizes) + 2))
    image = ax.imshow(table.to_numpy(), cmap="magma", aspect="auto")
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.1f}%", ha="center", va="center", color="cyan", fontsize=10)
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns])
    ax.set_yticks(range(len(sizes)), sizes)
    ax.set(xlabel="sequence length", title="MFU (median over the runs of each cell)")
    fig.colorbar(image, ax=ax, label="MFU (%)")
    _save(fig, path)
    return "Model FLOPs utilisation by size and sequence length (achieved / peak FLOP/s)."


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {
    "loss_vs_compute.png": plot_loss_vs_compute,
    "loss_vs_params.png": plot_loss_vs_params,
    "isoflop.png": plot_isoflop,
    "training_curves.png": plot_training_curves,
    "time_per_token.png": plot_time_per_token,
    "seq_len_split.png": plot_seq_len_split,
    "mfu_heatmap.png": plot_mfu_heatmap,
    "decode_latency.png": plot_decode_latency,
}


# ---------------------------------------------------------------------------------------------
# The document: a list of blocks rendered twice, as Markdown and as HTML.


def _fmt(value: float, interval=None, digits: int = 4) -> str:
    text = f"{value:.{digits}g}"
    return text + (f" [{interval[0]:.{digits}g}, {interval[1]:.{digits}g}]" if interval else "")


def _blocks(a: Analysis, captions: dict[str, str]) -> list[tuple]:
    b: list[tuple] = [("h1", f"Scaling report: {a.experiment}")]
    b.append(
        (
            "p",
            f"{len(a.runs.finished)} finished runs of {len(a.runs.table)} ({a.source}). Loss "
            f"laws are fitted on the {len(a.points)} finished runs at sequence length "
            f"{a.seq_len}"
            + (f" with {a.attention} attention" if a.finished["attention"].nunique() > 1 else "")
            + "; intervals are 95% bootstrap intervals.",
        )
    )
    b.append(("h2", "Loss against parameters and data (Chinchilla approach 3)"))
    if isinstance(a.chinchilla, str):
        b.append(("p", f"Refused: {a.chinchilla}"))
    else:
        fit = a.chinchilla
        rows = [
            [name, _fmt(getattr(fit.law, name), fit.interval(lambda s, n=name: getattr(s, n)))]
            for name in ("E", "A", "B", "alpha", "beta", "a", "b")
        ]
        b.append(("p", "L(N, D) = E + A / N^alpha + B / D^beta"))
        b.append(("table", ["parameter", "value [95% interval]"], rows))
        b.append(
            (
                "p",
                f"{fit.n_points} points, {fit.n_starts} L-BFGS starts, {fit.resamples} bootstrap "
                f"resamples; summed Huber objective {fit.objective:.4g}. a = beta/(alpha+beta) "
                "is the share of extra compute that should go to parameters.",
            )
        )
        for warning in fit.warnings():
            b.append(("p", f"Caution: {warning}."))
    b.append(("h2", "Held-out prediction"))
    if isinstance(a.held_out, str):
        b.append(("p", f"Refused: {a.held_out}"))
    else:
        h = a.held_out
        b.append(
            (
                "p",
                f"Refitted without the largest size (N = {h.params:.3g}), the law predicts its "
                f"final loss with a mean absolute error of {h.mean_abs_error:.2%}.",
            )
        )
        rows = [
            [
                f"{r['tokens']:.3g}",
                f"{r['actual']:.4f}",
                _fmt(r["predicted"], (r["low"], r["high"])),
                f"{r['error']:+.2%}",
            ]
            for _, r in h.points.iterrows()
        ]
        b.append(("table", ["tokens", "measured", "predicted [95%]", "error"], rows))
    b.append(("h2", "Compute-optimal allocation"))
    rows, refusals = [], []
    for name, result in (
        ("approach 1 (envelope)", a.approach_1),
        ("approach 2 (IsoFLOP)", a.approach_2),
    ):
        if isinstance(result, str):
            rows.append([name, "refused (below)", ""])
            refusals.append(result)
        else:
            ci = result.n_opt.exponent_ci95
            rows.append(
                [
                    name,
                    _fmt(result.n_opt.exponent, ci, 3) + ("" if ci else " (2 points, no interval)"),
                    _fmt(result.d_opt.exponent, result.d_opt.exponent_ci95, 3),
                ]
            )
    if not isinstance(a.chinchilla, str):
        fit = a.chinchilla
        rows.append(
            [
                "approach 3 (fit)",
                _fmt(fit.law.a, fit.interval(lambda s: s.a), 3),
                _fmt(fit.law.b, fit.interval(lambda s: s.b), 3),
            ]
        )
    b.append(("table", ["method", "N_opt ∝ C^a", "D_opt ∝ C^b"], rows))
    for refusal in refusals:
        b.append(("p", f"Refused: {refusal}."))
    if not isinstance(a.approach_1, str):
        b.append(
            (
                "p",
                "Approach 1's intervals treat the envelope's points as independent; neighbours "
                "come from one run, so read those intervals as too narrow.",
            )
        )
    if not isinstance(a.approach_2, str) and a.approach_2.refused:
        b.append(("p", "Approach 2 left out: " + "; ".join(a.approach_2.refused) + "."))
    b.append(("img", "loss_vs_compute.png", captions["loss_vs_compute.png"]))
    b.append(("img", "isoflop.png", captions["isoflop.png"]))
    b.append(("h2", "Loss against parameters at fixed tokens"))
    if isinstance(a.fixed_tokens, str):
        b.append(
            (
                "p",
                f"Direct fit of E + A/N^alpha refused ({a.fixed_tokens}); the plot shows the "
                "Chinchilla fit's slices at fixed D instead.",
            )
        )
    else:
        f = a.fixed_tokens
        b.append(
            (
                "p",
                f"At D = {a.fixed_tokens_D:.3g} tokens: L(N) = E + A/N^alpha with E = "
                f"{_fmt(f.law.E, f.interval(lambda s: s.E))}, alpha = "
                f"{_fmt(f.law.alpha, f.interval(lambda s: s.alpha))}.",
            )
        )
    b.append(("img", "loss_vs_params.png", captions["loss_vs_params.png"]))
    b.append(("img", "training_curves.png", captions["training_curves.png"]))
    b.append(("h2", "Predictions"))
    if isinstance(a.predictions, str):
        b.append(("p", a.predictions))
    else:
        peak = GPU_PEAK_FLOPS[a.gpu]["bf16"]
        rows = [
            [
                f"{r['flops']:.0e}",
                _fmt(r["n_opt"], r["n_opt_ci95"], 3),
                _fmt(r["d_opt"], r["d_opt_ci95"], 3),
                _fmt(r["loss"], r["loss_ci95"], 4),
                f"{r['gpu_hours']:,.3g}" if r["gpu_hours"] else "n/a",
            ]
            for _, r in a.predictions.iterrows()
        ]
        b.append(("table", ["FLOPs", "N_opt", "D_opt", "loss", f"{a.gpu}-hours"], rows))
        mfu = f"{a.mfu:.1%}" if a.mfu else "n/a"
        b.append(
            (
                "p",
                f"C = 6·N·D. GPU-hours = C / ({a.gpu} dense bf16 peak {peak:.3g} FLOP/s × MFU "
                f"{mfu}), the MFU being {a.mfu_source}; a small model's MFU on a CPU says "
                "little about a large one's on a GPU, so pass --mfu with your own (about 40% "
                "is common for tuned dense training). Predictions this far beyond the grid "
                "carry the law's form as an assumption; the intervals cover the fit's "
                "uncertainty only.",
            )
        )
    b.append(("h2", "Time"))
    rows = []
    for T, law in a.time_vs_params.items():
        rows.append(
            [f"T={T}", law if isinstance(law, str) else _fmt(law.exponent, law.exponent_ci95, 3)]
        )
    b.append(("table", ["sequence length", "k in t ∝ N^k [95%]"], rows))
    rows = []
    for size, cost in a.seq_len_costs.items():
        law = a.seq_len_exponents.get(size)
        exponent = law if isinstance(law, str) else _fmt(law.exponent, law.exponent_ci95, 3)
        if isinstance(cost, str):
            rows.append([size, "refused", cost, "", exponent])
        else:
            window = a.finished.loc[a.finished["size"] == size, "attention"].iloc[0]
            flop_crossover = (
                f"{cost.flop_model_crossover:,}"
                if parse_attention(window) is None
                else "none (attention stops growing at the window)"
            )
            rows.append(
                [
                    size,
                    f"{cost.a * 1e6:.3g} µs + {cost.b * 1e9:.3g} ns·T",
                    f"{cost.crossover:,.0f}",
                    flop_crossover,
                    exponent,
                ]
            )
    b.append(
        (
            "table",
            ["model", "time per token", "measured T*", "FLOP model 6·d_model", "k in t ∝ T^k"],
            rows,
        )
    )
    b.append(
        (
            "p",
            "Per sequence a dense model costs a·T (the dense layers) + b·T² (attention): T* = "
            "a/b is the length from which attention costs more than the dense layers, and the "
            "exponent k of time per token against T is 0 where attention is negligible and "
            "approaches 1 where it dominates. A sliding window (-W in the model's name) attends "
            "to at most W keys, so beyond W its b and k should be near 0.",
        )
    )
    b.append(("img", "time_per_token.png", captions["time_per_token.png"]))
    b.append(("img", "seq_len_split.png", captions["seq_len_split.png"]))
    b.append(("img", "mfu_heatmap.png", captions["mfu_heatmap.png"]))
    b.extend(_inference_blocks(a, captions))
    b.append(("h2", "Two claims, checked on this grid"))
    for line in a.claims["quadratic"].splitlines():
        b.append(("p", line))
    b.append(("p", a.claims["exponential"]))
    b.append(("h2", "Runs not fitted"))
    missing = a.runs.not_finished
    if missing.empty:
        b.append(("p", "Every trial finished."))
    else:
        rows = [
            [
                r["name"],
                r["status"],
                str(r["error"] or "").splitlines()[0][:160] if r["error"] else "",
            ]
            for _, r in missing.iterrows()
        ]
        b.append(("table", ["run", "status", "reason"], rows))
    return b


def _inference_blocks(a: Analysis, captions: dict[str, str]) -> list[tuple]:
    b: list[tuple] = [("h2", "Inference")]
    b.append(("img", "decode_latency.png", captions["decode_latency.png"]))
    if a.cost_split.empty:
        b.append(("p", "No run recorded decode timings, so there is no cost split."))
        return b
    rows = [
        [
            r["size"],
            f"{r['seq_len']:,}",
            f"{r['train_flops_per_token']:.3g} / {r['decode_flops_per_token']:.3g}",
            f"{r['train_s_per_token'] * 1e6:.3g} µs / {r['decode_s_per_token'] * 1e3:.3g} ms",
            f"{r['train_wall_s']:,.0f} s for {r['train_tokens']:,} tokens",
            f"{r['tokens_to_match_training']:,.0f}",
        ]
        for _, r in a.cost_split.iterrows()
    ]
    headers = [
        "model",
        "context",
        "FLOPs per token: train / generate",
        "time per token: train / generate",
        "training run",
        "generated tokens costing the training time",
    ]
    b.append(("table", headers, rows))
    b.append(
        (
            "p",
            "Generating a token costs a third of training on one in FLOPs (a forward pass, "
            "2 per weight + 4·L·d per attended key, against 6 and 12), but far more in time: "
            "training runs a whole batch through each matmul, decoding one token at a time "
            "(batch 1) reads every weight for a single row. The last column is how many tokens "
            "one generation stream produces in the wall time the whole training run took.",
        )
    )
    return b


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "table":
            headers, rows = rest
            out.append("| " + " | ".join(headers) + " |")
            out.append("|" + "---|" * len(headers))
            out.extend(
                "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows
            )
        elif kind == "img":
            name, caption = rest
            out.append(f"![{name}](plots/{name})\n\n*{caption}*")
        out.append("")
    return "\n".join(out)


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:4px 10px;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
    "figcaption{color:#555;font-size:90%;margin-bottom:1.5em}"
)


def render_html(blocks: list[tuple], plots_dir: Path, title: str) -> str:
    """One file: every image is embedded as a data URI and nothing is fetched."""
    out = [
        "<!doctype html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{STYLE}</style></head><body>",
    ]
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "table":
            headers, rows = rest
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers))
            for row in rows:
                out.append(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                )
            out.append("</table>")
        elif kind == "img":
            name, caption = rest
            data = base64.b64encode((plots_dir / name).read_bytes()).decode()
            out.append(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def write_report(a: Analysis, out_dir: str | Path) -> Path:
    """Write the report into `out_dir` (replacing an older one only once the new is whole)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        plots = staging / "plots"
        plots.mkdir()
        captions = {name: plot(a, plots / name) for name, plot in PLOTS.items()}
        blocks = _blocks(a, captions)
        (staging / "report.md").write_text(render_markdown(blocks))
        (staging / "report.html").write_text(
            render_html(blocks, plots, f"Scaling report: {a.experiment}")
        )
        (staging / "fits.json").write_text(json.dumps(fits_document(a), indent=1))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old-{time.time_ns()}")
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old)
        else:
            staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir
