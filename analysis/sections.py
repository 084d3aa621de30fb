"""The report's sections, one function each, as blocks the renderers turn into Markdown and
HTML: ("h1" | "h2" | "p", text), ("table", headers, rows), ("img", file name, caption)."""

from __future__ import annotations

from analysis.analyse import Analysis, LengthComparison, Refused, training_runs
from analysis.captions import (
    CURVE_PREDICTIONS,
    ISOFLOP_FROM_LAW,
    ISOFLOP_PARABOLAS,
    LOSS_VS_COMPUTE,
    LOSS_VS_PARAMS,
    LR_LAW,
    LR_SWEEPS,
    MFU_HEATMAP,
    MFU_NOT_MEASURED,
    NO_ENVELOPE,
    SEQ_LEN_SPLIT,
    TIME_PER_TOKEN,
    TRAINING_CURVES,
    TRUNKS_AND_BRANCHES,
    decode_latency,
)
from analysis.cautions import ALLOCATION, EXPONENT, SCALE
from analysis.curve_fits import PREFIX
from analysis.curves import Curves
from analysis.noise import BRANCH_OWN_SHARE, SEEDS
from analysis.timing import UNSTEADY_SPREAD, unsteady_trials
from scaling.contract import GPU_PEAK_FLOPS, MFU, STEP_TIME_SPREAD, parse_attention

Block = tuple


def _fmt(value: float, interval=None, digits: int = 4) -> str:
    text = f"{value:.{digits}g}"
    return text + (f" [{interval[0]:.{digits}g}, {interval[1]:.{digits}g}]" if interval else "")


def _exponent(law) -> str:
    return str(law) if isinstance(law, Refused) else _fmt(law.exponent, law.exponent_ci95, 3)


def title(a: Analysis) -> list[Block]:
    length = f" at sequence length {a.seq_len}" if a.seq_len is not None else ""
    if a.length_comparisons:
        length += (
            " (the longest of the lengths with the most runs: the context a run is planned for)"
        )
    attention = f" with {a.attention} attention" if a.finished["attention"].nunique() > 1 else ""
    return [
        ("h1", f"Scaling report: {a.experiment}"),
        (
            "p",
            f"{len(a.runs.finished)} finished runs of {len(a.runs.table) - len(a.runs.trunks)} "
            f"({a.source}). Loss "
            f"laws are fitted on the {len(a.points)} finished runs{length}{attention}; "
            "intervals are 95% bootstrap intervals.",
        ),
        *(("p", _length_comparison(c)) for c in a.length_comparisons if c.higher or c.lower),
    ]


def _length_comparison(c: LengthComparison) -> str:
    """The loss laws' length against another, cell by cell; when the laws' length trained
    worse, why, and what the laws then describe."""
    worse = c.higher > c.cells / 2
    if worse:
        in_cells = f"higher than at T={c.other} in {c.higher}"
    elif c.lower > c.cells / 2:
        in_cells = f"lower than at T={c.other} in {c.lower}"
    else:
        in_cells = f"higher than at T={c.other} in {c.higher}, lower in {c.lower},"
    text = (
        f"At T={c.seq_len} the loss is {in_cells} of {c.cells} matched (size, tokens) cells "
        f"(mean {c.mean_difference:+.3f} nats)."
    )
    if not worse:
        return text
    if c.seq_len > c.other and c.tokens_per_step:
        text += (
            f" At {c.tokens_per_step:,} tokens per step a step holds "
            f"{c.tokens_per_step // c.seq_len} windows of {c.seq_len} against "
            f"{c.tokens_per_step // c.other} of {c.other}: at equal tokens the longer length "
            "has seen fewer independent windows of the data, which at these budgets can cost "
            "more than its longer context gains."
        )
    return (
        text + f" The laws describe training at T={c.seq_len}, not the lowest losses this grid "
        "reached."
    )


