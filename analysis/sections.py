"""The report's sections, one function each, as blocks the renderers turn into Markdown and
HTML: ("h1" | "h2" | "p", text), ("table", headers, rows), ("img", file name, caption)."""

from __future__ import annotations

from analysis.analyse import Analysis, Refused
from analysis.curves import Curves
from scaling.contract import GPU_PEAK_FLOPS, MFU, parse_attention

Block = tuple

# Captions: each says something a reader can check against the tables.
LOSS_VS_COMPUTE = (
    "Validation curves of every finished run (thin), final losses (dots), their lower "
    "envelope (approach 1, black) and the Chinchilla fit's lowest loss at each compute with "
    "its 95% bootstrap band, over sizes from 1/100 to 100 times the grid's. FLOPs are the "
    "grid's own (output head and attention counted): the frontier takes each size's FLOPs "
    "per token from a power law fitted to the grid's sizes."
)
TRUNKS_AND_BRANCHES = (
    "Validation curves of the WSD trunks (dashed: constant learning rate) and of their "
    "cooldown branches (thin, each from its branch point to its budget), final losses (dots), "
    "approach 1's lower envelope (black) and the Chinchilla fit's lowest loss at each compute "
    "with its 95% bootstrap band. The branches are the grid's points. Only a branch's end is "
    "annealed, so approach 1 joins each size's final losses into its curve."
)
ISOFLOP_PARABOLAS = (
    "Final loss against model size, coloured by training FLOPs; approach 2's parabolas in "
    "log N (solid) and their minima (stars)."
)
ISOFLOP_FROM_LAW = (
    "Final loss against model size, coloured by training FLOPs; the grid has no FLOP budget "
    "with 3 sizes, so the dashed lines are the Chinchilla fit's profiles at three budgets "
    "across the grid, with their minima (stars) where they fall inside the sizes drawn."
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
    "trained length). A dense model's cost per token grows with the keys it attends to; a "
    "sliding window's stops growing at the window."
)


def _fmt(value: float, interval=None, digits: int = 4) -> str:
    text = f"{value:.{digits}g}"
    return text + (f" [{interval[0]:.{digits}g}, {interval[1]:.{digits}g}]" if interval else "")


def _exponent(law) -> str:
    return str(law) if isinstance(law, Refused) else _fmt(law.exponent, law.exponent_ci95, 3)


def title(a: Analysis) -> list[Block]:
    length = f" at sequence length {a.seq_len}" if a.seq_len is not None else ""
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
        ("img", "loss_vs_compute.png", TRUNKS_AND_BRANCHES),
    ]


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
    rows, refusals = [], []
    for name, result in (
        ("approach 1 (envelope)", a.approach_1),
        ("approach 2 (IsoFLOP)", a.approach_2),
    ):
        if isinstance(result, Refused):
            rows.append([name, "refused (below)", ""])
            refusals.append(result)
            continue
        ci = result.n_opt.exponent_ci95
        rows.append(
            [
                name,
                _fmt(result.n_opt.exponent, ci, 3) + ("" if ci else " (2 points, no interval)"),
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
    b.extend(("p", f"Refused: {refusal}.") for refusal in refusals)
    if not isinstance(a.approach_1, Refused):
        b.append(
            (
                "p",
                "Approach 1's intervals treat the envelope's points as independent; neighbours "
                "come from one run, so read those intervals as too narrow.",
            )
        )
    if not isinstance(a.approach_2, Refused) and a.approach_2.refused:
        b.append(("p", "Approach 2 left out: " + "; ".join(a.approach_2.refused) + "."))
    if a.branching is None:  # a WSD report opens with this plot
        b.append(("img", "loss_vs_compute.png", LOSS_VS_COMPUTE))
    b.append(
        (
            "img",
            "isoflop.png",
            ISOFLOP_FROM_LAW if curves.isoflop_from_law else ISOFLOP_PARABOLAS,
        )
    )
    return b


def fixed_tokens(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Loss against parameters at fixed tokens")]
    f = a.fixed_tokens
    if isinstance(f, Refused):
        text = (
            f"Direct fit of E + A/N^alpha refused ({f}); the plot shows the Chinchilla fit's "
            "slices at fixed D instead."
        )
    else:
        text = (
            f"At D = {a.fixed_tokens_D:.3g} tokens: L(N) = E + A/N^alpha with E = "
            f"{_fmt(f.law.E, f.interval(lambda s: s.E))}, alpha = "
            f"{_fmt(f.law.alpha, f.interval(lambda s: s.alpha))}."
        )
    return [
        *b,
        ("p", text),
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
        ("img", "time_per_token.png", TIME_PER_TOKEN),
        ("img", "seq_len_split.png", SEQ_LEN_SPLIT),
        ("img", "mfu_heatmap.png", MFU_HEATMAP if measured_mfu else MFU_NOT_MEASURED),
    ]


def inference(a: Analysis) -> list[Block]:
    b: list[Block] = [("h2", "Inference"), ("img", "decode_latency.png", DECODE_LATENCY)]
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
        *branching(a),
        *chinchilla(a),
        *held_out(a),
        *allocation(a, curves),
        *fixed_tokens(a),
        *predictions(a),
        *time(a),
        *inference(a),
        *claims(a),
        *not_fitted(a),
    ]
