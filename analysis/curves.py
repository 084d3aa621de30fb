"""What the fitted laws say between and beyond a grid's points, tabulated for the plots.

The plots only draw: every line and band a figure shows is computed here, from the fits and
the points they were fitted to. Each function returns a frame, empty (with its columns) when
there is nothing to draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import inference
from analysis.analyse import Analysis, Refused, model_name
from analysis.fit import ChinchillaFit, fit_power_law
from analysis.frontier import ComputeOptimal, isoflop_budgets, within_sizes_tried
from analysis.laws import PowerLaw
from analysis.timing import SeqLenCost
from scaling.contract import DENSE, VAL_LOSS, parse_attention

BAND_SAMPLES = 300  # bootstrap laws a band is drawn from: enough for its 2.5% and 97.5% points
SIZES_PER_COMPUTE = 100  # the frontier's search for the best size at each compute


@dataclass(frozen=True)
class Curves:
    frontier: pd.DataFrame  # flops, loss, low, high, extrapolated: the fit's best loss per compute
    fixed_tokens: pd.DataFrame  # tokens, params, loss, low, high: the fit's slices at fixed D
    isoflop: pd.DataFrame  # flops, params, loss: a parabola, or the fit's profile, per budget
    isoflop_minima: pd.DataFrame  # flops, params, loss
    isoflop_from_law: bool  # no budget had a parabola: the profiles drawn are the fit's
    time_vs_params: pd.DataFrame  # seq_len, params, seconds: t = c·N^k per length
    seq_len_cost: pd.DataFrame  # size, seq_len, seconds, dense_seconds, flop_model_seconds
    trunks: pd.DataFrame  # run_id, size, flops, val_loss: WSD trunks' curves at the laws' length


def _band(samples, curve) -> tuple[np.ndarray, np.ndarray]:
    """The 95% band of `curve(law)` over bootstrap laws; a resample that ran off (an
    exponent of 10, an A of 1e300) overflows, counts as missing and is not worth a warning."""
    with np.errstate(all="ignore"):
        values = np.array([curve(law) for law in samples], dtype=float)
        low, high = np.nanpercentile(values, [2.5, 97.5], axis=0)
    return low, high


def _grid_flops_per_token(points: pd.DataFrame) -> PowerLaw:
    """The grid's FLOPs per token as a power law in N (output head and attention counted),
    so the law's tokens can be turned into the grid's own FLOPs at any size."""
    return fit_power_law(points["params"], points["flops_per_token"], "FLOPs per token")


def _sizes_per_compute(C: np.ndarray, points: pd.DataFrame, per_token: PowerLaw) -> np.ndarray:
    """Per compute, a row of sizes spanning the models the grid trained there: sizes within
    its own whose tokens, C / flops_per_token(N), lie within its own. Beyond the grid's
    compute both ranges widen in proportion to it (at 30 times its largest compute, sizes and
    tokens up to 30 times its largest), so the models stay joined to the grid's edge."""
    below = np.minimum(1, C / points["flops"].min())
    above = np.maximum(1, C / points["flops"].max())
    tokens = points["flops"] / per_token(points["params"])  # as the law's FLOPs count them

    def size_at(flops_per_token: np.ndarray) -> np.ndarray:
        return (flops_per_token / per_token.coefficient) ** (1 / per_token.exponent)

    smallest = np.maximum(points["params"].min() * below, size_at(C / (tokens.max() * above)))
    largest = np.minimum(points["params"].max() * above, size_at(C / (tokens.min() * below)))
    return np.geomspace(smallest, np.maximum(smallest, largest), SIZES_PER_COMPUTE, axis=1)


