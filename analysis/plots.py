"""The report's eight figures. They only draw: the points come from the `Analysis`, every line
and band from `curves.Curves`; the captions live with the report's sections."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axis import Axis, YAxis
from matplotlib.colors import LogNorm
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from analysis.analyse import Analysis, Refused
from analysis.curves import Curves
from analysis.laws import PowerLaw
from scaling.contract import MFU, VAL_LOSS, ModelName

# ---------------------------------------------------------------------------------------------
# Colours: one per model shape, its sliding-window variant in squares and dash-dots.


def _colours(names) -> dict[str, tuple]:
    cmap = plt.get_cmap("viridis")
    return {name: cmap(i / max(1, len(names) - 1) * 0.9) for i, name in enumerate(names)}


def _shape(size: str) -> tuple[str, bool]:
    """A model name's shape and whether it has a window (`N=1e+06` names only themselves)."""
    try:
        name = ModelName.parse(size)
    except ValueError:
        return size, False
    return name.shape, name.window is not None


def _styles(sizes) -> dict[str, tuple]:
    """(colour, marker, line) per model name."""
    colours = _colours(list(dict.fromkeys(_shape(size)[0] for size in sizes)))
    styles = {}
    for size in sizes:
        shape, windowed = _shape(size)
        styles[size] = (colours[shape], *(("s", "-.") if windowed else ("o", "-")))
    return styles


def _sizes_in_order(frame: pd.DataFrame) -> list[str]:
    return list(frame.sort_values("params")["size"].drop_duplicates())


def save(fig, path: Path) -> None:
    """Write `fig` with its log axes labelled by `log_axis`: every plot is saved here."""
    fig.tight_layout()
    for axis in (axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)):
        if axis.get_scale() == "log":
            log_axis(axis)
    fig.tight_layout()  # the new labels may be wider or narrower
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Label multiples of each power of ten in this order, a tier only while fewer than 3 labels
# are placed: the decades, then 2 and 5 times them, then the rest.
_LOG_TIERS = ((1,), (2, 5), (3, 4, 6, 7, 8, 9))


def log_axis(axis: Axis) -> None:
    """Label a log axis so that no two labels touch at its size on the laid-out figure: each
    is placed, tier by tier, only where it clears those already placed. Matplotlib's own
    labels of the multiples between powers of ten collide on spans near a decade
    (`3×10⁵4×10⁵`)."""
    low, high = sorted(axis.get_view_interval())
    exponents = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    placed: dict[float, tuple[float, float]] = {}  # value: first and last pixel of its label
    for tier in _LOG_TIERS:
        if len(placed) >= 3:
            break
        values = sorted(m * 10.0**e for e in exponents for m in tier)
        for value in (v for v in values if low <= v <= high):
            start, end = _label_pixels(axis, value)
            if all(end < s or start > e for s, e in placed.values()):
                placed[value] = (start, end)
    if len(placed) < 2:
        return  # a span too narrow to hold two of them: matplotlib's own labels
    axis.set_major_locator(FixedLocator(sorted(placed)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: _log_label(value)))
    axis.set_minor_formatter(NullFormatter())


def _label_pixels(axis: Axis, value: float) -> tuple[float, float]:
    """The pixels along `axis` that the label of `value` covers, with a quarter of its font
    size to spare on each side."""
    ax, vertical = axis.axes, isinstance(axis, YAxis)
    font = axis.get_major_ticks()[0].label1.get_fontproperties()
    label = Text(text=_log_label(value), fontproperties=font)
    label.set_figure(ax.figure)
    size = label.get_window_extent()
    if vertical:
        centre, half = ax.get_yaxis_transform().transform((0, value))[1], size.height / 2
    else:
        centre, half = ax.get_xaxis_transform().transform((value, 0))[0], size.width / 2
    spare = font.get_size_in_points() / 72 * ax.figure.dpi / 4
    return centre - half - spare, centre + half + spare


