"""The figures of a grid with a learning-rate axis: each cell's sweep with its parabola, and
LR* against model size with the fitted LR law. Drawn only when the grid swept the LR."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from analysis.analyse import Analysis
from analysis.learning_rate import VERTEX, LRLaw, sweep_curve
from analysis.plots import save
from scaling.contract import VAL_LOSS


def _token_colours(cells) -> LogNorm:
    """A log scale over the grid's budgets (a decade around a single one)."""
    low, high = cells["tokens"].min(), cells["tokens"].max()
    return LogNorm(low, high) if high > low else LogNorm(low / 3, high * 3)


def lr_sweeps(a: Analysis, path: Path) -> None:
    """One panel per size: loss against LR for each token budget, the parabola in log LR and
    its vertex (star); a cell whose optimum is not bracketed has its best LR ringed in red."""
    rates = a.learning_rates
    assert rates is not None
    points, cells = rates.swept_points, rates.sweep.cells
    sizes = list(cells.sort_values("params")["size"].drop_duplicates())
    columns = min(4, len(sizes))
    rows = math.ceil(len(sizes) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3 * rows), squeeze=False)
    norm, cmap = _token_colours(cells), plt.get_cmap("plasma")
    for ax, size in zip(axes.flat, sizes):
        for _, cell in cells[cells["size"] == size].iterrows():
            runs = points[(points["size"] == size) & (points["tokens"] == cell["tokens"])]
            colour = cmap(norm(cell["tokens"]) * 0.85)
            ax.plot(runs["lr"], runs[VAL_LOSS], "o", color=colour, ms=4)
            if cell["method"] == VERTEX:  # the parabola over the LRs it was fitted on
                used = runs[runs["lr"].between(cell["fit_low"], cell["fit_high"])]
                grid, fitted = sweep_curve(used["lr"], used[VAL_LOSS])
                ax.plot(grid, fitted, "-", color=colour, lw=1)
                vertex = np.interp(np.log(cell["lr_star"]), np.log(grid), fitted)
                ax.plot([cell["lr_star"]], [vertex], "*", color=colour, ms=11, mec="black")
            if not cell["bracketed"]:
                best = runs[runs["run_id"] == cell["best_run_id"]]
                ax.plot(best["lr"], best[VAL_LOSS], "o", mfc="none", mec="red", ms=10, mew=1.5)
        ax.set(xscale="log", title=size, xlabel="peak learning rate")
    for ax in axes[:, 0]:
        ax.set_ylabel(VAL_LOSS)
    for ax in axes.flat[len(sizes) :]:
        ax.axis("off")
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=axes, label="training tokens", shrink=0.8)
    fig.suptitle("Loss against learning rate per (size, tokens) cell", y=1.02)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def lr_law(a: Analysis, path: Path) -> None:
    """LR* against N, coloured by tokens: vertices with their intervals (dots), bounds of
    unbracketed cells (triangles, pointing the way the optimum lies), and the law at each D."""
    rates = a.learning_rates
    assert rates is not None
    cells = rates.sweep.cells
    fig, ax = plt.subplots(figsize=(7, 4.5))
    norm, cmap = _token_colours(cells), plt.get_cmap("plasma")
    for _, cell in cells.iterrows():
        colour = cmap(norm(cell["tokens"]) * 0.85)
        if cell["method"] == VERTEX:
            low, high = cell["ci95_low"], cell["ci95_high"]
            error = None
            if np.isfinite(low):
                error = [[cell["lr_star"] - low], [high - cell["lr_star"]]]
            ax.errorbar(cell["params"], cell["lr_star"], yerr=error, fmt="o", color=colour)
        elif not cell["bracketed"]:
            up = "above" in str(cell["note"])
            ax.plot(cell["params"], cell["lr_star"], "^" if up else "v", color=colour, ms=8)
        else:
            ax.plot(cell["params"], cell["lr_star"], "o", mfc="none", color=colour)
    if isinstance(rates.law, LRLaw):
        N = np.geomspace(cells["params"].min() / 1.5, cells["params"].max() * 1.5, 50)
        for D in sorted(cells["tokens"].unique()):
            colour = cmap(norm(D) * 0.85)
            ax.plot(N, rates.law(N, D), "-", color=colour, lw=1)
        law = rates.law
        ax.set_title(f"LR* ∝ N^{law.exponent_N:.3f} · D^{law.exponent_D:.3f}")
    else:
        ax.set_title(f"LR* per cell (no LR law: {rates.law})"[:90])
    ax.set(xscale="log", yscale="log", xlabel="parameters N (non-embedding)", ylabel="LR*")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="training tokens")
    save(fig, path)


PLOTS = {"lr_sweeps.png": lr_sweeps, "lr_law.png": lr_law}
