"""Run ONE trial, start to end, in this process. Knows nothing of Ray or MLflow.

    result = trial.run(trial_spec, report=print)

`report(metrics, checkpoint)` receives the metrics as dicts while the trial runs, each with
`step` = training tokens seen; whoever called decides where they go (MLflow on the driver, a
Tune report). With `resume_points=True`, each validation also passes a folder holding a
Lightning checkpoint (`last.ckpt`) that `run(..., resume_from=...)` continues from exactly.
A loss that stops being finite ends the trial as DIVERGED, running out of memory as OOM; any
other error propagates to the caller, who may retry it.
"""

from __future__ import annotations

import ctypes
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import psutil
import torch

from scaling import hardware, inference
from scaling.contract import (
    CHECKPOINT,
    COMPILE,
    COMPILE_S,
    DEVICE,
    LR,
    MFU,
    PEAK_MEM_BYTES,
    PRECISION,
    STEP,
    STEP_TIME_S,
    STEP_TIME_SPREAD,
    TOKENS_PER_S,
    TRAIN_LOSS,
    VAL_LOSS,
    WALL_S,
    Status,
    steady_step_time,
)
from scaling.data import ByteDataModule, prepare
from scaling.module import Diverged, GPTModule
from scaling.spec import TrialSpec

Report = Callable[[dict, "Path | None"], None]
RESUME_FILE = "last.ckpt"
RESUME_META = "resume.json"  # {"tokens": seen at the resume point, "val_loss": there}


@dataclass
class TrialResult:
    status: Status
    metrics: dict = field(default_factory=dict)  # the final ones: step time, memory, wall time
    val_loss: float | None = None
    params: dict = field(default_factory=dict)  # what the device resolved: precision, device
    # Wall-clock (unix) times of the first step's start and the last step's end: what a grid
    # spends around them is orchestration overhead.
    timeline: dict = field(default_factory=dict)
    error: str | None = None
    checkpoint: Path | None = None


class MetricsReporter(L.Callback):
    """Times optimizer steps (validation excluded), checks the loss is finite, and reports."""

    def __init__(
        self,
        trial: TrialSpec,
        report: Report,
        peak_flops: float,
        resume_dir: Path | None,
        compiled: bool = False,
    ):
        self.trial, self.report, self.peak_flops = trial, report, peak_flops
        # A compiled model's first step is mostly compilation: timed on its own as compile_s.
        self.compile_pending = compiled
        self.compile_s: float | None = None
        self.resume_dir = resume_dir  # where to save a resume point at each validation
        self.step_times: list[float] = []
        self.last_eval_step = -1
        self._loss_sum = torch.zeros(())
        self._micro_batches = 0
        self._window_seconds = 0.0
        self._window_steps = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._step_start = time.perf_counter()
        self._steps_done = trainer.global_step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if not hasattr(self, "first_step_at"):
            self.first_step_at = time.time()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        # Lightning hands over the loss already divided by the accumulation count.
        loss = outputs["loss"].detach() * trainer.accumulate_grad_batches
        self._loss_sum = self._loss_sum.to(loss.device) + loss
        self._micro_batches += 1
        if trainer.global_step == self._steps_done:
            return  # gradient accumulation: the optimizer step has not happened yet
        now = time.perf_counter()
        if self.compile_pending:
            self.compile_pending = False
            self.compile_s = now - self._step_start
            self._steps_done, self._step_start = trainer.global_step, now
            return
        self.step_times.append(now - self._step_start)
        self._window_seconds += now - self._step_start
        self._window_steps += 1
        self._steps_done = trainer.global_step
        self._step_start = now
        self.last_step_at = time.time()
        last = trainer.global_step >= self.trial.steps
        if self._window_steps and (
            trainer.global_step % self.trial.train.log_interval_steps == 0 or last
        ):
            self._report_training(trainer, trainer.global_step)

    def _report_training(self, trainer: L.Trainer, step: int) -> None:
        # The mean over data-parallel ranks: every rank then sees the same loss and stops (or
        # goes on) together, never leaving another waiting in a collective.
        local = self._loss_sum / self._micro_batches
        loss = trainer.strategy.reduce(local, reduce_op="mean").item()
        tokens = self._window_steps * self.trial.train.tokens_per_step
        tokens_per_s = tokens / self._window_seconds
        train = self.trial.train
        lr = train.lr * self.trial.lr_factor(step - 1)
        self._loss_sum, self._micro_batches = torch.zeros(()), 0
        self._window_seconds, self._window_steps = 0.0, 0
        if not torch.isfinite(torch.tensor(loss)):
            raise Diverged(f"training loss became {loss} at {step * train.tokens_per_step} tokens")
        self.report(
            {
                STEP: step * train.tokens_per_step,
                TRAIN_LOSS: loss,
                LR: lr,
                TOKENS_PER_S: tokens_per_s,
                MFU: tokens_per_s * self.trial.flops_per_token / self.peak_flops,
            },
            None,
        )

    def on_validation_start(self, trainer, module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        # Validation time is not training time: move the step timer past it.
        if hasattr(self, "_step_start"):
            self._step_start += time.perf_counter() - self._validation_start
        step = trainer.global_step
        if module.val_loss is None or step == self.last_eval_step:
            return
        tokens = step * self.trial.train.tokens_per_step
        if not torch.isfinite(torch.tensor(module.val_loss)):
            raise Diverged(f"validation loss became {module.val_loss} at {tokens} tokens")
        self.last_eval_step = step
        resume_point = None
        if self.resume_dir is not None and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.resume_dir / RESUME_FILE)  # every rank; rank 0 writes
            if trainer.is_global_zero:
                meta = {"tokens": tokens, VAL_LOSS: module.val_loss}
                (self.resume_dir / RESUME_META).write_text(json.dumps(meta))
                resume_point = self.resume_dir
        self.report({STEP: tokens, VAL_LOSS: module.val_loss}, resume_point)


