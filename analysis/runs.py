"""A grid's runs as one table, from MLflow or from a CSV, with the canonical columns.

One row per trial (its latest run, when a grid was rerun), and each run's validation curve.
Only FINISHED rows are for fitting; the others stay in the table with their status and reason
so a report can list them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.contract import (
    BRANCH_AT,
    ERROR,
    FINAL_METRICS,
    KIND,
    LR,
    LR_PARAM,
    MFU,
    PARAMETRIZATION,
    PLAIN,
    SCHEDULE,
    STATUS,
    STEP_TIME_S,
    STEP_TIME_SPREAD,
    TOKENS_PER_S,
    TOKENS_PER_STEP_PARAM,
    TRAIN_LOSS,
    TRUNK,
    TRUNK_NAME,
    VAL_LOSS,
    NoSuchExperiment,
    Status,
    decode_context,
    runs_by_trial,
    steady_step_time,
)

# Params as MLflow holds them (strings), and the type each becomes.
PARAM_COLUMNS = {
    "n_layer": int,
    "d_model": int,
    "n_head": int,
    "seq_len": int,
    "tokens": int,
    "seed": int,
    "params": int,
    "params_total": int,
    "flops_per_token": int,
    "flops": float,
    "attention": str,
    "precision": str,
    "device": str,
    LR_PARAM: float,  # the peak LR: the LR axis of a sweep
    PARAMETRIZATION: str,
}
# Per generated token, the seconds each run's decode metrics give at each context.
DECODE_COLUMNS = ["run_id", "context", "seconds"]
# Final values (the last logged) of these metrics, in columns of the same names.
METRIC_COLUMNS = (VAL_LOSS, TRAIN_LOSS, TOKENS_PER_S, MFU, *FINAL_METRICS)


# `kind`: a plain trial, a WSD trunk or branch; a branch's `trunk` (name) and `branch_at`.
WSD_COLUMNS = ["kind", "trunk", "branch_at"]
COLUMNS = ["run_id", "name", "status", "error", *WSD_COLUMNS, *PARAM_COLUMNS, *METRIC_COLUMNS,
           "time_per_token", "schedule", "tokens_per_step"]  # fmt: skip


@dataclass
class Runs:
    """`table`: one row per trial; `curves`: run id -> DataFrame of tokens, flops, val_loss;
    `lrs`: run id -> DataFrame of tokens, lr (the LR as logged, every few steps);
    `decode`: run_id, context, seconds (per generated token, measured after training).
    A WSD trunk is in the table and has its curve, but it is no grid point: it trains at
    the peak LR and ends at no budget, so `finished` (what is fitted) leaves it out."""

    table: pd.DataFrame
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    lrs: dict[str, pd.DataFrame] = field(default_factory=dict)
    decode: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DECODE_COLUMNS))

    @property
    def finished(self) -> pd.DataFrame:
        return self.table[(self.table["status"] == Status.FINISHED) & (self.kinds != TRUNK)]

    @property
    def trunks(self) -> pd.DataFrame:
        return self.table[self.kinds == TRUNK]

    @property
    def kinds(self) -> pd.Series:
        """Each row's kind: a plain trial where the table does not say (a hand-made one)."""
        return self.table.get("kind", pd.Series(PLAIN, index=self.table.index))

    @property
    def not_finished(self) -> pd.DataFrame:
        return self.table[self.table["status"] != Status.FINISHED]


