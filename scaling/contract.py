"""What the training side writes and the analysis side reads, each name spelled once.

The MLflow tags, the metric names, the trial statuses, the params both sides use, how trials
and models are named, how attention is written, the FLOPs a token costs, and the GPUs'
datasheet peaks. Standard library only: `analysis` imports this module and nothing else of
`scaling`, so a report can be made where torch and Ray are not installed. The README's "What
MLflow holds" says the same for people. Renaming a tag, metric or status here renames it on
both sides at once; the analysis table's columns are checked against the params listed here
(tests/test_contract.py).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

# ---------------------------------------------------------------------------------------------
# MLflow tags. A `scaling run` is a grid run; each of its trials a child run.

ROLE = "scaling.role"  # GRID or TRIAL
GRID, TRIAL = "grid", "trial"
TRIAL_ID = "scaling.trial_id"  # a hash of the resolved trial config: reruns skip FINISHED ones
STATUS = "scaling.status"  # a Status
ERROR = "scaling.error"  # why a trial ended other than FINISHED
DRIVER = "scaling.driver"  # host:pid of the `scaling run` that owns a grid run
HEARTBEAT = "scaling.heartbeat"  # on a RUNNING grid run: when its driver was last alive (epoch s)
SPOOL_KEY = "scaling.spool_key"  # a run's name in its driver's spool: a replay finds it again
SPEC_FILE = "scaling.spec"  # the spec file's name, on the grid run
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own tag: the trial's grid run
# What a trial run trains: a whole budget (`trial`), or under the WSD schedule a constant-LR
# `trunk`, or a `branch` that cools down from its trunk's checkpoint to one budget.
KIND = "scaling.kind"
PLAIN, TRUNK, BRANCH = "trial", "trunk", "branch"
TRUNK_NAME = "scaling.trunk"  # on a branch: its trunk's run name
# Artifacts: a FINISHED trial's weights, a FAILED one's traceback, the report on the grid run.
CHECKPOINT = "checkpoint.pt"  # {"config", "trial", "tokens_seen", "state_dict"}, weights_only
ERROR_FILE = "error.txt"
REPORT_ARTIFACTS = "report"


class Status(str, Enum):
    """How a trial ended (the STATUS tag), or where it stands while the grid runs."""

    PENDING = "PENDING"  # the live table only: not started yet
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"  # trained to its budget: the only status that is fitted
    OOM = "OOM"
    DIVERGED = "DIVERGED"
    FAILED = "FAILED"  # raised after its retries
    KILLED = "KILLED"  # stopped by the user, or its driver died
    STOPPED = "STOPPED"  # stopped early, hopeless against its cell (search.stop_hopeless)
    UNKNOWN = "UNKNOWN"  # a trial run without the tag: not one `scaling run` wrote

    def __str__(self) -> str:
        return self.value

    @property
    def is_result(self) -> bool:
        """A trial that ran and told us something: a diverged or out-of-memory point is a
        result of the scaling study, not a failure of the tool."""
        return self in (Status.FINISHED, Status.OOM, Status.DIVERGED, Status.STOPPED)

    @property
    def mlflow_status(self) -> str:
        """MLflow's own run status: only a trained model counts as FINISHED."""
        if self in (Status.FINISHED, Status.KILLED, Status.RUNNING):
            return self.value
        return "KILLED" if self == Status.STOPPED else "FAILED"


def trial_runs_filter(parent_run_id: str | None = None) -> str:
    """MLflow's search filter for an experiment's trial runs, or one grid run's."""
    query = f"tags.`{ROLE}` = '{TRIAL}'"
    if parent_run_id:
        query += f" and tags.`{PARENT_RUN_ID}` = '{parent_run_id}'"
    return query


def grid_runs_filter() -> str:
    return f"tags.`{ROLE}` = '{GRID}'"


