"""Checkpoint averaging, as in "Attention Is All You Need" (section 6.1: the base models average the last 5
checkpoints, written at 10-minute intervals; the big models the last 20).

The average of nearby points on the training trajectory usually scores a little better than any one of them.
Only model weights are averaged; the result is for evaluation and translation, not for resuming training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from tformer.checks import check_positive_int
from tformer.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tformer.training.rotation import numbered_checkpoints


def last_n_checkpoints(out_dir: str | Path, n: int) -> list[Path]:
    """The newest `n` numbered step-*.safetensors checkpoints in `out_dir`, oldest first (so the last is the newest)."""
    out_dir = Path(out_dir)
    check_positive_int("n", n)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"checkpoint directory {out_dir} does not exist or is not a directory")
    by_step = numbered_checkpoints(out_dir)
    if len(by_step) < n:
        raise ValueError(
            f"asked for the last {n} checkpoints but {out_dir} holds {len(by_step)} numbered ones "
            f"(step-*.safetensors); average fewer, or keep more while training (keep_last)"
        )
    return [by_step[step] for step in sorted(by_step)[-n:]]


def checkpoints_near_the_end(
    out_dir: str | Path, n: int, *, final_step: int, window: float
) -> dict[int, Path]:
    """step -> path of the newest `n` numbered checkpoints of a run that ended at `final_step`, less those
    written before its last `window` fraction of updates (the newest one always stays).

    The paper's "last 5" of a 100k-step run are all close to the final weights; on a short run the last 5 can
    reach back into the fast-changing early updates, which the window keeps out of the average.
    """
    check_positive_int("n", n)
    if not 0.0 < window <= 1.0:
        raise ValueError(f"window must be a fraction in (0, 1], got {window!r}")
    by_step = numbered_checkpoints(Path(out_dir))
    if not by_step:
        raise FileNotFoundError(f"{out_dir} holds no step-*.safetensors checkpoints to average")
    later = sorted(step for step in by_step if step > final_step)
    if later:
        raise ValueError(
            f"{out_dir} holds checkpoints from after this run's last update {final_step} (steps {later}): they "
            "belong to an earlier, longer run in the same directory; train into a fresh out_dir"
        )
    recent = sorted(by_step)[-n:]
    kept = [step for step in recent if step >= (1.0 - window) * final_step] or recent[-1:]
    return {step: by_step[step] for step in kept}


def average_checkpoints(paths: list[Path], *, output: Path) -> Path:
    """Write to `output` a checkpoint whose weights are the mean of those in `paths`; return `output`.

    All checkpoints must hold the same parameter names, shapes, dtypes and weight tying. Floating tensors are
    averaged in float64 and cast back to their dtype; integer and bool buffers (counters) are taken from the
    last checkpoint. The run config, task state and progress come from the last checkpoint, with
    progress["averaged_from"] = the file names; no optimizer, scheduler, scaler or RNG state is written.
    Do not name `output` step-*.safetensors in the same directory, or last_n_checkpoints will pick it up.
    """
    if isinstance(paths, (str, Path)):
        raise TypeError(f"paths must be a list of checkpoint paths, got the single path {str(paths)!r}")
    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint path, got an empty list")
    resolved = [path.resolve() for path in paths]
    duplicates = sorted(
        {str(path) for path, real in zip(paths, resolved, strict=True) if resolved.count(real) > 1}
    )
    if duplicates:
        raise ValueError(f"checkpoints listed more than once would be over-weighted: {duplicates}")
    last = load_checkpoint(paths[-1])
    tied_groups = _tied_groups(last.model_state)
    # One float64 running sum per floating tensor (one per tie group); the other checkpoints are read one at
    # a time, so memory holds two checkpoints and the sums however many are averaged (the paper's big model
    # averages 20).
    sums = {
        group[0]: last.model_state[group[0]].to(torch.float64, copy=True)
        for group in tied_groups
        if last.model_state[group[0]].is_floating_point()
    }
    for path in paths[:-1]:
        ckpt = load_checkpoint(path)
        _check_same_layout(ckpt, last, tied_groups)
        for name, total in sums.items():
            total += ckpt.model_state[name]
    means = {name: (total / len(paths)).to(last.model_state[name].dtype) for name, total in sums.items()}
    averaged: dict[str, Tensor] = {}
    for group in tied_groups:
        value = means.get(group[0], last.model_state[group[0]])  # integer buffers: the last one's
        for name in group:  # the same tensor object under each tied name, so the tie is saved as such
            averaged[name] = value
    progress = {**last.progress, "averaged_from": [path.name for path in paths]}
    return save_checkpoint(
        output,
        model=_module_holding(averaged),
        progress=progress,
        run_config=last.run_config,
        task_state=last.task_state,
    )


def _tied_groups(state: dict[str, Tensor]) -> list[list[str]]:
    """Names grouped by tensor object, in state order: load_checkpoint gives tied weights one shared tensor."""
    groups: dict[int, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def _check_same_layout(ckpt: Checkpoint, last: Checkpoint, tied_groups: list[list[str]]) -> None:
    """ValueError naming `ckpt`'s file and the first difference from the last checkpoint."""
    where = f"{ckpt.path} does not match the last checkpoint {last.path}"
    extra = [name for name in ckpt.model_state if name not in last.model_state]
    missing = [name for name in last.model_state if name not in ckpt.model_state]
    if missing:
        raise ValueError(f"{where}: it lacks {missing[0]!r} ({len(missing)} names missing)")
    if extra:
        raise ValueError(f"{where}: it has {extra[0]!r}, which the last one lacks ({len(extra)} extra names)")
    for name, tensor in last.model_state.items():
        other = ckpt.model_state[name]
        if other.shape != tensor.shape or other.dtype != tensor.dtype:
            raise ValueError(
                f"{where}: {name!r} is {tuple(other.shape)} {other.dtype} there, "
                f"{tuple(tensor.shape)} {tensor.dtype} in the last one"
            )
    for group in tied_groups:
        for name in group[1:]:
            if ckpt.model_state[name] is not ckpt.model_state[group[0]]:
                raise ValueError(f"{where}: {name!r} is tied to {group[0]!r} in the last one, not there")
    if len(_tied_groups(ckpt.model_state)) != len(tied_groups):
        raise ValueError(f"{where}: it ties weights that the last one keeps separate")


def _module_holding(state: dict[str, Tensor]) -> nn.Module:
    """A module whose state_dict() is `state` (dotted names become submodules), for save_checkpoint."""
    modules = {"": nn.Module()}  # dotted prefix -> module

    def module_at(prefix: str) -> nn.Module:
        if prefix not in modules:
            parent, _, child = prefix.rpartition(".")
            modules[prefix] = nn.Module()
            module_at(parent).add_module(child, modules[prefix])
        return modules[prefix]

    for name, tensor in state.items():
        prefix, _, leaf = name.rpartition(".")
        module_at(prefix).register_buffer(leaf, tensor)
    assert modules[""].state_dict().keys() == state.keys()
    return modules[""]