def from_mlflow(
    tracking_uri: str | None, experiment: str, parent_run_id: str | None = None
) -> Runs:
    """The trials of `experiment` (or of one `scaling run`, by its parent run id)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise NoSuchExperiment(experiment, client.tracking_uri)
    rows, curves, lrs, decode = [], {}, {}, []
    for trial_runs in runs_by_trial(client, found.experiment_id, parent_run_id).values():
        run = trial_runs[0]  # the latest
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        row = {
            "run_id": run.info.run_id,
            "name": run.info.run_name,
            "status": tags.get(STATUS, Status.UNKNOWN.value),
            "error": tags.get(ERROR),
            "kind": tags.get(KIND, PLAIN),
            "trunk": tags.get(TRUNK_NAME),
            "branch_at": int(params.get(BRANCH_AT, 0)),
        }
        params.setdefault(LR_PARAM, params.get("train.lr"))  # runs from before the LR axis
        row["schedule"] = params.get(SCHEDULE, "cosine")
        row["tokens_per_step"] = int(params.get(TOKENS_PER_STEP_PARAM, 0)) or None
        for key, kind in PARAM_COLUMNS.items():
            row[key] = kind(params[key]) if params.get(key) is not None else None
        row.update({key: metrics.get(key) for key in METRIC_COLUMNS})
        per_step = params.get(TOKENS_PER_STEP_PARAM)
        if row[STEP_TIME_SPREAD] is None and per_step:  # recorded before the median step was
            row.update(_steady_from_throughput(client, run.info.run_id, int(per_step)))
        # Seconds per training token: the median step time is steadier than the last window's
        # tokens/s.
        if row[STEP_TIME_S] and per_step:
            row["time_per_token"] = row[STEP_TIME_S] / int(per_step)
        elif row[TOKENS_PER_S]:
            row["time_per_token"] = 1 / row[TOKENS_PER_S]
        rows.append(row)
        for key, value in metrics.items():
            context = decode_context(key)
            if context is not None:
                decode.append((run.info.run_id, context, value))
        curve = _history(client, trial_runs, VAL_LOSS)
        if row["flops_per_token"]:
            curve["flops"] = curve["tokens"] * row["flops_per_token"]
        curves[run.info.run_id] = curve
        lrs[run.info.run_id] = _history(client, trial_runs, LR)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.sort_values(["params", "seq_len", "name"], ignore_index=True)
    return Runs(table, curves, lrs, pd.DataFrame(decode, columns=DECODE_COLUMNS))


def _history(client, trial_runs: list, key: str) -> pd.DataFrame:
    """A trial's `key` against tokens across its runs (newest first): a run that resumed the
    trial (a WSD trunk going on to a budget added to the grid) logs only from where it
    resumed, so each earlier run supplies the tokens before."""
    points: list[tuple[int, float]] = []
    start = np.inf  # the first token the runs read so far cover
    for run in trial_runs:
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        points += [(step, value) for step, value in history if step < start]
        start = min([start, *(step for step, _ in history)])
    points.sort()
    return pd.DataFrame({"tokens": [p[0] for p in points], key: [p[1] for p in points]})


def _steady_from_throughput(client, run_id: str, tokens_per_step: int) -> dict[str, float]:
    """STEP_TIME_S and STEP_TIME_SPREAD for a run whose trial logged its mean step (a stall in
    part of the run drags a mean): from its tokens/s history instead, whose every value is a
    window of log_interval_steps steps, so this spread understates a single step's."""
    history = sorted(client.get_metric_history(run_id, TOKENS_PER_S), key=lambda m: m.step)
    steady = steady_step_time([tokens_per_step / m.value for m in history if m.value > 0])
    return {} if steady is None else dict(zip((STEP_TIME_S, STEP_TIME_SPREAD), steady))


class CsvError(ValueError):
    """A CSV that cannot be read as results: the file, the canonical column (or argument) at
    fault, None for the file itself, and what is wrong; a caller names its own flag for it."""

    def __init__(self, path: str, problem: str, column: str | None = None):
        self.path, self.problem, self.column = path, problem, column
        super().__init__(f"{path}: " + (f"{column}: " if column else "") + problem)