class PeakMemory:
    """Peak memory of the trial: the CUDA allocator's peak, or this process's peak RSS
    (Linux lets a process reset its high-water mark, so earlier trials do not count)."""

    def __init__(self, device: str):
        self.device = device
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return
        # Hand the heap an earlier trial of this worker freed back to the system first, so
        # the high-water mark starts from what this process really holds now.
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_bytes(self) -> int:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated()
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return psutil.Process().memory_info().rss


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def _quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    # One process, memory-mapped data: loader workers would only add start-up time.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
    # Its test (global_step a multiple of the restored epoch's length) misfires here: every
    # checkpoint is taken at an epoch's end, and each epoch's loader starts at global_step.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before")


def run(
    trial: TrialSpec,
    report: Report | None = None,
    out_dir: str | Path = ".",
    resume_points: bool = False,
    resume_from: str | Path | None = None,
    distributed: dict | None = None,
) -> TrialResult:
    """Train `trial` to its token budget; the checkpoint lands in `out_dir` (CHECKPOINT).

    `distributed` runs it as one data-parallel worker of several: Trainer options (strategy,
    plugins, devices) and `prepare`, a function the Trainer goes through before fitting."""
    if report is None:
        report = lambda metrics, checkpoint: None  # noqa: E731
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_dir = out_dir / "resume" if resume_points else None
    _quiet_lightning()
    started = time.perf_counter()
    device = hardware.device_type()
    precision = hardware.resolve_precision(trial.train.precision)
    memory = PeakMemory(device)
    # MFU is against the peak of every worker's device together.
    peak = hardware.peak_flops(precision) * trial.resources.workers_per_trial
    compiled = hardware.resolve_compile(trial.train.compile)
    reporter = MetricsReporter(trial, report, peak, resume_dir, compiled)
    try:
        result = _fit(trial, reporter, precision, out_dir, resume_from, distributed or {})
    except Diverged as exc:
        return TrialResult(Status.DIVERGED, error=str(exc))
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        first_line = str(exc).strip().splitlines()[0]
        where = (
            f"{trial.gpt_config.name} (params {trial.params:,}) at seq_len {trial.seq_len}, "
            f"micro-batch {trial.micro_batch_size}"
        )
        return TrialResult(Status.OOM, error=f"out of memory for {where}: {first_line}")
    steady = steady_step_time(reporter.step_times)  # none when it resumed at its last step
    if reporter.compile_s is not None:
        result.metrics[COMPILE_S] = reporter.compile_s
    result.params[COMPILE] = compiled
    if steady is not None:
        result.metrics[STEP_TIME_S], result.metrics[STEP_TIME_SPREAD] = steady
    result.metrics.update(
        {PEAK_MEM_BYTES: memory.peak_bytes(), WALL_S: time.perf_counter() - started}
    )
    if result.checkpoint is not None:  # timed after wall_s: it is not part of training
        result.metrics.update(_decode_latencies(result.checkpoint))
    result.timeline = {
        "first_step_at": getattr(reporter, "first_step_at", None),
        "last_step_at": getattr(reporter, "last_step_at", None),
    }
    return result


