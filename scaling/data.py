"""Byte-level data: corpora, the token cache, and the Lightning data module.

A token is a byte (0..255) or BOS (256), which starts every document. A corpus is a list of
documents; it is split into train and validation by document (a hash of the document's name,
so adding a file never moves another one across the split), tokenised once into two
memory-mapped uint16 files keyed by a fingerprint of the corpus, and shared by every trial.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset, Subset

from scaling.config import BOS
from scaling.hardware import cache_dir
from scaling.spec import DataSpec, Spec, SpecError

TOKEN_DTYPE = np.uint16


# ---------------------------------------------------------------------------------------------
# Corpora: each yields (document name, bytes) in a deterministic order.


def _stdlib_files() -> list[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root).as_posix()
        if relative.split("/")[0] in {"site-packages", "dist-packages"}:
            continue
        files.append((relative, path))
    return sorted(files)


def _glob_files(pattern: str) -> list[tuple[str, Path]]:
    paths = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    return [(p, Path(p)) for p in paths if Path(p).is_file()]


@dataclass(frozen=True)
class Corpus:
    """A source of documents and the fingerprint that names its token cache."""

    spec: DataSpec

    def files(self) -> list[tuple[str, Path]]:
        if self.spec.source == "stdlib":
            return _stdlib_files()
        files = _glob_files(self.spec.path or "")  # DataSpec gives source 'files' a path
        if not files:
            raise SpecError(f"data.path: no files match '{self.spec.path}'")
        return files

    def fingerprint(self) -> str:
        """Changes whenever the documents could have: names, sizes and modification times
        of files; the dataset's own fingerprint for Hugging Face."""
        h = hashlib.sha256()
        h.update(json.dumps(self.spec.model_dump(mode="json"), sort_keys=True).encode())
        if self.spec.source == "huggingface":
            h.update(self._hf_dataset._fingerprint.encode())
        else:
            if self.spec.source == "stdlib":
                h.update(sys.version.encode())
            for name, path in self.files():
                stat = path.stat()
                h.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return h.hexdigest()[:20]

    def documents(self) -> Iterator[tuple[str, bytes]]:
        if self.spec.source == "huggingface":
            dataset = self._hf_dataset
            for i, row in enumerate(dataset):
                yield f"{i}", str(row[self.spec.text_field]).encode("utf-8")
        else:
            for name, path in self.files():
                yield name, path.read_bytes()

    def __len__(self) -> int:
        if self.spec.source == "huggingface":
            return len(self._hf_dataset)
        return len(self.files())

    @cached_property
    def _hf_dataset(self):
        try:
            import datasets  # type: ignore[import-not-found]  # optional, heavy: only when asked
        except ImportError:
            raise SpecError(
                "data.source: 'huggingface' needs the datasets package: pip install datasets"
            ) from None
        try:
            dataset = datasets.load_dataset(
                self.spec.dataset, self.spec.config, split=self.spec.split
            )
        except Exception as exc:  # offline, unknown name, missing split: all end here
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise SpecError(
                f"data.dataset: cannot load '{self.spec.dataset}' (offline or not found?): "
                f"{first_line}"
            ) from None
        if self.spec.text_field not in dataset.column_names:
            raise SpecError(
                f"data.text_field: '{self.spec.text_field}' is not a column of "
                f"'{self.spec.dataset}' (columns: {', '.join(dataset.column_names)})"
            )
        return dataset


