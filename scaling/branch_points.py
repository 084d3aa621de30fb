"""Where a WSD trunk leaves the checkpoints its branches start from.

Under the grid's `--storage`, so that every node of a cluster reaches them (any filesystem
or URI pyarrow opens, as Ray's own storage), and so that a rerun finds what an earlier run
saved: a trunk never retrains a segment it has saved, and a branch can start from any node.

    {storage}/branch_points/{experiment}/{trunk_id}/{tokens}/last.ckpt, resume.json

A branch point is a trunk's resume point (weights, optimizer state, step; the data position
follows from the step). `resume.json` is written last, whole: a branch point exists once it
does.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs  # type: ignore[import-untyped]  # ships no stubs

from scaling.trial import RESUME_FILE, RESUME_META


def _root(storage: str) -> tuple[pafs.FileSystem, str]:
    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), str(Path(storage).resolve())


def _folder(root: str, experiment: str, trunk_id: str) -> str:
    return f"{root}/branch_points/{experiment}/{trunk_id}"


def save(resume_point: Path, storage: str, experiment: str, trunk_id: str, tokens: int) -> None:
    """Copy a trunk's resume point at `tokens` to where its branches will look."""
    fs, root = _root(storage)
    folder = f"{_folder(root, experiment, trunk_id)}/{tokens}"
    if fs.get_file_info(f"{folder}/{RESUME_META}").type != pafs.FileType.NotFound:
        return  # a trunk retraining through a saved point: the same, and a branch may read it
    fs.create_dir(folder)
    # The meta last, under its own name only once whole: it marks the point complete.
    for name, target in ((RESUME_FILE, RESUME_FILE), (RESUME_META, f".{RESUME_META}.partial")):
        pafs.copy_files(
            str(resume_point / name),
            f"{folder}/{target}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    fs.move(f"{folder}/.{RESUME_META}.partial", f"{folder}/{RESUME_META}")


def saved(storage: str, experiment: str, trunk_id: str) -> set[int]:
    """The tokens of a trunk's complete branch points."""
    fs, root = _root(storage)
    selector = pafs.FileSelector(
        _folder(root, experiment, trunk_id), allow_not_found=True, recursive=True
    )
    return {
        int(info.path.rstrip("/").split("/")[-2])
        for info in fs.get_file_info(selector)
        if info.base_name == RESUME_META
    }


def fetch(storage: str, experiment: str, trunk_id: str, tokens: int, into: Path) -> Path:
    """A copy of the branch point in the local folder `into`, to resume from."""
    fs, root = _root(storage)
    into.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        f"{_folder(root, experiment, trunk_id)}/{tokens}",
        str(into),
        source_filesystem=fs,
        destination_filesystem=pafs.LocalFileSystem(),
    )
    return into