def frontier(fit: ChinchillaFit | None, points: pd.DataFrame) -> pd.DataFrame:
    """The fit's best loss at each compute from 1/3 to 30 times the grid's, min over N of
    L(N, C / flops_per_token(N)) in the grid's own FLOPs. Inside the grid's compute N ranges
    over the models the grid trained (its sizes, at token counts within its own), so the line
    can be read against the runs; beyond it (`extrapolated`) the ranges widen with the
    compute, and since N_opt and D_opt grow slower than C the line follows the law's optimum
    wherever the grid brackets it at its edge."""
    columns = ["flops", "loss", "low", "high", "extrapolated"]
    if fit is None:
        return pd.DataFrame(columns=columns)
    per_token = _grid_flops_per_token(points)
    c_min, c_max = points["flops"].min(), points["flops"].max()
    C = np.unique(np.r_[np.geomspace(c_min / 3, c_max * 30, 60), c_min, c_max])
    N = _sizes_per_compute(C, points, per_token)
    D = C[:, None] / per_token(N)

    def best(law) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.nanmin(law.loss(N, D), axis=1)

    low = high = np.full_like(C, np.nan)
    if fit.samples:
        low, high = _band(fit.samples[:BAND_SAMPLES], best)
    extrapolated = (C < c_min) | (C > c_max)
    return pd.DataFrame(dict(zip(columns, (C, best(fit.law), low, high, extrapolated))))


def fixed_tokens(fit: ChinchillaFit | None, points: pd.DataFrame) -> pd.DataFrame:
    """The fit at the grid's smallest, geometric-mean and largest token counts, over sizes
    from half the smallest to 30 times the largest."""
    columns = ["tokens", "params", "loss", "low", "high"]
    if fit is None:
        return pd.DataFrame(columns=columns)
    tokens = points["tokens"]
    N = np.logspace(np.log10(points["params"].min() / 2), np.log10(points["params"].max() * 30))
    frames = []
    for D in sorted({tokens.min(), float(np.exp(np.log(tokens).mean())), tokens.max()}):
        low = high = np.full_like(N, np.nan)
        if fit.samples:
            low, high = _band(fit.samples, lambda law, D=D: law.at_tokens(D)(N))
        loss = fit.law.at_tokens(D)(N)
        frames.append(pd.DataFrame(dict(zip(columns, (D, N, loss, low, high)))))
    return pd.concat(frames, ignore_index=True)


