"""Choosing what a grid's report fits, and fitting it: `analyse(runs)` returns an `Analysis`.

Loss depends on context length and attention, so the loss laws use one of each: the
attention with the most finished runs (dense on a tie), then the length with the most, the
longest of those on a tie (the context users usually plan for). Time is fitted per length and
per model. A fit the data cannot support is kept as `Refused(reason)`, which the report prints
where the fit would have been; nothing is raised unless nothing finished at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis import frontier, inference, timing
from analysis.curve_fits import CurvePredictions, curve_predictions
from analysis.fit import (
    ChinchillaFit,
    FitError,
    SaturatingFit,
    fit_chinchilla,
    fit_power_law,
    fit_saturating,
)
from analysis.laws import PowerLaw
from analysis.learning_rate import LearningRates, learning_rates
from analysis.noise import Noise, fit_scatter, seed_spread
from analysis.runs import Runs
from analysis.verdict import Verdict, verdict
from scaling.contract import (
    BRANCH,
    DENSE,
    GPU_PEAK_FLOPS,
    LR_PARAM,
    MFU,
    TRUNK,
    VAL_LOSS,
    ModelName,
    Status,
    parse_attention,
)

if TYPE_CHECKING:
    from analysis.recipe import NextRun

DEFAULT_BUDGETS = (1e18, 1e20, 1e22)
DEFAULT_GPU = "H100"


@dataclass(frozen=True)
class Refused:
    """A fit the data could not support, and why: the report shows the reason in its place."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def attempt(function, *args, **kwargs):
    """`function(*args, **kwargs)`, or `Refused` with the reason its FitError gave."""
    try:
        return function(*args, **kwargs)
    except FitError as exc:
        return Refused(str(exc))


@dataclass(frozen=True)
class Branching:
    """What a WSD grid spent, its trunks and branches, against the same grid under cosine."""

    trunks: int
    branches: int
    spent_flops: float  # what each run trained itself: a branch from its branch point on
    cosine_flops: float  # every branch's budget trained from scratch

    @property
    def ratio(self) -> float:
        return self.spent_flops / self.cosine_flops

    def to_dict(self) -> dict:
        return {
            "trunks": self.trunks,
            "branches": self.branches,
            "spent_flops": self.spent_flops,
            "cosine_flops": self.cosine_flops,
            "ratio": self.ratio,
        }


def branching(runs: Runs) -> Branching | None:
    """A WSD grid's spending, from the tokens each run reached; None for a grid without trunks."""
    table, kinds = runs.table, runs.kinds
    if not (kinds == TRUNK).any():
        return None
    spent = 0.0
    for _, run in table[kinds.isin([TRUNK, BRANCH])].iterrows():
        curve = runs.curves.get(run["run_id"])
        reached = curve["tokens"].max() if curve is not None and len(curve) else run["branch_at"]
        spent += run["flops_per_token"] * max(0, reached - run["branch_at"])
    branches = table[kinds == BRANCH]
    return Branching(
        trunks=int((kinds == TRUNK).sum()),
        branches=len(branches),
        spent_flops=float(spent),
        cosine_flops=float(branches["flops"].sum()),
    )


def training_runs(points: pd.DataFrame) -> pd.Series:
    """The training run each point's loss came from: a WSD branch's trunk (whose seed's noise
    its branches share), else the point's own run."""
    if "trunk" not in points:
        return points["run_id"]
    return points["trunk"].where(points["trunk"].notna(), points["run_id"])


