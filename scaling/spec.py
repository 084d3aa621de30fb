"""Grid specs: YAML -> validated models -> the list of trials to run. Pure Python, no torch.

Every problem with a spec becomes one `SpecError` whose text names the file and the field:
`smoke.yaml: grid.seq_len[1]: must be a positive integer, got -3`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from scaling import schedule
from scaling.config import GPTConfig
from scaling.contract import (
    BRANCH,
    COOLDOWN_PARAMS,
    SCHEDULE_PARAMS,
    TRUNK,
    TRUNK_LABEL,
    ModelName,
    TrialName,
    attention_name,
    compute_budget,
    lr_label,
    parse_attention,
    tokens_budget,
)
from scaling.errors import InputError


class SpecError(InputError):
    """A spec that cannot be run; the message is the one line the user sees."""


# ---------------------------------------------------------------------------------------------
# Value types. YAML reads `1e6` and `3e-4` as strings (PyYAML follows YAML 1.1), so numbers
# are accepted from numeric strings too; the messages are the ones the CLI contract shows.


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number")
    try:
        return float(value)
    except ValueError:
        raise ValueError("must be a number") from None


def _checked(kind: type, positive: bool, message: str):
    """A validator for numbers of `kind` (int or float) above zero, or at least zero."""

    def check(value: Any):
        try:
            number = _number(value)
        except ValueError:
            raise ValueError(message) from None
        in_range = number > 0 if positive else number >= 0
        if not math.isfinite(number) or not in_range or (kind is int and number != int(number)):
            raise ValueError(message)
        return kind(number)

    return check


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0 <= number <= 1:
        raise ValueError("must be between 0 and 1")
    return number


def _decay_fraction(value: Any) -> float:
    number = _number(value)
    if not 0 < number <= 1:
        raise ValueError("must be a fraction in (0, 1]")
    return number


_positive_int = _checked(int, True, "must be a positive integer")
_non_negative_int = _checked(int, False, "must be a non-negative integer")
_positive_float = _checked(float, True, "must be a positive number")
_non_negative_float = _checked(float, False, "must be a non-negative number")

PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
NonNegativeInt = Annotated[int, BeforeValidator(_non_negative_int)]
PositiveFloat = Annotated[float, BeforeValidator(_positive_float)]
Fraction = Annotated[float, BeforeValidator(_fraction)]
DecayFraction = Annotated[float, BeforeValidator(_decay_fraction)]


class StrictModel(BaseModel):
    """Refuses unknown keys, naming the closest valid one (typos should not be silent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"must be a mapping with keys {', '.join(cls.model_fields)}")
        for key in data:
            if key not in cls.model_fields:
                close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else (f"valid keys: {', '.join(cls.model_fields)}")
                )
                raise ValueError(f"unknown key '{key}', {hint}")
        return data


# ---------------------------------------------------------------------------------------------
# The spec's sections.


class DataSpec(StrictModel):
    """Where the text comes from. Every trial of a grid reads the same token cache."""

    source: Literal["stdlib", "files", "huggingface"] = "stdlib"
    path: str | None = None  # glob of text files, for source: files ('**' recurses)
    dataset: str | None = None  # Hugging Face dataset name, for source: huggingface
    config: str | None = None  # its configuration name, if it has several
    split: str = "train"
    text_field: str = "text"
    val_fraction: Fraction = 0.02  # share of documents held out for validation

    @model_validator(mode="after")
    def _source_needs_its_field(self) -> DataSpec:
        if self.source == "files" and not self.path:
            raise ValueError("source 'files' needs 'path', a glob such as 'corpus/**/*.txt'")
        if self.source == "huggingface" and not self.dataset:
            raise ValueError("source 'huggingface' needs 'dataset', a dataset name")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be strictly between 0 and 1")
        return self