def _log_label(value: float) -> str:
    """`10⁵` or `3×10⁵`, as matplotlib writes them on a log axis."""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = round(value / 10**exponent)
    power = f"10^{{{exponent}}}"
    text = power if mantissa == 1 else f"{mantissa}\\times{power}"
    return f"$\\mathdefault{{{text}}}$"


def _coloured_losses(fig, ax, points: pd.DataFrame, column: str, cmap: str, label: str):
    """Final loss against parameters, coloured on a log scale by `column`; returns the scale."""
    values = points[column]
    norm = LogNorm(values.min(), max(values.max(), values.min() * 1.01))
    colour_map = plt.get_cmap(cmap)
    dots = ax.scatter(
        points["params"], points[VAL_LOSS], c=values, cmap=colour_map, norm=norm, zorder=3
    )
    fig.colorbar(dots, ax=ax, label=label)
    return norm, colour_map


def _at_length(a: Analysis) -> str:
    """`, T=512` in a loss plot's title: the length its laws use (results may have none)."""
    return f", T={a.seq_len}" if a.seq_len is not None else ""


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", transform=ax.transAxes)


# ---------------------------------------------------------------------------------------------


def loss_vs_compute(a: Analysis, curves: Curves, path: Path) -> None:
    colours = _colours(_sizes_in_order(a.points))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, run in a.points.iterrows():
        curve = a.runs.curves.get(run["run_id"])
        if curve is not None and "flops" in curve:
            ax.plot(curve["flops"], curve[VAL_LOSS], color=colours[run["size"]], alpha=0.5, lw=1)
    for i, (_, trunk) in enumerate(curves.trunks.groupby("run_id")):
        ax.plot(trunk["flops"], trunk[VAL_LOSS], "--", color=colours.get(trunk["size"].iloc[0]),
                lw=1, label=None if i else "WSD trunk (constant LR)")  # fmt: skip
    for size, group in a.points.groupby("size"):
        name = str(size)
        ax.scatter(group["flops"], group[VAL_LOSS], color=colours[name], label=name, zorder=3)
    envelope = None if isinstance(a.approach_1, Refused) else a.approach_1.envelope
    if envelope is not None:
        ax.plot(envelope["flops"], envelope["loss"], color="black", lw=2.5, label="lower envelope")
    best = curves.frontier
    if len(best):
        _frontier(ax, best)
        if best["low"].notna().any():
            ax.fill_between(
                best["flops"],
                best["low"],
                best["high"],
                color="crimson",
                alpha=0.15,
                label="95% interval",
            )
    ax.set(xscale="log", xlabel="training FLOPs", ylabel="validation loss (nats/byte)")
    ax.set_title(f"Loss against compute{_at_length(a)}")
    ax.legend(fontsize=8)
    save(fig, path)


def _frontier(ax, best: pd.DataFrame) -> None:
    """The fit's best loss: solid over the grid's compute, dotted beyond it on grey."""
    inside = best[~best["extrapolated"]]
    low, high = inside["flops"].min(), inside["flops"].max()
    ax.plot(inside["flops"], inside["loss"], color="crimson", label="Chinchilla fit: best loss")
    for i, side in enumerate((best[best["flops"] <= low], best[best["flops"] >= high])):
        ax.plot(side["flops"], side["loss"], ":", color="crimson")
        ax.axvspan(side["flops"].min(), side["flops"].max(), color="grey", alpha=0.1,
                   label=None if i else "extrapolation")  # fmt: skip


