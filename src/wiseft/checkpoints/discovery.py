"""Finding checkpoints on disk and telling them apart.

- `find_checkpoints(run_dir)`: the `checkpoint-STEP` directories of a training run, by step, with one
  completeness rule for every caller (training resume, `wiseft trajectory`, the demo): a checkpoint is
  complete when it holds `config.json` and its weights (`model.safetensors` or a safetensors index).
  Writers of this project rename a checkpoint into place only when it is complete, but other trainers
  write in place, so an incomplete directory is either an error (`strict`) or skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from wiseft.errors import CheckpointError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def is_complete(directory: Path) -> bool:
    """config.json and the weights (a single safetensors file or a sharded index) are present."""
    return (directory / "config.json").is_file() and any((directory / f).is_file() for f in WEIGHT_FILES)


def find_checkpoints(run_dir: str | os.PathLike, *, strict: bool = True) -> dict[int, Path]:
    """`checkpoint-STEP` directories of `run_dir`, ordered by step.

    `strict`: a missing run directory, an incomplete checkpoint or none at all is a CheckpointError naming
    it (evaluating a run). Otherwise those give an empty result or are skipped (a trainer looking for a
    checkpoint to resume from).
    """
    run = Path(run_dir)
    if not run.is_dir():
        if strict:
            raise CheckpointError(f"training run {run} is not a directory")
        return {}
    found: dict[int, Path] = {}
    for entry in run.iterdir():
        m = CHECKPOINT_RE.match(entry.name)
        if not m or not entry.is_dir():
            continue
        if not is_complete(entry):
            if strict:
                raise CheckpointError(
                    f"{entry} lacks config.json or its safetensors weights; is this checkpoint complete? "
                    "Delete it or let its writer finish"
                )
            continue
        found[int(m.group(1))] = entry
    if strict and not found:
        raise CheckpointError(f"training run {run} holds no checkpoint-STEP directories")
    return dict(sorted(found.items()))