class SizeSpec(StrictModel):
    """One model size: an explicit shape, or a target non-embedding parameter count."""

    n_layer: PositiveInt | None = None
    d_model: PositiveInt | None = None
    n_head: PositiveInt | None = None
    params: PositiveFloat | None = None
    lr: PositiveFloat | None = None  # this size's peak learning rate, instead of train.lr

    @model_validator(mode="after")
    def _shape_or_target(self) -> SizeSpec:
        if self.params is not None:
            if self.shape != (None, None, None):
                raise ValueError("give either 'params' or 'n_layer, d_model, n_head', not both")
        elif self.n_layer is None or self.d_model is None or self.n_head is None:
            raise ValueError("needs 'n_layer', 'd_model' and 'n_head' (or a target 'params')")
        elif self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        return self

    @property
    def shape(self) -> tuple[Any, Any, Any]:
        """(n_layer, d_model, n_head): all three for an explicit shape, none for a target."""
        return (self.n_layer, self.d_model, self.n_head)


def _attention(text: str) -> str:
    """Checked (the ValueError names the accepted forms) and spelled one way, so that
    `sliding_window:0256` is the same trial as `sliding_window:256`."""
    return attention_name(parse_attention(text))


class ModelSpec(StrictModel):
    sizes: list[SizeSpec] = Field(min_length=1)
    # `dense` or `sliding_window:W` (each token attends to itself and the W-1 before it).
    attention: list[Annotated[str, AfterValidator(_attention)]] = ["dense"]
    # The aspect-ratio rule for target sizes: d_model ≈ aspect_ratio × n_layer (Kaplan et al.
    # find loss flat for d_model/n_layer between about 20 and 200), heads of head_dim.
    aspect_ratio: PositiveFloat = 64.0
    head_dim: PositiveInt = 64
    # `mup`: µP (Tensor Programs V), under which the best LR holds across widths; it equals
    # `standard` at d_model = base_width (scaling/config.py has its multipliers).
    parametrization: Literal["standard", "mup"] = "standard"
    base_width: PositiveInt | None = None
    # µP's attention scale is sqrt(base_head_dim)/head_dim. Default: the sizes' shared
    # head_dim (a family that adds heads), or base_width / their shared n_head (wider heads).
    base_head_dim: PositiveInt | None = None

    @model_validator(mode="after")
    def _base_width_with_mup(self) -> ModelSpec:
        if self.parametrization == "mup" and self.base_width is None:
            raise ValueError("parametrization 'mup' needs 'base_width', the d_model it tunes at")
        if self.parametrization == "standard":
            given = [k for k in ("base_width", "base_head_dim") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given[0]} applies to parametrization 'mup' only")
        return self

    @model_validator(mode="before")
    @classmethod
    def _attention_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("attention"), str):
            data = {**data, "attention": [data["attention"]]}
        return data