def verdict(a: Analysis) -> list[Block]:
    """The opening: a and the loss at each budget by every approach, their consensus, and
    whether they agree; the held-out error beside them."""
    v = a.verdict
    budgets = list(v.losses)
    headers = ["", "a in N_opt ∝ C^a", *(f"loss at {C:.0e} FLOPs" for C in budgets)]

    def cell(agreement, approach: str) -> str:
        found = [e for e in agreement.estimates if e.approach == approach]
        if approach == "consensus":
            found = [agreement.consensus] if agreement.consensus else []
        if not found:
            return "refused" if approach in v.refused else "n/a"
        mark = " ✗" if approach in agreement.disagreeing else ""
        return _fmt(found[0].value, found[0].interval, 3) + mark

    rows = [
        [name, cell(v.a, name), *(cell(v.losses[C], name) for C in budgets)]
        for name in ("approach 1", "approach 2", "approach 3", "consensus")
    ]
    held = a.held_out
    held_text = (
        f"Held out: refitted without the largest size, approach 3 predicts its final loss "
        f"with a mean absolute error of {held.mean_abs_error:.2%}."
        if not isinstance(held, Refused)
        else f"Held out: {held}."
    )
    noise = a.noise
    noise_text = (
        f"The bootstraps of approaches 1 and 2 add noise of {noise.relative:.2%} per run (the "
        f"{noise.source}, {noise.degrees_of_freedom} degrees of freedom)"
        + (", and so does approach 3's." if _approach_3_adds_noise(a) else ".")
        if noise
        else "No noise scale could be measured, so approaches 1 and 2 give t intervals."
    ) + _shared_noise_text(a)
    b: list[Block] = [
        ("h2", "Verdict"),
        ("p", v.text),
        ("table", headers, rows),
        (
            "p",
            "a: the share of extra compute that should go to parameters; losses are each "
            "approach's prediction for the compute-optimal model (E + K/C^gamma through "
            "approach 1's and approach 2's optima; approach 3 from its law). Consensus: the "
            "precision-weighted mean of the approaches' values and of their intervals' ends "
            "(the approaches share the grid's runs, so combining them does not narrow the "
            "interval). Two approaches agree when their intervals overlap; "
            "✗ marks the one without which the others all agree (both, when two disagree). "
            + noise_text,
        ),
        ("p", held_text),
    ]
    b.extend(("p", f"Refused: {reason.rstrip('.')}.") for reason in v.refused.values())
    if noise is not None and not noise.by_size.empty:
        rows = [
            [r["size"], str(r["cells"]), str(r["runs"]), f"{r['relative']:.2%}"]
            for _, r in noise.by_size.iterrows()
        ]
        b.append(("table", ["size", "cells with seeds", "runs", "seed-to-seed spread"], rows))
    return b


def _shared_noise_text(a: Analysis) -> str:
    """How the bootstraps of approaches 3 and 1 treat the branches of one WSD trunk, which
    share its seed."""
    fit = a.chinchilla
    if isinstance(fit, Refused) or not training_runs(a.points).duplicated().any():
        return ""
    split = [
        name
        for name, splits in (
            ("approach 3's resamples", fit.runs_share_noise),
            ("approach 1's replicates", not isinstance(a.approach_1, Refused)),
        )
        if splits
    ]
    if not split or a.noise is None:
        return ""
    text = (
        f" A WSD trunk's branches share its seed's noise, so {' and '.join(split)} shift each "
        f"trunk's branches together by the trunk's share of the noise and each branch by its "
        f"own ({BRANCH_OWN_SHARE:.0%} of the variance, as a real two-seed grid measured)."
    )
    if a.noise.source == SEEDS:
        return text
    return text + (
        " With one seed the noise is the scatter about approach 3's fit, counted against what "
        "the fit's size terms leave of each trunk's share (the points less parameters would "
        "count it a fifth low on 4 sizes x 5 budgets); on a real grid it holds the law's "
        "misfit too, so the intervals err wide."
    )


def _approach_3_adds_noise(a: Analysis) -> bool:
    """Whether approach 3's bootstrap added the grid's noise (else it resampled points)."""
    return not isinstance(a.chinchilla, Refused) and a.chinchilla.noise is not None