def isoflop(
    approach_2: ComputeOptimal | None, fit: ChinchillaFit | None, points: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Loss against log N per FLOP budget, and each profile's minimum: approach 2's parabolas
    over the sizes each budget tried; without any, the fit's profiles at three budgets across
    the grid, a minimum only where it falls within the sizes trained (approach 2's rule)."""
    lines, minima = [], []
    parabolas = approach_2.parabolas if approach_2 is not None else []
    if parabolas:
        budgets = isoflop_budgets(points["flops"])
        for parabola in parabolas:
            # Over the sizes the parabola went through: beyond them it is no profile.
            budget = points.loc[np.isclose(budgets, parabola["flops"]), "params"]
            sizes = parabola.get("sizes") or [budget.min(), budget.max()]
            log_n = np.linspace(np.log(sizes[0]), np.log(sizes[1]))
            loss = np.polyval(parabola["coefficients"], log_n)
            best = np.polyval(parabola["coefficients"], np.log(parabola["n_opt"]))
            lines.append((parabola["flops"], np.exp(log_n), loss))
            minima.append((parabola["flops"], parabola["n_opt"], best))
    elif fit is not None:
        per_token = _grid_flops_per_token(points)
        N = np.logspace(
            np.log10(points["params"].min() / 10), np.log10(points["params"].max() * 10)
        )
        for C in np.geomspace(points["flops"].min(), points["flops"].max(), 3):
            loss = fit.law.loss(N, C / per_token(N))
            lines.append((C, N, loss))
            k = int(np.nanargmin(loss))
            if within_sizes_tried(N[k], points["params"]):  # as approach 2 places its optima
                minima.append((C, N[k], loss[k]))
    frame = pd.concat(
        [pd.DataFrame({"flops": C, "params": N, "loss": L}) for C, N, L in lines]
        or [pd.DataFrame(columns=["flops", "params", "loss"])],
        ignore_index=True,
    )
    from_law = not parabolas and fit is not None
    return frame, pd.DataFrame(minima, columns=["flops", "params", "loss"]), from_law


def time_vs_params(laws: dict[int, PowerLaw], timed: pd.DataFrame) -> pd.DataFrame:
    """Each length's fitted t = c·N^k across the sizes timed there."""
    frames = []
    for T, law in laws.items():
        sizes = timed.loc[timed["seq_len"] == T, "params"]
        N = np.logspace(np.log10(sizes.min()), np.log10(sizes.max()))
        frames.append(pd.DataFrame({"seq_len": T, "params": N, "seconds": law(N)}))
    return pd.concat(frames or [pd.DataFrame(columns=["seq_len", "params", "seconds"])])


def seq_len_cost(costs: dict[str, SeqLenCost | Refused], timed: pd.DataFrame) -> pd.DataFrame:
    """Per model, time per token against T from 0 to past the longest length timed: the fit
    a + b·T (`seconds`), its dense part a, and what the FLOP model expects, time in proportion
    to FLOPs per token (attention 12·L·d·min(T, window)) matched at the shortest length."""
    T = np.linspace(0, timed["seq_len"].max() * 1.1, 100) if len(timed) else np.array([])
    frames = []
    for size, group in timed.groupby("size", sort=False):
        cost = costs.get(str(size))
        seconds = dense_seconds = np.full_like(T, np.nan)
        if isinstance(cost, SeqLenCost):
            seconds, dense_seconds = cost.a + cost.b * T, np.full_like(T, cost.a)
        at_shortest = group[group["seq_len"] == group["seq_len"].min()]
        shortest = at_shortest.iloc[0]
        window = parse_attention(shortest["attention"])
        attention = inference.attention_flops(shortest)
        dense = shortest["flops_per_token"] - attention * inference.keys(shortest)
        per_flop = at_shortest["time_per_token"].median() / shortest["flops_per_token"]
        keys_at_T = T if window is None else np.minimum(T, window)
        frames.append(
            pd.DataFrame(
                {
                    "size": size,
                    "seq_len": T,
                    "seconds": seconds,
                    "dense_seconds": dense_seconds,
                    "flop_model_seconds": (dense + attention * keys_at_T) * per_flop,
                }
            )
        )
    columns = ["size", "seq_len", "seconds", "dense_seconds", "flop_model_seconds"]
    return pd.concat(frames or [pd.DataFrame(columns=columns)], ignore_index=True)


def trunks(analysis: Analysis) -> pd.DataFrame:
    """The validation curves of a WSD grid's trunks, at the length and attention the loss
    laws use: what their branches left at their branch points."""
    columns = ["run_id", "size", "flops", VAL_LOSS]
    table = analysis.runs.trunks
    if analysis.seq_len is not None:
        table = table[table["seq_len"] == analysis.seq_len]
    table = table[table["attention"].fillna(DENSE) == analysis.attention]
    frames = []
    for _, run in table.iterrows():
        curve = analysis.runs.curves.get(run["run_id"])
        if curve is not None and "flops" in curve and len(curve):
            frames.append(curve.assign(run_id=run["run_id"], size=model_name(run))[columns])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def tabulate(analysis: Analysis) -> Curves:
    """Every curve the report's plots draw, from an `Analysis`."""
    fit = analysis.chinchilla if isinstance(analysis.chinchilla, ChinchillaFit) else None
    approach_2 = analysis.approach_2 if isinstance(analysis.approach_2, ComputeOptimal) else None
    timed = analysis.finished.dropna(subset=["time_per_token"])
    same_attention = timed[timed["attention"] == analysis.attention]
    laws = {T: law for T, law in analysis.time_vs_params.items() if isinstance(law, PowerLaw)}
    lines, minima, from_law = isoflop(approach_2, fit, analysis.points)
    return Curves(
        frontier=frontier(fit, analysis.points),
        fixed_tokens=fixed_tokens(fit, analysis.points),
        isoflop=lines,
        isoflop_minima=minima,
        isoflop_from_law=from_law,
        time_vs_params=time_vs_params(laws, same_attention),
        seq_len_cost=seq_len_cost(analysis.seq_len_costs, timed),
        trunks=trunks(analysis),
    )