class GridSpec(StrictModel):
    seq_len: list[PositiveInt] = Field(min_length=1)
    tokens: list[PositiveFloat] | None = None
    tokens_per_param: list[PositiveFloat] | None = None
    compute: list[PositiveFloat] | None = None  # FLOP budgets (IsoFLOP grid)
    seeds: list[NonNegativeInt] = [0]
    # A learning-rate axis: peak LRs, or multiples of each size's (train.lr or its own lr).
    lr: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None
    lr_multipliers: Annotated[list[PositiveFloat], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_budget_axis(self) -> GridSpec:
        given = [n for n in ("tokens", "tokens_per_param", "compute") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'tokens', 'tokens_per_param' or 'compute'"
                + (f", got {' and '.join(given)}" if given else "")
            )
        if self.lr and self.lr_multipliers:
            raise ValueError("give 'lr' or 'lr_multipliers', not both")
        for axis in ("lr", "lr_multipliers"):
            values = getattr(self, axis) or []
            if len(set(values)) < len(values):
                raise ValueError(f"{axis} repeats {next(v for v in values if values.count(v) > 1)}")
        return self

    @property
    def lr_axis(self) -> list[float] | None:
        return self.lr or self.lr_multipliers


class TrainSpec(StrictModel):
    tokens_per_step: PositiveInt = 16384  # constant across sequence lengths
    # Sequences per forward pass on each worker; default: the worker's whole share of the batch.
    micro_batch_size: PositiveInt | None = None
    lr: PositiveFloat = 3e-3
    warmup_tokens: NonNegativeInt = 0
    min_lr_ratio: Fraction = 0.1
    # `wsd`: one constant-LR trunk per size and a cooldown branch per budget (scaling/schedule.py)
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay_fraction: DecayFraction = 0.2  # wsd: the cooldown's share of each budget
    decay_shape: Literal["1-sqrt", "linear"] = "1-sqrt"  # wsd: the cooldown's shape
    weight_decay: Annotated[float, BeforeValidator(_non_negative_float)] = 0.1
    beta1: Fraction = 0.9
    beta2: Fraction = 0.95
    grad_clip: PositiveFloat = 1.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # torch.compile: `auto` compiles on CUDA only (on CPUs it measured no faster; README).
    compile: Literal["auto"] | bool = "auto"
    eval_interval_tokens: PositiveInt = 262144
    eval_tokens: PositiveInt = 65536
    log_interval_steps: PositiveInt = 5

    @model_validator(mode="after")
    def _decay_needs_wsd(self) -> TrainSpec:
        # By value, not by the keys given: a trial's config travels as a full dump.
        fields = type(self).model_fields
        changed = [k for k in COOLDOWN_PARAMS if getattr(self, k) != fields[k].default]
        if changed and self.schedule != "wsd":
            raise ValueError(f"{changed[0]} applies to schedule 'wsd' only; add 'schedule: wsd'")
        return self

    def identity(self) -> dict[str, Any]:
        """What makes two trials' training the same, for their trial ids: the cosine
        default's trials keep the ids they had before schedules could be chosen."""
        values = self.model_dump(mode="json")
        if self.schedule == "cosine":
            for key in SCHEDULE_PARAMS:
                values.pop(key)
        return values


class ResourcesSpec(StrictModel):
    """Per trial; with workers_per_trial > 1, cpus and gpus are per worker (data parallel)."""

    cpus_per_trial: PositiveFloat = 1
    gpus_per_trial: Annotated[float, BeforeValidator(_non_negative_float)] = 0
    workers_per_trial: PositiveInt = 1
    max_concurrent: PositiveInt | None = None

    @model_validator(mode="after")
    def _whole_gpus_for_several_workers(self) -> ResourcesSpec:
        if self.workers_per_trial > 1 and self.gpus_per_trial not in (0, 1):
            raise ValueError("with workers_per_trial > 1, gpus_per_trial must be 0 or 1 per worker")
        return self


class SearchSpec(StrictModel):
    """How the grid is searched. `stop_hopeless`: a trial whose validation loss, once past
    `grace_fraction` of its budget, is worse by more than `margin` (relative) than the best of
    its cell (the same point at the other LRs) at the same tokens is stopped; STOPPED runs are
    never fitted. Early rankings between LRs can cross later, hence a generous grace."""

    stop_hopeless: bool = False
    grace_fraction: Annotated[float, BeforeValidator(_fraction)] = 0.3
    margin: PositiveFloat = 0.05

    @model_validator(mode="after")
    def _grace_of_at_least_30_percent(self) -> SearchSpec:
        if not 0.3 <= self.grace_fraction < 1:
            raise ValueError("grace_fraction must be at least 0.3 and below 1")
        return self


class TrackingSpec(StrictModel):
    experiment: str | None = None


class Spec(StrictModel):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
    data: DataSpec = DataSpec()
    model: ModelSpec
    grid: GridSpec
    train: TrainSpec = TrainSpec()
    resources: ResourcesSpec = ResourcesSpec()
    search: SearchSpec = SearchSpec()
    tracking: TrackingSpec = TrackingSpec()

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name


# ---------------------------------------------------------------------------------------------
# Trials: one per point of sizes × attention × seq_len × budget × seed.


class TrialSpec(StrictModel):
    """Everything one training run needs; JSON-able so it can travel to a Ray worker.

    A `trial` trains its budget from scratch. Under `train.schedule: wsd` the grid is trunks
    and branches instead: a `trunk` trains at the peak LR (after warm-up) to its last
    `branch_points` entry and saves a checkpoint at each; a `branch` is a grid point, started
    from its trunk's checkpoint at `branch_at` tokens, that cools down to its budget."""

    name: str
    trial_id: str
    experiment: str
    n_layer: int
    d_model: int
    n_head: int
    seq_len: int
    tokens: int
    seed: int
    attention: str
    params: int
    params_total: int
    flops_per_token: int
    flops: float
    data: DataSpec
    train: TrainSpec
    resources: ResourcesSpec
    parametrization: Literal["standard", "mup"] = "standard"
    base_width: int | None = None  # µP's base width
    base_head_dim: int | None = None  # µP: the base model's head width (attention scale)
    kind: Literal["trial", "trunk", "branch"] = "trial"
    branch_at: int = 0  # a branch: the tokens where it leaves its trunk (0: from scratch)
    trunk: str | None = None  # a branch: its trunk's name
    trunk_id: str | None = None  # a branch: its trunk's trial_id
    branch_points: list[int] = []  # a trunk: the tokens where its branches leave it

    @property
    def trained_tokens(self) -> int:
        """The tokens this run trains itself: a branch's trunk trained the rest."""
        return self.tokens - self.branch_at

    @property
    def trained_flops(self) -> float:
        return float(self.flops_per_token * self.trained_tokens)

    @property
    def decay_steps(self) -> int:
        return schedule.cooldown_steps(self.steps, self.train.decay_fraction)

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps that must end a Lightning epoch, for a checkpoint there: a trunk's branch
        points, and a branch's own (where its trunk's validation left off)."""
        points = self.branch_points if self.kind == TRUNK else [self.branch_at]
        return [p // self.train.tokens_per_step for p in points if p]

    def lr_factor(self, step: int) -> float:
        """The learning rate at optimizer `step` (from 0), as a factor of `train.lr`."""
        train = self.train
        if self.kind == TRUNK:
            return schedule.warmup(step, self.warmup_steps)
        if train.schedule == "wsd":
            return schedule.wsd(
                step,
                self.warmup_steps,
                self.steps,
                self.decay_steps,
                train.min_lr_ratio,
                train.decay_shape,
            )
        return schedule.cosine(step, self.warmup_steps, self.steps, train.min_lr_ratio)

    @property
    def gpt_config(self) -> GPTConfig:
        return GPTConfig(
            self.n_layer,
            self.d_model,
            self.n_head,
            self.seq_len,
            window=parse_attention(self.attention),
            parametrization=self.parametrization,
            base_width=self.base_width,
            base_head_dim=self.base_head_dim,
        )

    @property
    def steps(self) -> int:
        return self.tokens // self.train.tokens_per_step

    @property
    def cell(self) -> str:
        """The grid point apart from its learning rate: the trials one LR sweep compares."""
        return str(dataclasses.replace(TrialName.parse(self.name), lr=None))

    @property
    def warmup_steps(self) -> int:
        steps = self.train.warmup_tokens // self.train.tokens_per_step
        # A trunk and its branches must warm up alike, whatever their lengths.
        return steps if self.train.schedule == "wsd" else min(self.steps, steps)

    @property
    def batch_size(self) -> int:
        return self.train.tokens_per_step // self.seq_len

    @property
    def micro_batch_size(self) -> int:
        return self.train.micro_batch_size or self.batch_size // self.resources.workers_per_trial

    @property
    def accumulate_grad_batches(self) -> int:
        return self.batch_size // self.resources.workers_per_trial // self.micro_batch_size


def shape_for_params(target: float, aspect_ratio: float, head_dim: int) -> GPTConfig:
    """The aspect-ratio rule: for each depth L, width d = aspect_ratio·L rounded to a multiple
    of head_dim; keep the (L, d) whose non-embedding count is closest to the target in log."""
    configs = []
    for n_layer in range(1, 129):
        d_model = max(head_dim, round(aspect_ratio * n_layer / head_dim) * head_dim)
        configs.append(GPTConfig(n_layer, d_model, d_model // head_dim, seq_len=1))
    return min(configs, key=lambda config: abs(math.log(config.params / target)))


def _sizes(model: ModelSpec) -> list[tuple[int, int, int]]:
    """Each size's shape: as given, or by the aspect-ratio rule for a target count."""
    shapes = []
    for size in model.sizes:
        shape = size.shape
        if size.params is not None:
            c = shape_for_params(size.params, model.aspect_ratio, model.head_dim)
            shape = (c.n_layer, c.d_model, c.n_head)
        shapes.append(shape)
    return shapes


