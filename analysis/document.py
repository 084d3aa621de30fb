"""fits.json: every fit of an `Analysis` as JSON, in the schema the README gives, and the
atomic write of such a document.

A value with an interval is `{"value": v, "ci95": [low, high]}` (`ci95` null without a
bootstrap); a refused fit is `{"refused": "the reason"}` in place of its block; a number that
does not exist (a crossover that never comes) is null: JSON has no NaN or Infinity.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from analysis import frontier
from analysis.analyse import Analysis, Refused
from analysis.laws import PowerLaw
from analysis.timing import UNSTEADY_SPREAD, SeqLenCost, unsteady_trials
from scaling.contract import GPU_PEAK_FLOPS, STEP_TIME_SPREAD


def value(number, interval=None) -> dict:
    return {"value": float(number), "ci95": list(interval) if interval else None}


def _block(result, to_dict) -> dict:
    return {"refused": str(result)} if isinstance(result, Refused) else to_dict(result)


def _seq_len_split(cost: SeqLenCost) -> dict:
    return {
        "a_s_per_token": cost.a,
        "b_s_per_token_per_position": cost.b,
        "crossover": cost.crossover,
        "flop_model_crossover": cost.flop_model_crossover,
    }


def fits_document(a: Analysis) -> dict:
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
        "wsd": a.branching.to_dict() if a.branching else None,
        "learning_rate": a.learning_rates.to_dict() if a.learning_rates else None,
        "verdict": a.verdict.to_dict(),
        "noise": a.noise.to_dict() if a.noise else None,
        "curves": a.curves.to_dict(),
        "chinchilla": _block(a.chinchilla, lambda f: {**f.to_dict(), "seq_len": a.seq_len}),
        "held_out": _block(a.held_out, frontier.HeldOut.to_dict),
        "approach_1": _block(a.approach_1, frontier.ComputeOptimal.to_dict),
        "approach_2": _block(a.approach_2, frontier.ComputeOptimal.to_dict),
        "loss_vs_params": _block(
            a.fixed_tokens,
            lambda f: {
                "tokens": a.fixed_tokens_D,
                **{
                    name: value(getattr(f.law, name), f.interval(lambda s, n=name: getattr(s, n)))
                    for name in ("E", "A", "alpha")
                },
            },
        ),
        "length_comparisons": [asdict(c) for c in a.length_comparisons],
        "time": {
            "unsteady_trials": _unsteady(a),
            "per_token_vs_params": {
                str(T): _block(law, PowerLaw.to_dict) for T, law in a.time_vs_params.items()
            },
            "seq_len_split": {
                size: _block(cost, _seq_len_split) for size, cost in a.seq_len_costs.items()
            },
            "per_token_vs_seq_len": {
                size: _block(law, PowerLaw.to_dict) for size, law in a.seq_len_exponents.items()
            },
        },
        "inference": {
            "decode_s_per_token": a.decode_curves.drop(columns="params").to_dict("records"),
            "cost_split": a.cost_split.to_dict("records"),
        },
        "claims": a.claims,
        "predictions": _block(a.predictions, lambda rows: _predictions(a, rows)),
        "next_run": None if a.next_run is None else _block(a.next_run, lambda run: run.to_dict()),
    }
    return _finite(json.loads(json.dumps(document, default=_jsonable)))


def _unsteady(a: Analysis) -> dict | None:
    found = unsteady_trials(a.finished)
    if found is None:
        return None
    timed, unsteady = found
    trials = unsteady.rename(columns={STEP_TIME_SPREAD: "step_time_spread"})
    return {"bound": UNSTEADY_SPREAD, "timed": timed, "trials": trials.to_dict("records")}


def _predictions(a: Analysis, rows) -> dict:
    return {
        "gpu": a.gpu,
        "peak_flops": GPU_PEAK_FLOPS[a.gpu]["bf16"],
        "mfu": a.mfu,
        "mfu_source": a.mfu_source,
        "convention": "C = 6·N·D; N_opt, D_opt and loss from the Chinchilla fit",
        "rows": [
            {
                "flops": r["flops"],
                "n_opt": value(r["n_opt"], r["n_opt_ci95"]),
                "d_opt": value(r["d_opt"], r["d_opt_ci95"]),
                "loss": value(r["loss"], r["loss_ci95"]),
                "gpu_hours": r["gpu_hours"],
            }
            for _, r in rows.iterrows()
        ],
    }


def _finite(item):
    """An undefined number (a crossover that never comes, a time not measured) as null."""
    if isinstance(item, float) and not np.isfinite(item):
        return None
    if isinstance(item, dict):
        return {key: _finite(inner) for key, inner in item.items()}
    if isinstance(item, list):
        return [_finite(inner) for inner in item]
    return item


def _jsonable(item):
    if isinstance(item, np.generic):
        return item.item()
    if isinstance(item, float | int) or item is None:
        return item
    return str(item)


def write_json(document: dict, path: str | Path) -> Path:
    """`document` as JSON at `path`, written aside and renamed: a reader never sees half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1))
    tmp.replace(path)
    return path
