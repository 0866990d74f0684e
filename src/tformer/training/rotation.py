"""Checkpoint files in a run directory: their names, and the rotation of the numbered ones.

A run keeps ``last.safetensors`` (what ``--resume`` continues from), ``best.safetensors`` (the best evaluation
so far) and the newest ``keep_last`` numbered ``step-NNNNNN.safetensors``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LAST_CHECKPOINT = "last.safetensors"
BEST_CHECKPOINT = "best.safetensors"
_NUMBERED = re.compile(r"step-(\d+)\.safetensors")


def numbered_checkpoint(out_dir: Path, step: int) -> Path:
    """The path of the numbered checkpoint of `step`: out_dir/step-NNNNNN.safetensors."""
    return out_dir / f"step-{step:06d}.safetensors"


def numbered_checkpoints(out_dir: Path) -> dict[int, Path]:
    """step -> path of every step-N.safetensors in `out_dir`; other names (last, best, *.tmp) are ignored."""
    steps = {}
    for path in out_dir.glob("step-*.safetensors"):
        match = _NUMBERED.fullmatch(path.name)
        if match:
            steps[int(match.group(1))] = path
    return steps


def link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` an atomic replica of `src`: a hard link where the file system allows, else a copy."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        with src.open("rb") as source, tmp.open("wb") as target:
            while chunk := source.read(1 << 24):
                target.write(chunk)
            target.flush()
            os.fsync(target.fileno())
    os.replace(tmp, dst)


def prune_numbered(out_dir: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` step-NNNNNN.safetensors."""
    assert keep_last >= 1, "slicing with [:-0] would keep everything"  # keep_last=0 writes no numbered files
    steps = numbered_checkpoints(out_dir)
    for step in sorted(steps)[:-keep_last]:
        steps[step].unlink(missing_ok=True)