def _base_head_dim(model: ModelSpec, shapes: list[tuple[int, int, int]], source: str) -> int | None:
    """µP's base head width: given, else the one the sizes' family implies: the aspect-ratio
    rule's head_dim for target sizes (it adds heads); for shapes sharing n_head (wider heads,
    and so any single width) base_width / n_head; for shapes sharing head_dim, that."""
    if model.parametrization != "mup" or model.base_head_dim:
        return model.base_head_dim
    if all(size.params is not None for size in model.sizes):
        return model.head_dim
    head_dims = {d // h for _, d, h in shapes}
    heads = {h for _, _, h in shapes}
    base_width = model.base_width or 0
    if len(heads) == 1:
        n_head = heads.pop()
        if base_width % n_head == 0:
            return base_width // n_head
        if len(head_dims) > 1:
            raise SpecError(
                f"{source}: model.base_head_dim: base_width {base_width} is not a multiple of the "
                f"sizes' n_head {n_head}, so the base model's head width is not whole; give it"
            )
    if len(head_dims) == 1:  # more heads as the model widens: the head stays the same
        return head_dims.pop()
    raise SpecError(
        f"{source}: model.base_head_dim: the sizes share neither n_head nor head_dim, so µP's "
        "attention scale needs the head width of the model at base_width; give base_head_dim"
    )


def _learning_rates(spec: Spec, source: str) -> list[list[tuple[float, str | None]]]:
    """Per size, the peak LRs it trains at, each with its label for trial names (None
    without an LR axis): the size's own lr or train.lr, or the grid's LR axis."""
    grid = spec.grid
    per_size = []
    for i, size in enumerate(spec.model.sizes):
        own = size.lr or spec.train.lr
        if grid.lr:
            lrs = grid.lr
        elif grid.lr_multipliers:
            lrs = [own * m for m in grid.lr_multipliers]
        else:
            lrs = [own]
        labels = [lr_label(lr) for lr in lrs]
        twins = [label for label in labels if labels.count(label) > 1]
        if grid.lr_axis and twins:
            axis = "grid.lr" if grid.lr else "grid.lr_multipliers"
            raise SpecError(
                f"{source}: {axis}: two LRs of model.sizes[{i}] round to the same name, "
                f"lr{twins[0]}; make them differ in their first 3 significant figures"
            )
        per_size.append([(lr, label if grid.lr_axis else None) for lr, label in zip(lrs, labels)])
    return per_size


def expand(spec: Spec, source: str = "spec") -> list[TrialSpec]:
    """The spec's trials, in a stable order; refuses grids whose points cannot be trained."""
    grid, train = spec.grid, spec.train
    # The one budget axis the spec gives (GridSpec checks there is exactly one).
    kind = next(k for k in ("tokens", "tokens_per_param", "compute") if getattr(grid, k))
    budgets: list[float] = getattr(grid, kind)

    _check_lr_axis(spec, source)
    for i, T in enumerate(grid.seq_len):
        if train.tokens_per_step % T:
            raise SpecError(
                f"{source}: grid.seq_len[{i}]: {T} does not divide train.tokens_per_step "
                f"{train.tokens_per_step}, so the batch would not be a whole number of sequences"
            )
        batch = train.tokens_per_step // T
        workers = spec.resources.workers_per_trial
        if batch % workers:
            raise SpecError(
                f"{source}: resources.workers_per_trial: {workers} workers cannot share the batch "
                f"of {batch} sequences at seq_len {T} equally"
            )
        if train.micro_batch_size and (batch // workers) % train.micro_batch_size:
            raise SpecError(
                f"{source}: train.micro_batch_size: {train.micro_batch_size} does not divide the "
                f"batch of {batch // workers} sequences"
                + (f" per worker ({workers} workers)" if workers > 1 else "")
                + f" at seq_len {T}"
            )
        if train.eval_tokens % T:
            raise SpecError(
                f"{source}: train.eval_tokens: {train.eval_tokens} is not a multiple of "
                f"seq_len {T}; every trial must be evaluated on the same tokens"
            )

    trials = []
    several_budgets = len(budgets) > 1
    model = spec.model
    shapes = _sizes(model)
    mup = {"parametrization": model.parametrization, "base_width": model.base_width,
           "base_head_dim": _base_head_dim(model, shapes, source)}  # fmt: skip
    points = [
        (shape, *point)
        for shape, lrs in zip(shapes, _learning_rates(spec, source))
        for point in itertools.product(model.attention, grid.seq_len, budgets, lrs, grid.seeds)
    ]
    for (L, d, h), attention, T, budget, (lr, lr_name), seed in points:
        size_train = train.model_copy(update={"lr": lr})
        config = GPTConfig(L, d, h, T, window=parse_attention(attention))
        per_token = config.flops_per_token()
        wanted = {
            "tokens": budget,
            "tokens_per_param": budget * config.params,
            "compute": budget / per_token,
        }[kind]
        # Train whole optimizer steps: the schedule then ends exactly at the budget.
        steps = max(1, round(wanted / train.tokens_per_step))
        tokens = steps * train.tokens_per_step
        label = None
        if several_budgets:
            label = compute_budget(budget) if kind == "compute" else tokens_budget(tokens)
        name = str(TrialName(ModelName(L, d, config.window), T, seed, label, lr_name))
        resolved: dict[str, Any] = {
            "experiment": spec.experiment,
            "n_layer": L,
            "d_model": d,
            "n_head": h,
            "seq_len": T,
            "tokens": tokens,
            "seed": seed,
            "attention": attention,
            "data": spec.data.model_dump(mode="json"),
            "train": size_train.identity(),
            # µP enters the ids of its trials only: standard trials keep the ids they had.
            **(mup if model.parametrization == "mup" else {}),
        }
        trial_id = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]
        trials.append(
            TrialSpec(
                name=name,
                trial_id=trial_id,
                params=config.params,
                params_total=config.params_total,
                flops_per_token=per_token,
                flops=float(per_token * tokens),
                resources=spec.resources,
                **{**resolved, **mup, "train": size_train},
            )
        )
    names = [t.name for t in trials]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"{source}: model.sizes: the grid repeats trial {duplicates[0]}")
    return trunks_and_branches(trials) if train.schedule == "wsd" else trials