def runs_by_trial(
    client: Any, experiment_id: str, parent_run_id: str | None = None
) -> dict[str, list]:
    """Each trial's runs, newest first, for an `MlflowClient`: a grid run again reruns what
    did not finish, and resumes a WSD trunk whose branch points a new budget needs."""
    runs = client.search_runs(
        [experiment_id],
        trial_runs_filter(parent_run_id),
        order_by=["attributes.start_time DESC"],
        max_results=50000,
    )
    by_trial: dict[str, list] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags.get(TRIAL_ID), []).append(run)
    return by_trial


def latest_trial_runs(client: Any, experiment_id: str, parent_run_id: str | None = None) -> list:
    """Each trial's latest run: the record both the status table and the report read."""
    return [runs[0] for runs in runs_by_trial(client, experiment_id, parent_run_id).values()]


# What to do when a command that reads finds no store, or not the experiment: the tracking
# URI defaults to ./mlflow.db, so the usual cause is the working folder.
WHERE_THE_STORE_IS = "run it where you ran `scaling run`, or pass --tracking-uri"


class NoSuchExperiment(LookupError):
    """The store has no experiment of that name; the message is the one line the user sees."""

    def __init__(self, name: str, tracking_uri: str):
        super().__init__(
            f"experiment: no experiment '{name}' in {tracking_uri}: {WHERE_THE_STORE_IS}"
        )


# ---------------------------------------------------------------------------------------------
# Params of a trial run: its shape and budget (written at its start), and where it ran
# (written at its end). Every `train.*`, `data.*` and `resources.*` value goes in too.

TRIAL_PARAMS = ("n_layer", "d_model", "n_head", "seq_len", "tokens", "params", "params_total",
                "flops_per_token", "attention", "seed", "flops")  # fmt: skip
PRECISION, COMPILE, DEVICE, HOST, RAY_NODE_ID = (
    "precision",
    "compile",
    "device",
    "host",
    "ray_node_id",
)
RUN_PARAMS = (PRECISION, COMPILE, DEVICE, HOST, RAY_NODE_ID)
TOKENS_PER_STEP_PARAM = "train.tokens_per_step"
# The schedule's params, on every trial run (the `train.*` fields of the same names: a
# cosine trial's id leaves them out); BRANCH_AT (tokens) on branches.
SCHEDULE, DECAY_FRACTION, DECAY_SHAPE = "schedule", "decay_fraction", "decay_shape"
COOLDOWN_PARAMS = (DECAY_FRACTION, DECAY_SHAPE)  # what only a WSD branch's cooldown uses
SCHEDULE_PARAMS = (SCHEDULE, *COOLDOWN_PARAMS)
BRANCH_AT = "branch_at"
# The peak LR (`train.lr` as well, kept for older runs) and µP's, on every trial run.
LR_PARAM, PARAMETRIZATION, BASE_WIDTH = "lr", "parametrization", "base_width"
TUNING_PARAMS = (LR_PARAM, PARAMETRIZATION, BASE_WIDTH)  # base_width: under µP only

# ---------------------------------------------------------------------------------------------
# Metrics of a trial run. Every report carries STEP, the training tokens seen, which is
# MLflow's step for the metrics in it.

STEP = "step"
TRAIN_LOSS, LR, TOKENS_PER_S, MFU = "train_loss", "lr", "tokens_per_s", "mfu"
VAL_LOSS = "val_loss"  # nats per byte, on the grid's shared validation tokens
STEP_TIME_S = "step_time_s"  # median optimizer step, the first 10% left out
STEP_TIME_SPREAD = "step_time_spread"  # its 90th over its 10th percentile step: 1 when steady
PEAK_MEM_BYTES, WALL_S = "peak_mem_bytes", "wall_s"
COMPILE_S = "compile_s"  # a compiled model's first step, kept out of the step time
RESUMED_AT = "resumed_at"  # the tokens a retried trial picked up from
TRAINING_METRICS = (TRAIN_LOSS, LR, TOKENS_PER_S, MFU)  # every log_interval_steps
FINAL_METRICS = (STEP_TIME_S, STEP_TIME_SPREAD, PEAK_MEM_BYTES, WALL_S, COMPILE_S)  # at the end
METRICS = (*TRAINING_METRICS, VAL_LOSS, *FINAL_METRICS, RESUMED_AT)