def loss_vs_params(a: Analysis, curves: Curves, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    norm, cmap = _coloured_losses(fig, ax, a.points, "tokens", "plasma", "training tokens")
    for D, slice_ in curves.fixed_tokens.groupby("tokens"):
        ax.plot(slice_["params"], slice_["loss"], color=cmap(norm(D)), lw=1.5)
        if slice_["low"].notna().any():
            ax.fill_between(
                slice_["params"], slice_["low"], slice_["high"], color=cmap(norm(D)), alpha=0.12
            )
    n_max = a.points["params"].max()
    right = curves.fixed_tokens["params"].max() if len(curves.fixed_tokens) else n_max * 30
    ax.axvspan(n_max, right, color="grey", alpha=0.1, label="extrapolation")
    ax.set(xscale="log", xlabel="parameters N (non-embedding)", ylabel="validation loss")
    ax.set_title(f"Loss against parameters at fixed tokens{_at_length(a)}")
    ax.legend(fontsize=8)
    save(fig, path)


def isoflop(a: Analysis, curves: Curves, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    norm, cmap = _coloured_losses(fig, ax, a.points, "flops", "cividis", "training FLOPs")
    minima = curves.isoflop_minima
    for C, profile in curves.isoflop.groupby("flops"):
        label = f"fit at C = {C:.2g}" if curves.isoflop_from_law else None
        line = "--" if curves.isoflop_from_law else "-"
        ax.plot(profile["params"], profile["loss"], line, color=cmap(norm(C)), label=label)
        for _, best in minima[minima["flops"] == C].iterrows():
            ax.plot(best["params"], best["loss"], "*", ms=14, color=cmap(norm(C)), mec="black")
    if curves.isoflop_from_law and len(curves.isoflop):
        ax.legend(fontsize=8)
    ax.set(xscale="log", xlabel="parameters N", ylabel="final validation loss")
    ax.set_title(f"IsoFLOP profiles{_at_length(a)}")
    save(fig, path)


def training_curves(a: Analysis, curves: Curves, path: Path) -> None:
    lengths = sorted(a.finished["seq_len"].unique())
    colours = _colours(_sizes_in_order(a.finished))
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.5 * len(lengths), 4), squeeze=False)
    for ax, T in zip(axes[0], lengths):
        for _, run in a.finished[a.finished["seq_len"] == T].sort_values("params").iterrows():
            curve = a.runs.curves.get(run["run_id"])
            if curve is not None and len(curve):
                ax.plot(curve["tokens"], curve[VAL_LOSS], color=colours[run["size"]], lw=1.2)
        for size, colour in colours.items():
            ax.plot([], [], color=colour, label=size)
        ax.set(xscale="log", xlabel="training tokens", ylabel="validation loss", title=f"T={T}")
        ax.legend(fontsize=8)
    save(fig, path)


def time_per_token(a: Analysis, curves: Curves, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = a.finished.dropna(subset=["time_per_token"])
    timed = timed[timed["attention"] == a.attention]
    for T in sorted(timed["seq_len"].unique()):
        group = timed[timed["seq_len"] == T]
        (dots,) = ax.plot(group["params"], group["time_per_token"] * 1e6, "o")
        law = a.time_vs_params.get(int(T))
        line = curves.time_vs_params[curves.time_vs_params["seq_len"] == T]
        if not isinstance(law, PowerLaw) or not len(line):
            continue
        ci = law.exponent_ci95
        label = f"T={T}: t ∝ N^{law.exponent:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        ax.plot(line["params"], line["seconds"] * 1e6, color=dots.get_color(), label=label)
    ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="time per token (µs)")
    ax.set_title("Training time per token against model size")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "no timings in these runs")
    save(fig, path)