def is_validation(document_name: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(document_name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


# ---------------------------------------------------------------------------------------------
# The token cache.


@dataclass(frozen=True)
class TokenCache:
    directory: Path

    @property
    def train_path(self) -> Path:
        return self.directory / "train.bin"

    @property
    def val_path(self) -> Path:
        return self.directory / "val.bin"

    def train(self) -> np.memmap:
        return np.memmap(self.train_path, dtype=TOKEN_DTYPE, mode="r")

    def val(self) -> np.memmap:
        return np.memmap(self.val_path, dtype=TOKEN_DTYPE, mode="r")

    def meta(self) -> dict:
        return json.loads((self.directory / "meta.json").read_text())


def prepare(spec: DataSpec, root: Path | None = None, progress: bool = True) -> TokenCache:
    """The corpus's token cache, built on first use. Safe to call from many processes at once:
    each builds in a private folder and the first to rename it into place wins."""
    corpus = Corpus(spec)
    root = root or cache_dir() / "tokens"
    cache = TokenCache(root / corpus.fingerprint())
    if (cache.directory / "meta.json").exists():
        return cache
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        meta = _tokenize(corpus, building, progress)
        if meta["val_tokens"] == 0 or meta["train_tokens"] == 0:
            side = "validation" if meta["val_tokens"] == 0 else "training"
            raise SpecError(
                f"data: the split by document left no {side} documents among "
                f"{meta['documents']}; add documents or change data.val_fraction"
            )
        (building / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(building, cache.directory)
        except OSError:
            if not (cache.directory / "meta.json").exists():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return cache


def prepare_for(spec: Spec, source: str) -> TokenCache:
    """The spec's token cache, built once before a grid starts (its trials then find it),
    and checked to hold the validation tokens every trial is evaluated on."""
    try:
        cache = prepare(spec.data)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    available = cache.meta()["val_tokens"] - 1
    if spec.train.eval_tokens > available:
        raise SpecError(
            f"{source}: train.eval_tokens: {spec.train.eval_tokens} is more than the "
            f"{available} validation tokens of the corpus; lower it or raise data.val_fraction"
        )
    return cache


def _tokenize(corpus: Corpus, out: Path, progress: bool) -> dict:
    counts = {"train": 0, "val": 0}
    documents = {"train": 0, "val": 0}
    with (
        open(out / "train.bin", "wb") as train,
        open(out / "val.bin", "wb") as val,
        Progress(disable=not progress, transient=True) as bar,
    ):
        task = bar.add_task("tokenising corpus", total=len(corpus))
        for name, data in corpus.documents():
            split = "val" if is_validation(name, corpus.spec.val_fraction) else "train"
            tokens = np.empty(len(data) + 1, dtype=TOKEN_DTYPE)
            tokens[0] = BOS
            tokens[1:] = np.frombuffer(data, dtype=np.uint8)
            (val if split == "val" else train).write(tokens.tobytes())
            counts[split] += len(tokens)
            documents[split] += 1
            bar.advance(task)
    return {
        "source": corpus.spec.model_dump(mode="json"),
        "documents": documents["train"] + documents["val"],
        "train_documents": documents["train"],
        "val_documents": documents["val"],
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
    }


# ---------------------------------------------------------------------------------------------
# Datasets and the data module.


class RandomWindows(Dataset):
    """Item i is micro-batch i of steps `first_step`, `first_step + 1`, ... Each optimizer
    step's `batch_size` windows are drawn from a generator seeded by (seed, step); data-parallel
    rank r of `world_size` takes the r-th equal share and cuts it into micro-batches. What a
    step sees therefore depends neither on how it is split across workers or for memory, nor
    on where a resumed trial picks up."""

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        batch_size: int,
        micro_batch_size: int,
        steps: int,
        seed: int,
        first_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(tokens) <= seq_len + 1:
            raise ValueError(f"{len(tokens)} training tokens cannot fill a window of {seq_len}")
        self.tokens, self.seq_len, self.seed = tokens, seq_len, seed
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.share = batch_size // world_size
        self.offset = rank * self.share
        self.accumulate = self.share // micro_batch_size
        self.steps, self.first_step = steps, first_step

    def __len__(self) -> int:
        return self.steps * self.accumulate

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        step, part = divmod(index, self.accumulate)
        rng = np.random.default_rng((self.seed, self.first_step + step))
        starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.batch_size)
        first = self.offset + part * self.micro_batch_size
        starts = starts[first : first + self.micro_batch_size]
        windows = self.tokens[starts[:, None] + np.arange(self.seq_len + 1)].astype(np.int64)
        windows = torch.from_numpy(windows)
        return windows[:, :-1], windows[:, 1:]


class ValidationWindows(Dataset):
    """The first `eval_tokens` predicted tokens of the validation stream, cut into contiguous
    windows: the same tokens for every trial of a grid, whatever its seq_len. Data-parallel
    rank r of `world_size` evaluates windows r, r + world_size, ...; the losses are summed."""

    def __init__(
        self, tokens: np.ndarray, seq_len: int, eval_tokens: int, rank: int = 0, world_size: int = 1
    ):
        if len(tokens) < eval_tokens + 1:
            raise SpecError(
                f"train.eval_tokens: {eval_tokens} is more than the {len(tokens) - 1} "
                "validation tokens the corpus has; lower it or raise data.val_fraction"
            )
        self.tokens, self.seq_len = tokens, seq_len
        self.windows = range(rank, eval_tokens // seq_len, world_size)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.windows[index] * self.seq_len
        window = torch.from_numpy(self.tokens[start : start + self.seq_len + 1].astype(np.int64))
        return window[:-1], window[1:]


class ByteDataModule(L.LightningDataModule):
    """One Lightning epoch ends at every evaluation interval (`steps_per_epoch` optimizer
    steps), at each of `checkpoint_steps` and at the last step: the validation loss and the
    resume checkpoint then fall on epoch ends, which Lightning resumes from exactly. The
    training loader is rebuilt each epoch to start at the step the trainer is at, so a run
    resumed from another run's checkpoint (a WSD branch from its trunk) picks up there."""

    def __init__(
        self,
        cache: TokenCache,
        seq_len: int,
        batch_size: int,
        micro_batch_size: int,
        steps: int,
        steps_per_epoch: int,
        eval_tokens: int,
        seed: int,
        checkpoint_steps: Sequence[int] = (),
    ):
        super().__init__()
        self.cache, self.seq_len, self.seed = cache, seq_len, seed
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.steps, self.eval_tokens = steps, eval_tokens
        self.epoch_ends = sorted(
            {*range(steps_per_epoch, steps, steps_per_epoch), *checkpoint_steps, steps} - {0}
        )

    def _epoch_end_after(self, step: int) -> int:
        return next((end for end in self.epoch_ends if end > step), self.steps)

    def _rank(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        first_step = self.trainer.global_step if self.trainer else 0
        rank, world_size = self._rank()
        steps = max(1, self._epoch_end_after(first_step) - first_step)
        restored = self._restored_micro_batches()
        windows: Dataset = RandomWindows(
            self.cache.train(),
            self.seq_len,
            self.batch_size,
            self.micro_batch_size,
            steps=max(steps, restored),
            seed=self.seed,
            first_step=first_step,
            rank=rank,
            world_size=world_size,
        )
        if restored:
            windows = Subset(windows, range(restored))  # never drawn: see below
        return DataLoader(windows, batch_size=None, shuffle=False)

    def _restored_micro_batches(self) -> int:
        """Resumed from a checkpoint saved at an epoch's end, Lightning first closes that
        epoch, counting the micro-batches it had: a loader of exactly that many trains
        nothing, and the next epoch's loader starts at `global_step`. One of another length
        would end the restored epoch early, mid-accumulation. (Counted in micro-batches: the
        run that saved may have split its steps differently.) 0 when not resuming."""
        loop = self.trainer.fit_loop.epoch_loop if self.trainer else None
        if loop is None or not (loop.restarting and loop.batch_progress.is_last_batch):
            return 0
        return loop.batch_progress.current.ready

    def val_dataloader(self) -> DataLoader:
        rank, world_size = self._rank()
        windows = ValidationWindows(
            self.cache.val(), self.seq_len, self.eval_tokens, rank, world_size
        )
        return DataLoader(windows, batch_size=self.micro_batch_size, shuffle=False)