def steady_step_time(step_times: Sequence[float]) -> tuple[float, float] | None:
    """STEP_TIME_S and STEP_TIME_SPREAD of a trial's optimizer steps (seconds, in order), the
    first 10% (warm-up) left out; None without steps. The median, because a machine shared
    for part of a run would make the mean a point far off its size's other trials; the spread,
    so a report can flag the trials whose throughput varied."""
    steady = list(step_times)[len(step_times) // 10 :]
    if len(steady) < 2:
        return (steady[0], 1.0) if steady else None
    deciles = statistics.quantiles(steady, n=10, method="inclusive")
    return statistics.median(steady), deciles[-1] / deciles[0]


# After training: seconds to generate a token (batch 1, KV cache) with C tokens before it.
DECODE_PREFIX = "decode_s_per_token_at_"


def decode_metric(context: int) -> str:
    return f"{DECODE_PREFIX}{context}"


def decode_context(metric: str) -> int | None:
    """The context a decode metric was timed at; None for any other metric."""
    rest = metric.removeprefix(DECODE_PREFIX)
    return int(rest) if rest != metric and rest.isdigit() else None


# What a Tune trial's last report says of its outcome, for the driver's callbacks.
RESULT_STATUS, RESULT_ERROR = "scaling_status", "scaling_error"
# A trunk's report once a branch point's checkpoint is saved: its tokens. Its branch may start.
RESULT_BRANCH_POINT = "scaling_branch_point"


def result_status(result: dict) -> Status:
    """The status a trial's last report gives: FAILED when it gives none, or none known (a
    callback on the driver must not raise: Tune would stop the whole grid)."""
    try:
        return Status(result.get(RESULT_STATUS, Status.FAILED))
    except ValueError:
        return Status.FAILED


# ---------------------------------------------------------------------------------------------
# Attention: `dense`, or `sliding_window:W` (each token sees itself and the W-1 before it).

DENSE = "dense"
_SLIDING_WINDOW = "sliding_window"


def parse_attention(text: str) -> int | None:
    """`dense` -> None; `sliding_window:W` -> W. Raises ValueError with the accepted forms."""
    if text == DENSE:
        return None
    kind, _, width = text.partition(":")
    if kind == _SLIDING_WINDOW and width.isdigit() and int(width) > 0:
        return int(width)
    raise ValueError("must be 'dense' or 'sliding_window:W' with W a positive integer")


def attention_name(window: int | None) -> str:
    """The one spelling of an attention: `sliding_window:0256` and `:256` are one trial."""
    return DENSE if window is None else f"{_SLIDING_WINDOW}:{window}"


# ---------------------------------------------------------------------------------------------
# FLOPs (PaLM appendix B, nanoGPT's estimate_mfu): 6 per matmul weight per training token,
# plus 12·n_layer·d_model per key attended (QKᵀ and AV, forward and backward). Causal masking
# is not discounted; a sliding window attends to min(seq_len, window) keys.


def matmul_weights(n_layer: int, d_model: int, vocab_size: int) -> int:
    """Weights in a matmul per token: the blocks' (12·d² each) and the output head's."""
    return 12 * n_layer * d_model**2 + vocab_size * d_model


def attention_flops_per_key(n_layer: int, d_model: int) -> int:
    return 12 * n_layer * d_model


def keys_attended(seq_len: int, window: int | None) -> int:
    return seq_len if window is None else min(seq_len, window)


def flops_per_token(
    n_layer: int, d_model: int, seq_len: int, vocab_size: int, window: int | None = None
) -> int:
    """Training FLOPs per token, forward and backward."""
    return 6 * matmul_weights(n_layer, d_model, vocab_size) + attention_flops_per_key(
        n_layer, d_model
    ) * keys_attended(seq_len, window)


# ---------------------------------------------------------------------------------------------
# Names: a model `L4-d256` (`L4-d256-W256` with a sliding window: a different model to time),
# a trial `L4-d256-T512-W256-D1.25M-s0` (the budget only when the grid has several), a WSD
# trunk `L4-d256-T512-trunk-s0`.

TRUNK_LABEL = "trunk"  # a trunk's name has it where a trial's has its budget

_MODEL = r"L(?P<n_layer>\d+)-d(?P<d_model>\d+)"
_MODEL_NAME = re.compile(rf"^{_MODEL}(?:-W(?P<window>\d+))?$")
_TRIAL_NAME = re.compile(
    rf"^{_MODEL}-T(?P<seq_len>\d+)(?:-W(?P<window>\d+))?(?:-(?P<budget>[DC][^-]+|{TRUNK_LABEL}))?"
    r"(?:-lr(?P<lr>[0-9.]+(?:e[-+]?\d+)?))?-s(?P<seed>\d+)$"
)


@dataclass(frozen=True)
class ModelName:
    n_layer: int
    d_model: int
    window: int | None = None

    @property
    def shape(self) -> str:
        """The name without the window: the same weights, attended differently."""
        return f"L{self.n_layer}-d{self.d_model}"

    def __str__(self) -> str:
        return self.shape + (f"-W{self.window}" if self.window is not None else "")

    @classmethod
    def parse(cls, text: str) -> ModelName:
        match = _MODEL_NAME.match(text)
        if match is None:
            raise ValueError(f"'{text}' is not a model name like L4-d256 or L4-d256-W256")
        return cls(*_ints(match, "n_layer", "d_model", "window"))


@dataclass(frozen=True)
class TrialName:
    model: ModelName
    seq_len: int
    seed: int
    budget: str | None = None  # `D1.25M` (tokens) or `C1e+12` (FLOPs), or TRUNK_LABEL
    lr: str | None = None  # `0.003`, on a grid with a learning-rate axis (`lr_label`)

    def __str__(self) -> str:
        window = f"-W{self.model.window}" if self.model.window is not None else ""
        budget = f"-{self.budget}" if self.budget else ""
        lr = f"-lr{self.lr}" if self.lr else ""
        return f"{self.model.shape}-T{self.seq_len}{window}{budget}{lr}-s{self.seed}"

    @classmethod
    def parse(cls, text: str) -> TrialName:
        match = _TRIAL_NAME.match(text)
        if match is None:
            raise ValueError(f"'{text}' is not a trial name like L4-d256-T512-s0")
        n_layer, d_model, window, seq_len, seed = _ints(
            match, "n_layer", "d_model", "window", "seq_len", "seed"
        )
        return cls(ModelName(n_layer, d_model, window), seq_len, seed, match["budget"], match["lr"])


def _ints(match: re.Match, *groups: str) -> list[Any]:
    return [None if match[g] is None else int(match[g]) for g in groups]


def tokens_budget(tokens: float) -> str:
    """`D1.25M`: a trial's token budget in its name."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if tokens >= scale:
            return f"D{tokens / scale:.3g}{unit}"
    return f"D{tokens:.0f}"


def lr_label(lr: float) -> str:
    """`0.003`: a trial's peak learning rate in its name, three significant figures."""
    return f"{lr:.3g}"


def compute_budget(flops: float) -> str:
    """`C1e+12`: a trial's FLOP budget (an IsoFLOP grid) in its name."""
    return f"C{flops:.0e}"


# ---------------------------------------------------------------------------------------------
# GPUs: dense (no sparsity) peak FLOP/s from the vendors' datasheets, by precision. The
# denominator of MFU on a GPU, and what predicted FLOPs become GPU-hours with.

GPU_PEAK_FLOPS = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},  # SXM; the PCIe card is lower (756e12)
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
}


def gpu_named(name: str) -> str | None:
    """The table's name for a GPU a user named (`h100` is `H100`), or None if unknown."""
    return next((gpu for gpu in GPU_PEAK_FLOPS if gpu.lower() == name.strip().lower()), None)


def gpu_in_device_name(device_name: str) -> str | None:
    """The table's GPU in a driver's device name (`NVIDIA H100 80GB HBM3` is `H100`): the
    longest name that appears, so `A100` is never read as `A10`."""
    found = [gpu for gpu in GPU_PEAK_FLOPS if gpu.lower() in device_name.lower()]
    return max(found, key=len) if found else None
