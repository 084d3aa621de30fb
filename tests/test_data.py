"""Byte data: a deterministic split by document, a shared cache, the same validation tokens
for every trial, and seeded training windows."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from scaling.config import BOS
from scaling.data import ByteDataModule, Corpus, RandomWindows, is_validation, prepare
from scaling.spec import DataSpec, SpecError

pytestmark = pytest.mark.slow  # the standard library's corpus tokenised


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(40):
        (folder / f"doc{i:02d}.txt").write_text(f"document {i}\n" + "lorem ipsum " * (50 + i))
    return folder


def files_spec(folder, val_fraction=0.2) -> DataSpec:
    return DataSpec(source="files", path=str(folder / "*.txt"), val_fraction=val_fraction)


def decode(tokens: np.ndarray) -> list[bytes]:
    """Documents back from a token stream: BOS starts each."""
    starts = np.flatnonzero(tokens == BOS)
    ends = [*starts[1:], len(tokens)]
    return [tokens[s + 1 : e].astype(np.uint8).tobytes() for s, e in zip(starts, ends)]


def test_the_split_is_by_document_and_deterministic(corpus_dir, tmp_path):
    spec = files_spec(corpus_dir)
    cache = prepare(spec, root=tmp_path / "cache", progress=False)
    train_docs, val_docs = decode(cache.train()), decode(cache.val())
    assert len(train_docs) + len(val_docs) == 40
    assert len(val_docs) >= 1 and len(train_docs) >= 1
    # Whole documents on each side: nothing is cut at an offset.
    originals = {p.read_bytes() for p in corpus_dir.iterdir()}
    assert set(train_docs) | set(val_docs) == originals
    assert not set(train_docs) & set(val_docs)
    # A document's side depends on its name only, so it survives other files being added.
    for name, _ in Corpus(spec).files():
        assert is_validation(name, 0.2) == is_validation(name, 0.2)
    expected_val = sorted(n for n, _ in Corpus(spec).files() if is_validation(n, 0.2))
    assert cache.meta()["val_documents"] == len(expected_val)


def test_the_cache_is_built_once_and_follows_the_corpus(corpus_dir, tmp_path):
    spec = files_spec(corpus_dir)
    first = prepare(spec, root=tmp_path / "cache", progress=False)
    built_at = (first.directory / "meta.json").stat().st_mtime_ns
    again = prepare(spec, root=tmp_path / "cache", progress=False)
    assert again.directory == first.directory
    assert (again.directory / "meta.json").stat().st_mtime_ns == built_at

    changed = corpus_dir / "doc00.txt"
    changed.write_text("an edited document, longer than before " * 20)
    os.utime(changed, ns=(1, 2))  # a different modification time, whatever the clock says
    rebuilt = prepare(spec, root=tmp_path / "cache", progress=False)
    assert rebuilt.directory != first.directory


def test_the_stdlib_corpus_is_the_default_and_large():
    cache = prepare(DataSpec(), progress=False)
    meta = cache.meta()
    assert meta["documents"] > 500
    assert meta["train_tokens"] > 10_000_000
    assert meta["val_tokens"] > 100_000
    assert cache.train()[0] == BOS and cache.val()[0] == BOS
    assert cache.train().max() <= BOS


def test_every_trial_is_evaluated_on_the_same_tokens():
    cache = prepare(DataSpec(), progress=False)

    def validation_targets(seq_len: int, seed: int) -> torch.Tensor:
        module = ByteDataModule(
            cache,
            seq_len,
            batch_size=8,
            micro_batch_size=4,
            steps=1,
            steps_per_epoch=1,
            eval_tokens=4096,
            seed=seed,
        )
        return torch.cat([y.flatten() for _, y in module.val_dataloader()])

    reference = validation_targets(64, seed=0)
    assert reference.numel() == 4096
    for seq_len, seed in ((128, 1), (256, 7), (64, 3)):
        assert torch.equal(validation_targets(seq_len, seed), reference)


def test_training_windows_are_seeded_and_addressable_by_index():
    tokens = prepare(DataSpec(), progress=False).train()
    a = RandomWindows(tokens, seq_len=32, batch_size=8, micro_batch_size=8, steps=10, seed=0)
    b = RandomWindows(tokens, seq_len=32, batch_size=8, micro_batch_size=8, steps=10, seed=0)
    c = RandomWindows(tokens, seq_len=32, batch_size=8, micro_batch_size=8, steps=10, seed=1)
    x, y = a[3]
    assert x.shape == (8, 32) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    assert torch.equal(a[3][0], b[3][0])  # same seed, same batch, in any order of access
    assert not torch.equal(a[3][0], a[4][0])
    assert not torch.equal(a[3][0], c[3][0])
    # Split into micro-batches for memory, a step still sees the same windows.
    halves = RandomWindows(tokens, seq_len=32, batch_size=8, micro_batch_size=4, steps=10, seed=0)
    assert torch.equal(torch.cat([halves[6][0], halves[7][0]]), a[3][0])
    # A loader that starts at step 3 (a resumed trial) serves step 3 first.
    resumed = RandomWindows(
        tokens, seq_len=32, batch_size=8, micro_batch_size=8, steps=7, seed=0, first_step=3
    )
    assert torch.equal(resumed[0][0], a[3][0])


def test_bad_corpora_are_refused_with_the_field(tmp_path, corpus_dir):
    with pytest.raises(SpecError, match=r"^data.path: no files match"):
        prepare(DataSpec(source="files", path=str(tmp_path / "nothing*.txt")), root=tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "only.txt").write_text("a single document")
    with pytest.raises(SpecError, match=r"^data: the split by document left no"):
        prepare(files_spec(tmp_path / "one", val_fraction=0.5), root=tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").glob("*/meta.json"))  # nothing half-written left behind


def test_a_hugging_face_dataset_out_of_reach_gets_a_clear_error(tmp_path):
    spec = DataSpec(source="huggingface", dataset="no-such-owner/no-such-dataset")
    with pytest.raises(SpecError, match=r"^data\.(source|dataset): "):
        prepare(spec, root=tmp_path, progress=False)