def annealed_curves(points: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Approach 1's curves for a WSD grid. A branch's curve is annealed only at its end (its
    cooldown starts where its trunk's constant-LR curve left off), so each size's curve joins
    its branches' final losses, keyed by its longest branch."""
    curves = {}
    for _, group in points.groupby(["size", "seed"]):
        group = group.sort_values("tokens")
        curves[group["run_id"].iloc[-1]] = pd.DataFrame(
            {"tokens": group["tokens"], "flops": group["flops"], VAL_LOSS: group[VAL_LOSS]}
        )
    return curves


@dataclass(kw_only=True)
class Analysis:
    """Every fit of one report, each a result or `Refused`."""

    experiment: str
    source: str
    runs: Runs
    finished: pd.DataFrame  # the finished runs with a loss, each with its model name, `size`
    seq_len: int | None  # the sequence length the loss laws use (None: results without one)
    attention: str  # the attention the loss laws use
    points: pd.DataFrame  # the finished runs at that length and attention (with an LR axis,
    # each cell's best LR only; `learning_rates.swept_points` holds them all)
    length_comparisons: list[LengthComparison]  # the laws' length against the grid's others
    learning_rates: LearningRates | None  # a grid with an LR axis: LR* per cell and its laws
    branching: Branching | None  # a WSD grid's trunks and branches, and what they spent
    chinchilla: ChinchillaFit | Refused
    noise: Noise | None  # the seed-to-seed spread, else the scatter about the Chinchilla fit
    verdict: Verdict  # the three approaches side by side, their consensus and disagreements
    curves: CurvePredictions  # the schedule-aware law over each size's validation curves
    held_out: frontier.HeldOut | Refused
    approach_1: frontier.ComputeOptimal | Refused
    approach_2: frontier.ComputeOptimal | Refused
    fixed_tokens: SaturatingFit | Refused  # E + A/N^alpha where one token count has 3+ sizes
    fixed_tokens_D: float
    time_vs_params: dict[int, PowerLaw | Refused]  # by sequence length
    seq_len_costs: dict[str, timing.SeqLenCost | Refused]  # by model name
    seq_len_exponents: dict[str, PowerLaw | Refused]  # time per token ∝ T^k, by model name
    decode_curves: pd.DataFrame  # size, context, seconds per generated token
    cost_split: pd.DataFrame  # training against inference, per model
    claims: dict[str, str]
    predictions: pd.DataFrame | Refused
    gpu: str
    mfu: float | None
    mfu_source: str
    next_run: NextRun | Refused | None = None  # with a target compute: the run to train next


def model_name(row) -> str:
    """`L4-d256`, or `L4-d256-W256` for a sliding window of 256: a different model to time;
    `N=1e+06` for a row of results that gives only the parameter count."""
    if pd.isna(row["n_layer"]):
        return f"N={row['params']:.3g}"
    window = parse_attention(row["attention"])
    return str(ModelName(int(row["n_layer"]), int(row["d_model"]), window))


def finished_runs(runs: Runs, experiment: str) -> pd.DataFrame:
    """The finished runs with a loss, their attention spelled (dense when not recorded) and
    their model named; refuses an experiment with none."""
    finished = runs.finished.dropna(subset=[VAL_LOSS, "params", "tokens"])
    if finished.empty:
        raise FitError(f"experiment '{experiment}' has no FINISHED trial to fit")
    return _named(finished)


def _named(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of `table` with its attention spelled (dense when not recorded) and its model
    named in `size`."""
    table = table.copy()
    table["attention"] = table.get("attention", pd.Series(DENSE, index=table.index))
    table["attention"] = table["attention"].fillna(DENSE)
    table["size"] = table.apply(model_name, axis=1) if len(table) else pd.Series(dtype=str)
    return table


def beaten_runs(runs: Runs, points: pd.DataFrame) -> pd.DataFrame:
    """The DIVERGED and STOPPED runs at the loss laws' length and attention, with their model
    named: an LR that lost outright bounds its cell's sweep."""
    table = runs.table
    lrs = table.get("lr", pd.Series(float("nan"), index=table.index))
    lost = table["status"].isin([Status.DIVERGED, Status.STOPPED])
    beaten = _named(table[lost & lrs.notna()])
    if beaten.empty or points.empty:
        return beaten
    same = beaten["attention"] == points["attention"].iloc[0]
    if points["seq_len"].notna().any():
        same &= beaten["seq_len"] == points["seq_len"].iloc[0]
    return beaten[same]


def loss_law_points(finished: pd.DataFrame) -> tuple[str, int | None, pd.DataFrame]:
    """The attention and sequence length the loss laws use, and the runs that have them."""
    kinds = finished.groupby("attention").size()
    attention = max(kinds.index, key=lambda k: (kinds[k], k == DENSE))
    same_attention = finished[finished["attention"] == attention]
    counts = same_attention.groupby("seq_len").size()
    if counts.empty:  # results without lengths (a CSV): all of them
        return attention, None, same_attention
    seq_len = int(max(counts.index, key=lambda T: (counts[T], T)))
    return attention, seq_len, same_attention[same_attention["seq_len"] == seq_len]


@dataclass(frozen=True)
class LengthComparison:
    """The loss laws' length against another length of the grid, over the (size, tokens)
    cells trained at both (each cell's lowest loss: its best LR where the grid sweeps one)."""

    seq_len: int  # the loss laws' length
    other: int
    cells: int
    higher: int  # cells where the laws' length reached the higher loss
    lower: int  # and the lower
    mean_difference: float  # nats: the laws' length's loss minus the other's, over the cells
    tokens_per_step: int | None  # the same at every length (a grid's rule)


def compare_lengths(finished: pd.DataFrame, attention: str, seq_len) -> list[LengthComparison]:
    """The loss laws' length against each other length the grid trained at that attention."""
    same = finished[finished["attention"] == attention]
    if seq_len is None or same["seq_len"].nunique() < 2:
        return []
    best = same.pivot_table(index=["size", "tokens"], columns="seq_len", values=VAL_LOSS,
                            aggfunc="min")  # fmt: skip
    per_step = same.get("tokens_per_step", pd.Series(dtype=float)).dropna()
    comparisons = []
    for other in best.columns.drop(seq_len):
        both = best[[seq_len, other]].dropna()
        if both.empty:
            continue
        difference = both[seq_len] - both[other]
        comparisons.append(
            LengthComparison(
                seq_len=int(seq_len),
                other=int(other),
                cells=len(both),
                higher=int((difference > 0).sum()),
                lower=int((difference < 0).sum()),
                mean_difference=float(difference.mean()),
                tokens_per_step=int(per_step.iloc[0]) if len(per_step) else None,
            )
        )
    return comparisons


def analyse(
    runs: Runs,
    experiment: str,
    source: str = "",
    budgets=DEFAULT_BUDGETS,
    gpu: str = DEFAULT_GPU,
    mfu: float | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    target_flops: float | None = None,
) -> Analysis:
    """Fit everything the grid supports; `gpu` is a name of `GPU_PEAK_FLOPS`. With
    `target_flops`, also the compute-optimal run to train next at that budget."""
    finished = finished_runs(runs, experiment)
    attention, seq_len, points = loss_law_points(finished)
    # The loss laws measure size and data, not tuning: with an LR axis, each (size, tokens)
    # cell enters them at its best LR.
    rates = learning_rates(points, min(bootstrap, 200), seed, beaten_runs(runs, points))
    if rates is not None:
        points = points[points["run_id"].isin(rates.sweep.best_run_ids)]
    N, D, L = (points[c].to_numpy(float) for c in ("params", "tokens", VAL_LOSS))
    # With seeds, their spread is the noise every bootstrap adds (approach 3's included);
    # without, the scatter about approach 3's fit (which approach 3 adds itself only on a WSD
    # grid, whose branches are no independent points to resample).
    noise = seed_spread(points, VAL_LOSS)
    seed_noise = noise.relative if noise else None
    trained_by = training_runs(points)
    chinchilla = attempt(
        fit_chinchilla, N, D, L, bootstrap=bootstrap, seed=seed, noise=seed_noise, runs=trained_by
    )
    if noise is None and not isinstance(chinchilla, Refused):
        noise = fit_scatter(N, D, L, chinchilla.law, runs=trained_by)
    scale = noise.relative if noise else None
    spend = branching(runs)
    if spend is None:
        curves = {run_id: runs.curves[run_id] for run_id in points["run_id"]}
    else:
        curves = annealed_curves(points)
    # Loss against size at one token count: the count with the most sizes (the largest on a tie).
    sizes_at = points.groupby("tokens")["params"].nunique()
    D_fixed = float(max(sizes_at.index.to_numpy(float), key=lambda d: (sizes_at[d], d)))
    fixed = points[points["tokens"] == D_fixed]

    timed = finished.dropna(subset=["time_per_token"])
    seq_len_costs = {
        str(size): attempt(
            timing.fit_seq_len_cost,
            group["seq_len"],
            group["time_per_token"],
            d_model=int(group["d_model"].iloc[0]),
        )
        for size, group in timed.groupby("size", sort=False)
    }
    mfu, mfu_source = _mfu(points, seq_len, mfu)
    one = attempt(
        frontier.approach_1,
        curves,
        points,
        noise=scale,
        seed=seed,
        each_point_a_run=spend is not None,
    )
    two = attempt(frontier.approach_2, N, D, points["flops"], L, noise=scale, seed=seed)
    fitted = {"approach 1": one, "approach 2": two, "approach 3": chinchilla}
    analysis = Analysis(
        experiment=experiment,
        source=source,
        runs=runs,
        finished=finished,
        seq_len=seq_len,
        attention=attention,
        points=points,
        length_comparisons=compare_lengths(finished, attention, seq_len),
        learning_rates=rates,
        branching=spend,
        chinchilla=chinchilla,
        noise=noise,
        verdict=verdict(
            None if isinstance(one, Refused) else one,
            None if isinstance(two, Refused) else two,
            None if isinstance(chinchilla, Refused) else chinchilla,
            budgets,
            refused={name: str(f) for name, f in fitted.items() if isinstance(f, Refused)},
        ),
        curves=curve_predictions(runs, points, _trunks(runs, points)),
        held_out=attempt(
            frontier.held_out_prediction,
            N,
            D,
            L,
            bootstrap=min(bootstrap, 200),
            noise=seed_noise,
            runs=trained_by,
        ),
        approach_1=one,
        approach_2=two,
        fixed_tokens=attempt(
            fit_saturating, fixed["params"], fixed[VAL_LOSS], bootstrap=min(bootstrap, 200)
        ),
        fixed_tokens_D=float(D_fixed),
        time_vs_params=_time_vs_params(timed, attention),
        seq_len_costs=seq_len_costs,
        seq_len_exponents=_seq_len_exponents(timed),
        decode_curves=inference.decode_curves(finished, runs.decode),
        cost_split=inference.cost_split(finished, runs.decode),
        claims=_claims(timed, seq_len, attention, seq_len_costs),
        predictions=_predictions(chinchilla, budgets, gpu, mfu),
        gpu=gpu,
        mfu=mfu,
        mfu_source=mfu_source,
    )
    if target_flops is not None:
        from analysis.recipe import next_run  # which reads the Analysis this module makes

        analysis.next_run = next_run(analysis, target_flops)
    return analysis


def _trunks(runs: Runs, points: pd.DataFrame) -> pd.DataFrame:
    """The WSD trunks of the loss laws' sizes at their length and attention, named like them:
    their constant-LR curves belong with their branches' when the curves are fitted."""
    trunks = _named(runs.trunks)
    if trunks.empty or points.empty:
        return trunks
    same = trunks["size"].isin(points["size"]) & (
        trunks["attention"] == points["attention"].iloc[0]
    )
    if points["seq_len"].notna().any():
        same &= trunks["seq_len"] == points["seq_len"].iloc[0]
    if LR_PARAM in points and points[LR_PARAM].notna().any():
        same &= trunks[LR_PARAM].isin(points[LR_PARAM])
    return trunks[same]


def _time_vs_params(timed: pd.DataFrame, attention: str) -> dict[int, PowerLaw | Refused]:
    """t = c·N^k per length, comparing like with like: the loss laws' attention only."""
    same_kind = timed[timed["attention"] == attention]
    laws: dict[int, PowerLaw | Refused] = {}
    for T in sorted(same_kind["seq_len"].unique()):
        group = same_kind[same_kind["seq_len"] == T]
        what = f"time per token at T={T}"
        laws[int(T)] = attempt(fit_power_law, group["params"], group["time_per_token"], what)
    return laws


def _seq_len_exponents(timed: pd.DataFrame) -> dict[str, PowerLaw | Refused]:
    return {
        str(size): attempt(
            fit_power_law,
            group["seq_len"],
            group["time_per_token"],
            f"time per token against sequence length for {size}",
            min_points=2,
        )
        for size, group in timed.groupby("size", sort=False)
    }


def _claims(timed: pd.DataFrame, seq_len, attention: str, costs: dict) -> dict[str, str]:
    at_length = timed[(timed["seq_len"] == seq_len) & (timed["attention"] == attention)]
    exponential = attempt(
        timing.claim_exponential, at_length["params"], at_length["time_per_token"]
    )
    quadratic = []
    for size, cost in reversed(list(costs.items())):  # the largest size first
        runs = timed[timed["size"] == size]
        lengths = sorted(runs["seq_len"].unique())
        window = parse_attention(runs["attention"].iloc[0])
        text = (
            str(cost)
            if isinstance(cost, Refused)
            else timing.claim_quadratic(cost, lengths[:-1] or lengths, window)
        )
        quadratic.append(f"{size}: {text}")
    return {
        "quadratic": "\n".join(quadratic) or "no size was timed at two or more lengths",
        "exponential": str(exponential),
    }


def _mfu(points: pd.DataFrame, seq_len, given: float | None) -> tuple[float | None, str]:
    """The MFU GPU-hours are priced at, and where it came from: given, else the median of
    the grid's largest size."""
    if given is not None:
        return given, "given with --mfu"
    if MFU not in points or not points[MFU].notna().any():
        return None, "no MFU was measured"
    largest = points[points["params"] == points["params"].max()]
    device = largest["device"].dropna()
    return float(largest[MFU].median()), (
        f"the median MFU of the grid's largest size ({largest['size'].iloc[0]}, "
        f"T={seq_len}) on {device.iloc[0] if len(device) else 'its device'}"
    )


def gpu_hours(flops: float, gpu: str, mfu: float | None) -> float | None:
    """Hours of one `gpu` (its dense bf16 peak) to spend `flops` at `mfu`; None without one."""
    return flops / (GPU_PEAK_FLOPS[gpu]["bf16"] * mfu) / 3600 if mfu else None


def _predictions(fit, budgets, gpu: str, mfu: float | None) -> pd.DataFrame | Refused:
    """N_opt, D_opt and loss with intervals per FLOP budget, and GPU-hours at `mfu`."""
    if isinstance(fit, Refused):
        return Refused(f"no predictions: the Chinchilla fit was refused ({fit})")
    rows = []
    for C in budgets:
        row: dict[str, Any] = {"flops": float(C)}
        for name, quantity in (
            ("n_opt", lambda law, C=C: law.n_opt(C)),
            ("d_opt", lambda law, C=C: law.d_opt(C)),
            ("loss", lambda law, C=C: law.loss_opt(C)),
        ):
            row[name] = float(quantity(fit.law))
            row[f"{name}_ci95"] = fit.interval(quantity)
        row["gpu_hours"] = gpu_hours(C, gpu, mfu)
        rows.append(row)
    return pd.DataFrame(rows)