def whole_curve(a: Analysis) -> list[Block]:
    """The schedule-aware curve law and what it predicts on the grid itself."""
    c = a.curves
    b: list[Block] = [
        ("h2", "The whole curve"),
        (
            "p",
            "Each size's validation curves fitted with L(s) = L0 + A·S1^−alpha − C·S2 "
            "(Tissue et al. 2024: S1 the sum of the learning rate over the steps taken, S2 the "
            "annealing area, from the lr each run logged). One law per size serves every "
            "schedule, so the start of a run predicts its end, and one schedule the other.",
        ),
    ]
    rows = []
    for size, law in c.laws.items():
        if isinstance(law, str):
            rows.append([size, "refused", law])
            continue
        f = law.law
        text = f"L0 {f.L0:.3g}, A {f.A:.3g}, alpha {f.alpha:.3g}, C {f.C:.3g}, λ {f.decay:g}"
        rows.append([size, f"{law.rms_relative:.2%} rms", text])
    b.append(("table", ["size", "fit", "law"], rows))
    prefix = c.from_prefix
    if len(prefix):
        b.append(
            (
                "p",
                f"Each run's final loss from the first {PREFIX:.0%} of its size's curves: median "
                f"error {c.median_error(prefix):.2%} (target 1%).",
            )
        )
        b.append(("table", ["run", "measured", "predicted", "error"], _final_rows(prefix)))
    else:
        none = (
            f"No size has curves with enough evaluations in their first {PREFIX:.0%} (6 "
            "points, some after the learning rate falls) to predict its runs' ends"
            + (
                ": a WSD grid's branches have none there, and its trunks never anneal."
                if a.branching is not None
                else "; evaluate more often (train.eval_interval_tokens) to see it."
            )
        )
        b.append(("p", none))
    across = c.across_schedules
    if len(across):
        b.append(
            (
                "p",
                "One schedule from another: the law fitted on one schedule's curves predicts "
                f"the other's final losses, median error {c.median_error(across):.2%}.",
            )
        )
        headers = ["run", "measured", "predicted", "error", "fitted on"]
        rows = [[*row, on] for row, on in zip(_final_rows(across), across["fitted_on"])]
        b.append(("table", headers, rows))
    return [*b, ("img", "curve_predictions.png", CURVE_PREDICTIONS)]


def _final_rows(table) -> list[list[str]]:
    return [
        [r["run"], f"{r['actual']:.4f}", f"{r['predicted']:.4f}", f"{r['error']:+.2%}"]
        for _, r in table.iterrows()
    ]


def branching(a: Analysis) -> list[Block]:
    """A WSD grid's opening: what its trunks and branches spent, and their curves."""
    spend = a.branching
    if spend is None:
        return []
    text = (
        f"{spend.trunks} trunks trained at the peak learning rate and {spend.branches} "
        f"branches cooled down from them, one per budget. They spent {spend.spent_flops:.3g} "
        f"FLOPs, {spend.ratio:.2f} times the {spend.cosine_flops:.3g} FLOPs the same grid "
        "costs under cosine, where every budget trains from scratch. The laws below are "
        "fitted on the branches' final losses, as they would be on cosine runs."
    )
    return [
        ("h2", "Trunks and branches (WSD)"),
        ("p", text),
        ("img", "loss_vs_compute.png", TRUNKS_AND_BRANCHES + _no_envelope(a)),
    ]