def _fit(
    trial: TrialSpec,
    reporter: MetricsReporter,
    precision: str,
    out_dir: Path,
    resume_from: str | Path | None,
    distributed: dict,
) -> TrialResult:
    train = trial.train
    cache = prepare(trial.data, progress=False)
    L.seed_everything(trial.seed, verbose=False)
    module = GPTModule(trial)
    if hardware.resolve_compile(train.compile):
        module.model.compile()  # in place: the checkpoint's keys stay those of the plain model
    data = ByteDataModule(
        cache,
        trial.seq_len,
        trial.batch_size,
        trial.micro_batch_size,
        trial.steps,
        steps_per_epoch=max(1, train.eval_interval_tokens // train.tokens_per_step),
        eval_tokens=train.eval_tokens,
        seed=trial.seed,
        checkpoint_steps=trial.checkpoint_steps,
    )
    options = {key: value for key, value in distributed.items() if key != "prepare"}
    trainer = L.Trainer(
        **{"accelerator": "auto", "devices": 1, **options},
        # Each rank draws its own share of every step's windows (RandomWindows).
        use_distributed_sampler=False,
        precision=hardware.lightning_precision(precision),
        max_steps=trial.steps,
        max_epochs=-1,  # epochs are evaluation intervals; the step budget ends the run
        reload_dataloaders_every_n_epochs=1,
        accumulate_grad_batches=trial.accumulate_grad_batches,
        gradient_clip_val=train.grad_clip,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[reporter],
        default_root_dir=out_dir,
    )
    if "prepare" in distributed:
        trainer = distributed["prepare"](trainer)
    trainer.fit(module, datamodule=data, ckpt_path=resume_from, weights_only=False)
    if reporter.last_eval_step != trainer.global_step:
        trainer.validate(module, datamodule=data, verbose=False)
    checkpoint = out_dir / CHECKPOINT if trainer.is_global_zero else None
    if checkpoint:
        torch.save(
            {
                "config": trial.gpt_config.to_dict(),
                "trial": trial.model_dump(mode="json"),
                "tokens_seen": trainer.global_step * train.tokens_per_step,
                "state_dict": module.model.state_dict(),
            },
            checkpoint,
        )
    return TrialResult(
        Status.FINISHED,
        val_loss=module.val_loss,
        params={PRECISION: precision, DEVICE: hardware.device_type()},
        checkpoint=checkpoint,
    )


def _decode_latencies(checkpoint: Path) -> dict[str, float]:
    """What generating a token costs the trained model at each context length, for the
    report's inference section: from the saved checkpoint (uncompiled, so no recompiling per
    length), on this trial's device (Lightning hands the module back on the CPU)."""
    model, _ = inference.load_model(checkpoint, hardware.device_type())
    return inference.decode_latencies(model)