def _check_lr_axis(spec: Spec, source: str) -> None:
    if spec.grid.lr:
        for i, size in enumerate(spec.model.sizes):
            if size.lr is not None:
                raise SpecError(
                    f"{source}: model.sizes[{i}].lr: conflicts with grid.lr; sweep around each "
                    "size's own lr with grid.lr_multipliers instead"
                )
    if spec.search.stop_hopeless and len(spec.grid.lr_axis or []) < 2:
        raise SpecError(
            f"{source}: search.stop_hopeless: compares a trial with the other learning rates of "
            "its cell; give grid.lr or grid.lr_multipliers two or more values"
        )


def cosine_twin(spec: Spec) -> Spec:
    """The same grid under the cosine schedule: every budget trained from scratch."""
    defaults = {k: TrainSpec.model_fields[k].default for k in COOLDOWN_PARAMS}
    train = spec.train.model_copy(update={"schedule": "cosine", **defaults})
    return spec.model_copy(update={"train": train})


def trunks_and_branches(trials: list[TrialSpec]) -> list[TrialSpec]:
    """A WSD grid: trials that differ only in their budget become branches of one trunk,
    which runs to the last branch point. Each trunk is listed before its branches."""
    groups: dict[str, list[TrialSpec]] = {}
    for trial in trials:
        groups.setdefault(_trunk_id(trial), []).append(trial)
    units = []
    for trunk_id, members in groups.items():
        branches = []
        for trial in members:
            branch_at = (trial.steps - trial.decay_steps) * trial.train.tokens_per_step
            branches.append(trial.model_copy(update={"kind": BRANCH, "branch_at": branch_at}))
        points = sorted({b.branch_at for b in branches if b.branch_at})
        if points:  # else every budget cools down from the first step: nothing to share
            first = members[0]
            name = dataclasses.replace(TrialName.parse(first.name), budget=TRUNK_LABEL)
            trunk = first.model_copy(
                update={
                    "kind": TRUNK,
                    "name": str(name),
                    "trial_id": trunk_id,
                    "tokens": points[-1],
                    "flops": float(first.flops_per_token * points[-1]),
                    "branch_points": points,
                }
            )
            units.append(trunk)
            branches = [
                b.model_copy(update={"trunk": trunk.name, "trunk_id": trunk_id})
                if b.branch_at
                else b
                for b in branches
            ]
        units.extend(branches)
    return units