def learning_rate(a: Analysis) -> list[Block]:
    """A grid with an LR axis: each cell's best LR, the unbracketed ones named, the LR laws."""
    rates = a.learning_rates
    if rates is None:
        return []
    cells = rates.sweep.cells
    swept = len(rates.swept_points)
    b: list[Block] = [
        ("h2", "Learning rate"),
        (
            "p",
            f"{len(cells)} (size, tokens) cells swept over {swept} runs. LR* is the vertex of a "
            "least-squares parabola in log LR (with a residual-bootstrap 95% interval where "
            "the cell has residuals to draw), else the best LR measured. The loss laws below "
            "are fitted on the runs of each cell's best LR (the lowest mean loss over its "
            f"seeds) only: {len(rates.sweep.best_run_ids)} of {swept}.",
        ),
    ]
    rows = []
    for _, cell in cells.sort_values(["params", "tokens"]).iterrows():
        interval = (cell["ci95_low"], cell["ci95_high"]) if cell["ci95_low"] > 0 else None
        how = cell["note"] if isinstance(cell["note"], str) else cell["method"]
        lr_star = _fmt(cell["lr_star"], interval, 3)
        tokens, best = f"{cell['tokens']:.3g}", f"{cell['best_val_loss']:.4f}"
        rows.append([cell["size"], tokens, str(cell["n_lrs"]), lr_star, how, best])
    b.append(("table", ["size", "tokens", "LRs", "LR* [95%]", "how", "best loss"], rows))
    unbracketed = rates.sweep.unbracketed
    if len(unbracketed):
        named = "; ".join(f"{c['size']} at {c['tokens']:.3g} tokens ({c['note']})"
                          for _, c in unbracketed.iterrows())  # fmt: skip
        cells_text = "1 cell" if len(unbracketed) == 1 else f"{len(unbracketed)} cells"
        b.append(("p", f"Optimum not bracketed in {cells_text}: {named}."))
    b.append(("img", "lr_sweeps.png", LR_SWEEPS))
    law = rates.law
    if isinstance(law, str):
        b.append(("p", f"LR law LR* = k·N^x·D^y: refused ({law})."))
    else:
        b.append(
            (
                "p",
                f"LR law over the {law.n_cells} cells with a vertex ({law.left_out} left out): "
                f"LR* = {law.coefficient:.3g} · N^x · D^y with x = "
                f"{_fmt(law.exponent_N, law.exponent_N_ci95, 3)} and y = "
                f"{_fmt(law.exponent_D, law.exponent_D_ci95, 3)}.",
            )
        )
    compute = rates.compute_law
    b.append(
        (
            "p",
            f"Against compute, LR* ∝ C^z: {compute}."
            if isinstance(compute, str)
            else f"Against compute, LR* ∝ C^z with z = {_exponent(compute)} (DeepSeek LLM "
            "fits −0.125 at its scale, with the batch growing as C^0.327; here the batch is "
            "fixed).",
        )
    )
    return [*b, ("img", "lr_law.png", LR_LAW)]