def seq_len_split(a: Analysis, curves: Curves, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    timed = a.finished.dropna(subset=["time_per_token"])
    styles = _styles(_sizes_in_order(timed))
    for size, group in timed.groupby("size"):
        colour, marker, line = styles[str(size)]
        ax.plot(group["seq_len"], group["time_per_token"] * 1e6, marker, color=colour)
        cost = curves.seq_len_cost[curves.seq_len_cost["size"] == size]
        if cost["seconds"].notna().any():
            ax.plot(
                cost["seq_len"], cost["seconds"] * 1e6, line, color=colour, label=f"{size}: a + b·T"
            )
            ax.plot(cost["seq_len"], cost["dense_seconds"] * 1e6, ":", color=colour, lw=1)
        ax.plot(cost["seq_len"], cost["flop_model_seconds"] * 1e6, "--", color=colour, lw=0.8)
    ax.plot([], [], ":", color="grey", label="dense part a (no attention)")
    ax.plot([], [], "--", color="grey", label="FLOP model, matched at the shortest T")
    ax.set(xlabel="sequence length T", ylabel="time per token (µs)", ylim=(0, None))
    ax.set_title("Time per token against sequence length: dense a + attention b·T")
    ax.legend(fontsize=8)
    save(fig, path)


def decode_latency(a: Analysis, curves: Curves, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    latency = a.decode_curves
    styles = _styles(list(latency["size"].drop_duplicates()))
    for size, curve in latency.groupby("size", sort=False):
        colour, marker, line = styles[str(size)]
        ax.plot(curve["context"], curve["seconds"] * 1e3, marker + line, color=colour, label=size)
    ax.set(xscale="log", xlabel="context length (tokens before the new one)")
    ax.set(ylabel="ms per generated token", ylim=(0, None))
    ax.set_title("Generation latency against context (batch 1, KV cache)")
    if latency.empty:
        _no_data(ax, "no decode timings in these runs")
    else:
        ax.legend(fontsize=8)
    save(fig, path)


def mfu_heatmap(a: Analysis, curves: Curves, path: Path) -> None:
    timed = a.finished.dropna(subset=[MFU, "seq_len"])
    if timed.empty:
        fig, ax = plt.subplots(figsize=(5, 2))
        _no_data(ax, "no MFU measured in these runs")
        ax.axis("off")
        save(fig, path)
        return
    sizes = _sizes_in_order(timed)
    table = timed.pivot_table(index="size", columns="seq_len", values=MFU, aggfunc="median")
    table = table.reindex(sizes) * 100
    fig, ax = plt.subplots(figsize=(1.6 * len(table.columns) + 3, 0.6 * len(sizes) + 2))
    image = ax.imshow(table.to_numpy(), cmap="magma", aspect="auto")
    for (i, j), percent in np.ndenumerate(table.to_numpy()):
        if np.isfinite(percent):
            ax.text(j, i, f"{percent:.1f}%", ha="center", va="center", color="cyan", fontsize=10)
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns])
    ax.set_yticks(range(len(sizes)), sizes)
    ax.set(xlabel="sequence length", title="MFU (median over the runs of each cell)")
    fig.colorbar(image, ax=ax, label="MFU (%)")
    save(fig, path)


def curve_predictions(a: Analysis, curves: Curves, path: Path) -> None:
    fitted = a.curves.fitted
    sizes = [size for size in _sizes_in_order(a.points) if size in set(fitted["size"])]
    if not sizes:
        fig, ax = plt.subplots(figsize=(6, 4))
        _no_data(ax, "no size's curves could be fitted (see the report)")
        save(fig, path)
        return
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 3.6), squeeze=False)
    runs = a.runs.table.set_index("run_id")
    for ax, size in zip(axes[0], sizes):
        lines = fitted[fitted["size"] == size]
        run_ids = sorted(map(str, lines["run_id"].unique()), key=lambda r: runs["tokens"][r])
        colours = _colours(run_ids)
        for run_id in run_ids:
            line, curve = lines[lines["run_id"] == run_id], a.runs.curves[run_id]
            ax.plot(line["tokens"], line["predicted"], color=colours[run_id], lw=1)
            ax.scatter(curve["tokens"], curve[VAL_LOSS], color=colours[run_id], s=8)
        ax.set(xscale="log", xlabel="training tokens", title=size)
    axes[0][0].set_ylabel("validation loss")
    save(fig, path)


PLOTS = {
    "loss_vs_compute.png": loss_vs_compute,
    "loss_vs_params.png": loss_vs_params,
    "isoflop.png": isoflop,
    "training_curves.png": training_curves,
    "curve_predictions.png": curve_predictions,
    "time_per_token.png": time_per_token,
    "seq_len_split.png": seq_len_split,
    "mfu_heatmap.png": mfu_heatmap,
    "decode_latency.png": decode_latency,
}