def from_csv(path: str, columns: dict[str, str] | None = None, drop_highest_loss: int = 0) -> Runs:
    """A CSV of final results, one row per run. `columns` maps canonical names to the file's,
    e.g. {"params": "Model Size", "flops": "Training FLOP", VAL_LOSS: "loss"}; tokens missing
    from the file are derived from FLOPs (D = C / 6N). Rows count as FINISHED unless a status
    column says otherwise, and only FINISHED rows must hold numbers. They come in order of
    loss, the order the replication's fit took them in (a seeded bootstrap resamples by
    position), less the `drop_highest_loss` highest (the replication drops 5), then the rest."""
    table = _read_csv(path)
    named = {name: (columns or {}).get(name, name) for name in NUMBER_COLUMNS}
    for name in ("params", VAL_LOSS):
        if named[name] not in table.columns:
            listed = ", ".join(map(str, table.columns))
            raise CsvError(path, f"no column '{named[name]}' (columns: {listed})", name)
    if named["tokens"] not in table.columns and named["flops"] not in table.columns:
        raise CsvError(
            path,
            f"neither a tokens column '{named['tokens']}' nor a FLOPs column "
            f"'{named['flops']}' to derive tokens from (D = C / 6N)",
            "tokens",
        )
    table = table.rename(columns={column: name for name, column in named.items()})
    if "status" not in table.columns:
        table["status"] = Status.FINISHED.value
    finished = (table["status"] == Status.FINISHED).to_numpy()
    for name in NUMBER_COLUMNS:
        if name in table.columns:
            # FLOPs beside a tokens column are not used: they need not be numbers.
            used = name != "flops" or "tokens" not in table.columns
            table[name] = _numbers(table[name], path, name, named[name], finished & used)
    if drop_highest_loss and drop_highest_loss >= finished.sum():
        raise CsvError(
            path,
            f"cannot leave out {drop_highest_loss} of {finished.sum()} finished rows",
            "drop_highest_loss",
        )
    done = table[finished]
    by_loss = done.iloc[np.argsort(done[VAL_LOSS].to_numpy())[: len(done) - drop_highest_loss]]
    table = pd.concat([by_loss, table[~finished]], ignore_index=True)
    if "tokens" not in table.columns:
        table["tokens"] = table["flops"] / (6 * table["params"])
    six_nd = 6 * table["params"] * table["tokens"]
    table["flops"] = table["flops"].fillna(six_nd) if "flops" in table.columns else six_nd
    # The columns a grid's table has and a CSV may lack (shapes, timings): present, but empty.
    table = table.reindex(columns=[*table.columns, *(c for c in COLUMNS if c not in table)])
    table["run_id"] = table["run_id"].fillna(pd.Series(table.index.astype(str), table.index))
    table["kind"], table["branch_at"] = table["kind"].fillna(PLAIN), table["branch_at"].fillna(0)
    table["name"] = table["name"].fillna(table["run_id"])
    table["flops_per_token"] = table["flops_per_token"].fillna(table["flops"] / table["tokens"])
    # No validation curves in a CSV: each run's curve is its final point.
    curves = {
        row["run_id"]: pd.DataFrame(
            {"tokens": [row["tokens"]], VAL_LOSS: [row[VAL_LOSS]], "flops": [row["flops"]]}
        )
        for _, row in table.iterrows()
    }
    return Runs(table, curves)


# The numeric columns a CSV of results may give: what each is checked as a number for.
NUMBER_COLUMNS = ("params", "tokens", "flops", VAL_LOSS, LR_PARAM)  # lr: optional, an LR sweep


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise CsvError(path, "no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CsvError(path, f"not a readable CSV: {str(exc).splitlines()[0]}") from None


def _numbers(values: pd.Series, path: str, name: str, column: str, checked) -> pd.Series:
    """`values` as numbers; a row of `checked` (a mask) that holds none is refused."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy() & checked
    if bad.any():
        row = int(bad.nonzero()[0][0])
        raise CsvError(path, f"column '{column}' row {row + 1} is not a number", name)
    return numbers