def _trunk_id(trial: TrialSpec) -> str:
    """Everything but the budget and the cooldown: adding a budget to a grid, or changing
    its cooldown, keeps its trunks and their saved branch points."""
    identity = trial.model_dump(
        mode="json",
        include={"experiment", "n_layer", "d_model", "n_head", "seq_len", "seed", "attention",
                 "data", "train", "parametrization", "base_width", "base_head_dim"},
    )  # fmt: skip
    if identity["parametrization"] == "standard":  # as before µP: the trunks keep their ids
        del identity["parametrization"], identity["base_width"], identity["base_head_dim"]
    for key in COOLDOWN_PARAMS:  # its branches' business, not the trunk's
        identity["train"].pop(key)
    identity["kind"] = TRUNK
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading, with errors the user can act on.


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _message(error: Any) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = "must be " + message.removeprefix("Input should be ")
    elif error["type"] == "missing":
        return "is required"
    elif error["type"] == "too_short":
        return "must not be empty"
    elif error["type"] in ("list_type", "string_type"):
        message = "must be a " + ("list" if error["type"] == "list_type" else "string")
    if "input" in error and not isinstance(error["input"], dict) and "unknown key" not in message:
        message += f", got {error['input']!r}"
    return message


def parse(raw: Any, source: str = "spec") -> Spec:
    """Validate an already-loaded mapping; `source` names it in error messages."""
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise SpecError(f"{source}: {_location(error['loc'])}: {_message(error)}") from None


def load(path: str | Path) -> tuple[Spec, list[TrialSpec]]:
    """Read, validate and expand a spec file."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: cannot be read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}: {where}invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: (top level): must be a mapping with 'name', 'model' and 'grid'")
    spec = parse(raw, source)
    return spec, expand(spec, source)