def chinchilla(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Loss against parameters and data (Chinchilla approach 3)")]
    fit = a.chinchilla
    if isinstance(fit, Refused):
        return [*b, ("p", f"Refused: {fit}")]
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
    return b + [("p", f"Caution: {warning}.") for warning in fit.warnings()]


def held_out(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Held-out prediction")]
    h = a.held_out
    if isinstance(h, Refused):
        return [*b, ("p", f"Refused: {h}")]
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
    return [*b, ("table", ["tokens", "measured", "predicted [95%]", "error"], rows)]


def allocation(a: Analysis, curves: Curves) -> list[Block]:
    b: list[Block] = [("h2", "Compute-optimal allocation")]
    rows, cautions = [], []
    for name, result in (
        ("approach 1 (envelope)", a.approach_1),
        ("approach 2 (IsoFLOP)", a.approach_2),
    ):
        if isinstance(result, Refused):
            rows.append([name, "refused (the reason is under Verdict)", ""])
            continue
        ci = result.n_opt.exponent_ci95
        cautions.append(ALLOCATION.caution(f"a by {name}", ci))
        rows.append(
            [
                name,
                _fmt(result.n_opt.exponent, ci, 3) + ("" if ci else " (no interval)"),
                _fmt(result.d_opt.exponent, result.d_opt.exponent_ci95, 3),
            ]
        )
    if not isinstance(a.chinchilla, Refused):
        fit = a.chinchilla
        rows.append(
            [
                "approach 3 (fit)",
                _fmt(fit.law.a, fit.interval(lambda s: s.a), 3),
                _fmt(fit.law.b, fit.interval(lambda s: s.b), 3),
            ]
        )
    b.append(("table", ["method", "N_opt ∝ C^a", "D_opt ∝ C^b"], rows))
    b.append(
        (
            "p",
            "Approach 1 fits one ridge, log N_opt linear in log C, through the profiles of "
            "loss against log N that the sizes' curves (each size's shortest run reaching "
            "it) make at every compute at once; approach 2 takes each budget's minimum from "
            "the vertex of a parabola in log N through the lowest size and up to two "
            "neighbours each side. " + _interval_text(a),
        )
    )
    if not isinstance(a.approach_2, Refused) and a.approach_2.refused:
        b.append(("p", "Approach 2 left out: " + "; ".join(a.approach_2.refused) + "."))
    b += [("p", f"Caution: {caution}.") for caution in cautions if caution]
    if a.branching is None:  # a WSD report opens with this plot
        b.append(("img", "loss_vs_compute.png", LOSS_VS_COMPUTE + _no_envelope(a)))
    b.append(
        (
            "img",
            "isoflop.png",
            ISOFLOP_FROM_LAW if curves.isoflop_from_law else ISOFLOP_PARABOLAS,
        )
    )
    return b


def _interval_text(a: Analysis) -> str:
    """How approaches 1 and 2 made their intervals: a noise bootstrap, or t intervals."""
    made = [r for r in (a.approach_1, a.approach_2) if not isinstance(r, Refused)]
    if made and all(r.resamples for r in made):
        return (
            f"Their intervals come from {made[0].resamples} refits with the grid's measured "
            f"noise ({made[0].noise:.2%} per run) added to every run."
        )
    return (
        "With no noise scale measured, approach 1 gives no interval and approach 2's are t "
        "intervals of its optima."
    )


def _no_envelope(a: Analysis) -> str:
    """What the loss-against-compute caption adds when the black line it names is absent."""
    return NO_ENVELOPE if isinstance(a.approach_1, Refused) else ""


def fixed_tokens(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Loss against parameters at fixed tokens")]
    f = a.fixed_tokens
    if isinstance(f, Refused):
        text = (
            f"Direct fit of E + A/N^alpha refused ({f}); the plot shows the Chinchilla fit's "
            "slices at fixed D instead."
        )
        cautions = []
    else:
        E, alpha = f.interval(lambda s: s.E), f.interval(lambda s: s.alpha)
        text = (
            f"At D = {a.fixed_tokens_D:.3g} tokens: L(N) = E + A/N^alpha with E = "
            f"{_fmt(f.law.E, E)}, alpha = {_fmt(f.law.alpha, alpha)}."
        )
        at = f"at D = {a.fixed_tokens_D:.3g}"
        cautions = [SCALE.caution(f"E {at}", E), EXPONENT.caution(f"alpha {at}", alpha)]
    return [
        *b,
        ("p", text),
        *(("p", f"Caution: {caution}.") for caution in cautions if caution),
        ("img", "loss_vs_params.png", LOSS_VS_PARAMS),
        ("img", "training_curves.png", TRAINING_CURVES),
    ]


def predictions(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Predictions")]
    if isinstance(a.predictions, Refused):
        return [*b, ("p", str(a.predictions))]
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
    peak = GPU_PEAK_FLOPS[a.gpu]["bf16"]
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
    return b


def next_run(a: Analysis) -> list[Block]:
    """With a target compute: the run the laws say to train next (next_run.yaml holds it)."""
    run = a.next_run
    if run is None:
        return []
    b: list[Block] = [("h2", "Next run")]
    if isinstance(run, Refused):
        return [*b, ("p", str(run))]
    hours = f"{run.gpu_hours:,.3g} {run.gpu}-hours at MFU {run.mfu:.1%}" if run.gpu_hours else (
        "no MFU known: pass --mfu")  # fmt: skip
    rows = [
        ["compute C", f"{run.flops:.3g} FLOPs"],
        ["parameters N (non-embedding)", f"{run.params:.3g}"],
        ["training tokens D", f"{run.tokens:.3g}"],
        ["predicted loss [95%]", _fmt(run.loss, run.loss_ci95, 4)],
        ["peak learning rate", f"{run.lr:.3g}: {run.lr_source}"],
        ["cost", hours],
    ]
    return [
        *b,
        ("table", ["", ""], rows),
        (
            "p",
            "The compute-optimal allocation of the Chinchilla fit at C = 6·N·D. next_run.yaml "
            "beside this report is a spec for it that `scaling plan` and `scaling run` accept: "
            "the shape by the grid's aspect-ratio rule, its training settings, this LR and a "
            "batch from DeepSeek LLM's B_opt law (the grid has no batch axis). This far beyond "
            "the grid the law's form is an assumption; the interval covers the fit only.",
        ),
    ]


def time(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Time")]
    rows = [[f"T={T}", _exponent(law)] for T, law in a.time_vs_params.items()]
    b.append(("table", ["sequence length", "k in t ∝ N^k [95%]"], rows))
    rows = []
    for size, cost in a.seq_len_costs.items():
        exponent = _exponent(a.seq_len_exponents[size])
        if isinstance(cost, Refused):
            rows.append([size, "refused", str(cost), "", exponent])
            continue
        attention = a.finished.loc[a.finished["size"] == size, "attention"].iloc[0]
        flop_crossover = (
            f"{cost.flop_model_crossover:,}"
            if parse_attention(attention) is None
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
    headers = ["model", "time per token", "measured T*", "FLOP model 6·d_model", "k in t ∝ T^k"]
    b.append(("table", headers, rows))
    untested = [size for size, cost in a.seq_len_costs.items()
                if not isinstance(cost, Refused) and len(cost.lengths) < 3]  # fmt: skip
    if untested:
        b.append(
            (
                "p",
                f"{', '.join(untested)}: timed at 2 lengths only: a + b·T passes through both "
                "exactly, so T* and k are read off two mean times, with nothing left over to "
                "test the form (see the claims below).",
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
    measured_mfu = not a.finished.dropna(subset=[MFU, "seq_len"]).empty
    return [
        *b,
        *_unsteady_trials(a),
        ("img", "time_per_token.png", TIME_PER_TOKEN),
        ("img", "seq_len_split.png", SEQ_LEN_SPLIT),
        ("img", "mfu_heatmap.png", MFU_HEATMAP if measured_mfu else MFU_NOT_MEASURED),
    ]


def _unsteady_trials(a: Analysis) -> list[Block]:
    """The trials whose throughput varied beyond UNSTEADY_SPREAD, or that none did."""
    found = unsteady_trials(a.finished)
    if found is None:
        return []  # results without step times (a CSV)
    timed, unsteady = found
    bound = f"{UNSTEADY_SPREAD:g}× (the 90th-percentile step time over the 10th)"
    if unsteady.empty:
        return [("p", f"Every timed trial's throughput held within {bound}.")]
    named = ", ".join(f"{r['name']} ({r[STEP_TIME_SPREAD]:.3g}×)" for _, r in unsteady.iterrows())
    return [
        (
            "p",
            f"Throughput varied beyond {bound} in {len(unsteady)} of {timed} "
            f"timed trials, most likely slowed for part of the run by other work on the "
            f"machine: {named}. Each trial's time is its median step, which a slowdown over "
            "less than half of its steps does not move; rerun these on a quiet machine "
            "before trusting their points.",
        )
    ]


def inference(a: Analysis) -> list[Block]:
    b: list[Block] = [
        ("h2", "Inference"),
        ("img", "decode_latency.png", decode_latency(a.decode_curves)),
    ]
    if a.cost_split.empty:
        return [*b, ("p", "No run recorded decode timings, so there is no cost split.")]
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


def claims(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Two claims, checked on this grid")]
    b.extend(("p", line) for line in a.claims["quadratic"].splitlines())
    return [*b, ("p", a.claims["exponential"])]


def not_fitted(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Runs not fitted")]
    missing = a.runs.not_finished
    if missing.empty:
        return [*b, ("p", "Every trial finished.")]
    rows = [
        [r["name"], r["status"], str(r["error"]).splitlines()[0][:160] if r["error"] else ""]
        for _, r in missing.iterrows()
    ]
    return [*b, ("table", ["run", "status", "reason"], rows)]


def report(a: Analysis, curves: Curves) -> list[Block]:
    """The whole report, section by section."""
    return [
        *title(a),
        *verdict(a),
        *branching(a),
        *learning_rate(a),
        *chinchilla(a),
        *held_out(a),
        *allocation(a, curves),
        *fixed_tokens(a),
        *whole_curve(a),
        *predictions(a),
        *next_run(a),
        *time(a),
        *inference(a),
        *claims(a),
        *not_fitted(a),
    ]
