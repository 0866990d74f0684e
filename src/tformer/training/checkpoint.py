"""Checkpoints: one safetensors file per checkpoint, its string metadata holding the JSON part.

Everything a resumed run needs travels together: model weights, optimizer state (keyed by parameter name,
not by position), scheduler and grad-scaler state, progress counters, the resolved run config, the task's
state (its tokenizers, as JSON) and the RNG states. Tensors go into the safetensors body; everything else is
JSON in the header, where a tensor is replaced by {"__tensor__": "<its key in the body>"}. Loading uses only
safetensors and json, so opening a checkpoint never runs code from the file (no pickle). A checksum stored
with the file and the types of what it holds are checked on load (training/integrity.py): a damaged or
crafted file is a ValueError naming the problem, never silently other weights or a crash deeper down.

Parameter names are canonical: the `module.` (DDP) and `_orig_mod.` (torch.compile) path components are
dropped, so a checkpoint fits the bare model and any wrapping of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from tformer.training import integrity
from tformer.training.named_state import (
    canonical_name,
    load_optimizer_state_by_name,
    optimizer_state_by_name,
)

FORMAT_VERSION = 1
SUFFIX = ".safetensors"
_META_KEY = "tformer"  # header metadata entry with the JSON part
# The task state is a JSON string of its own, kept apart so it is not escaped into another JSON string. Files
# written before task states were generic hold the same thing (the tokenizer JSON) under the legacy key.
_TASK_STATE_KEY = "tformer.task_state"
_LEGACY_TASK_STATE_KEY = "tformer.tokenizer"
_TENSOR_REF = "__tensor__"
_SHOW = 5  # how many offending names an error message lists
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_PARTS = {"model", "optimizer", "scheduler", "scaler", "rng_state", "progress", "run_config"}
_OPTIONAL_PARTS = {"optimizer", "scheduler", "scaler", "rng_state"}  # None when not saved
_EXPECTED = f"expected a {SUFFIX} checkpoint written by tformer's save_checkpoint"


@dataclass
class Checkpoint:
    """What load_checkpoint() found; the *_state fields are None when that object was not saved."""

    model_state: dict[str, Tensor]
    optimizer_state: (
        dict[str, Any] | None
    )  # {"state": {param name: {...}}, "param_groups": [... "params": [names]]}
    scheduler_state: dict[str, Any] | None
    scaler_state: dict[str, Any] | None
    progress: dict[str, Any]
    run_config: dict[str, Any]
    task_state: (
        str | None
    )  # the task's own JSON (tasks/base.py); tokenizers for translation and language models
    rng_state: dict[str, Any] | None
    format_version: int
    path: Path | None = None  # the file it came from, for error messages


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: dict[str, Any],
    run_config: dict[str, Any],
    task_state: str | None = None,
    rng_state: dict[str, Any] | None = None,
) -> Path:
    """Write everything to `path` (a *.safetensors file) atomically and return the path.

    The file is first written to path.with_suffix(".tmp") in the same directory, fsynced, then renamed over
    `path`, so a crash at any moment leaves either the previous complete checkpoint or the new one. Missing
    parent directories are created. `scheduler` is anything with a JSON-serialisable state_dict().
    """
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"checkpoint path {path} must end in {SUFFIX}")
    parts = {
        "model": _canonical_model_state(model),
        "optimizer": None if optimizer is None else optimizer_state_by_name(optimizer, model),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng_state": rng_state,
        "progress": progress,
        "run_config": run_config,
    }
    tensors: dict[str, Tensor] = {}
    tree = {name: _split_tensors(value, name, tensors) for name, value in parts.items()}
    stored, aliases = _store_each_storage_once(tensors)
    header = {
        "format_version": FORMAT_VERSION,
        "tree": tree,
        "aliases": aliases,
        "checksum": integrity.CHECKSUM_KIND,
    }
    metadata = {"format": "pt", _META_KEY: json.dumps(header)}
    if task_state is not None:
        metadata[_TASK_STATE_KEY] = task_state
    metadata[integrity.CHECKSUM_KEY] = integrity.checksum(stored, metadata)
    _write_atomically(path, stored, metadata)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint(); never unpickles anything.

    Raises FileNotFoundError for a missing file and ValueError, naming the file and the problem, for anything
    else: not safetensors (a pickle, a truncated file), damaged (checksum), a newer format, a bad structure.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as error:  # safetensors raises its own error types for every kind of bad file
        raise ValueError(f"{path} is not a readable safetensors file ({error}); {_EXPECTED}") from error
    if _META_KEY not in metadata:
        raise ValueError(f"{path} is a safetensors file without tformer metadata; {_EXPECTED}")
    integrity.verify(path, metadata, tensors)  # first: a damaged header would mislead the checks below
    version, tree, aliases, declared = _parse_header(path, metadata)
    integrity.check_declared(path, metadata, declared=declared)
    for alias, stored_key in aliases.items():
        if stored_key not in tensors:
            raise ValueError(
                f"{path}: alias {alias!r} points at {stored_key!r}, which the file lacks; {_EXPECTED}"
            )
        tensors[alias] = tensors[stored_key]
    try:
        parts = _join_tensors(tree, tensors, path)
    except RecursionError:
        raise ValueError(f"{path}: the tformer metadata is nested too deeply; {_EXPECTED}") from None
    integrity.check_parts(path, parts, required=_PARTS, optional=_OPTIONAL_PARTS, expected=_EXPECTED)
    return Checkpoint(
        model_state={_current_name(name): tensor for name, tensor in parts["model"].items()},
        optimizer_state=_with_current_names(parts["optimizer"]),
        scheduler_state=parts["scheduler"],
        scaler_state=parts["scaler"],
        progress=parts["progress"],
        run_config=parts["run_config"],
        task_state=metadata.get(_TASK_STATE_KEY, metadata.get(_LEGACY_TASK_STATE_KEY)),
        rng_state=parts["rng_state"],
        format_version=version,
        path=path,
    )


# Parameters renamed since checkpoints were first written, as (old, new) parts of their names: files holding the
# old names load as if written today, weights and optimizer state alike.
_RENAMED_PARAMETERS = ((".feedforward.down.", ".feedforward.linear2."),)  # the gated FFN's output layer


def _current_name(name: str) -> str:
    for old, new in _RENAMED_PARAMETERS:
        name = name.replace(old, new)
    return name


def _with_current_names(optimizer_state: Any) -> Any:
    """The optimizer state by name with renamed parameters' names updated; anything malformed is left as it is
    for the loader that uses it to report."""
    try:
        state = {_current_name(name): value for name, value in optimizer_state["state"].items()}
        groups = [
            {**group, "params": [_current_name(n) for n in group["params"]]}
            for group in optimizer_state["param_groups"]
        ]
    except (TypeError, KeyError, AttributeError):
        return optimizer_state
    return {**optimizer_state, "state": state, "param_groups": groups}


def _parse_header(path: Path, metadata: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str], bool]:
    """(format version, tree, aliases, whether a checksum is declared) from the JSON metadata, types checked."""
    try:
        header = json.loads(metadata[_META_KEY])
        version, tree, aliases = header["format_version"], header["tree"], header["aliases"]
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as error:
        raise ValueError(f"{path} has damaged tformer metadata ({error!r}); {_EXPECTED}") from error
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path} has checkpoint format version {version!r}; this tformer reads versions 1 to "
            f"{FORMAT_VERSION}; upgrade tformer to load it"
        )
    kind = header.get("checksum")
    if kind not in (None, integrity.CHECKSUM_KIND):
        raise ValueError(
            f"{path} has a {kind!r} checksum; this tformer knows {integrity.CHECKSUM_KIND!r} only"
        )
    if (
        not isinstance(tree, dict)
        or not isinstance(aliases, dict)
        or not all(isinstance(key, str) for key in aliases.values())
    ):
        raise ValueError(f"{path}: the tformer metadata has a malformed tree or alias table; {_EXPECTED}")
    return version, tree, aliases, kind is not None


def load_model_weights(model: nn.Module, ckpt_or_path: Checkpoint | str | os.PathLike[str]) -> None:
    """Copy the checkpoint's weights into `model` (bare or wrapped); every name and shape must match."""
    ckpt = ckpt_or_path if isinstance(ckpt_or_path, Checkpoint) else load_checkpoint(ckpt_or_path)
    source = ckpt.path if ckpt.path is not None else "the checkpoint"
    target = model.state_dict()
    by_canonical = {canonical_name(name): name for name in target}
    missing = [name for name in by_canonical if name not in ckpt.model_state]
    unexpected = [name for name in ckpt.model_state if name not in by_canonical]
    mismatched = [
        f"{name} {tuple(ckpt.model_state[name].shape)} in file vs {tuple(target[actual].shape)} in model"
        for name, actual in by_canonical.items()
        if name in ckpt.model_state and ckpt.model_state[name].shape != target[actual].shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:_SHOW])}{', ...' if len(items) > _SHOW else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if items
    ]
    if problems:
        raise ValueError(f"weights in {source} do not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(
        {actual: ckpt.model_state[name] for name, actual in by_canonical.items()}, strict=True
    )


def restore_training_state(
    ckpt: Checkpoint,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Put model, optimizer, scheduler and scaler back where the checkpoint left them.

    RNG states are not touched here: pass ckpt.rng_state to tformer.seeding.restore_rng_state.
    """
    load_model_weights(model, ckpt)
    for name, target, state in (
        ("optimizer", optimizer, ckpt.optimizer_state),
        ("scheduler", scheduler, ckpt.scheduler_state),
    ):
        if target is not None and state is None:
            raise ValueError(f"{ckpt.path} holds no {name} state; pass {name}=None to restore without it")
    if optimizer is not None:
        load_optimizer_state_by_name(optimizer, model, ckpt.optimizer_state, ckpt.path)
    if scheduler is not None:
        scheduler.load_state_dict(ckpt.scheduler_state)
    # A disabled scaler saves {}: a scaler enabled now then starts from its defaults, as a new run would.
    if scaler is not None and ckpt.scaler_state:
        scaler.load_state_dict(ckpt.scaler_state)


def _canonical_model_state(model: nn.Module) -> dict[str, Tensor]:
    state: dict[str, Tensor] = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{type(model).__name__}.state_dict()[{name!r}] is a {type(value).__name__}, not a tensor"
            )
        canonical = canonical_name(name)
        if canonical in state:
            raise ValueError(
                f"two state entries of {type(model).__name__} share the canonical name {canonical!r}"
            )
        state[canonical] = value
    return state


def _split_tensors(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-ready copy of `value` with each tensor moved into `tensors` under its path and left as a reference."""
    if isinstance(value, Tensor):
        if path in tensors:
            raise ValueError(f"two checkpoint entries map to the tensor key {path!r}; rename one")
        tensors[path] = value
        return {_TENSOR_REF: path}
    if isinstance(value, dict):
        if _TENSOR_REF in value:
            raise ValueError(f"{path}: the key {_TENSOR_REF!r} is reserved in checkpoint dicts")
        bad_keys = [key for key in value if not isinstance(key, str)]
        if bad_keys:
            raise TypeError(f"{path}: checkpoint dict keys must be str, got {bad_keys[0]!r}")
        return {key: _split_tensors(item, f"{path}/{key}", tensors) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_tensors(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"{path}: a {type(value).__name__} cannot go into a checkpoint; use tensors, dicts with str keys, "
        "lists, str, int, float, bool or None"
    )


def _join_tensors(value: Any, tensors: dict[str, Tensor], source: Path) -> Any:
    """Inverse of _split_tensors."""
    if isinstance(value, dict):
        if set(value) == {_TENSOR_REF}:
            if not isinstance(value[_TENSOR_REF], str) or value[_TENSOR_REF] not in tensors:
                raise ValueError(
                    f"{source} refers to tensor {value[_TENSOR_REF]!r}, which it does not contain"
                )
            return tensors[value[_TENSOR_REF]]
        return {key: _join_tensors(item, tensors, source) for key, item in value.items()}
    if isinstance(value, list):
        return [_join_tensors(item, tensors, source) for item in value]
    return value


def _store_each_storage_once(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors safetensors accepts (CPU, contiguous, no shared memory) plus {alias key: stored key}.

    safetensors refuses tensors that share memory. An exact alias (a tied weight) is stored once and
    recorded; a partial overlap (a view into a bigger tensor) is copied, which costs space but loses nothing.
    """
    stored: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    first_key_of_view: dict[tuple, str] = {}
    seen_storages: set[tuple] = set()
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        view = (*storage, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if tensor.numel() > 0 and view in first_key_of_view:
            aliases[key] = first_key_of_view[view]
            continue
        if storage in seen_storages or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        else:
            seen_storages.add(storage)
        first_key_of_view[view] = key
        stored[key] = tensor.cpu()
    return stored, aliases


def _write_atomically(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb+") as file:  # save_file closes without fsync; make the bytes durable first
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # make the rename itself durable
    except BaseException as error:
        with contextlib.suppress(OSError):  # never let the clean-up hide the original error
            tmp.unlink(missing_ok=True)
        failure = _file_system_failure(error)
        if failure is not None:
            # OSError(errno, ...) keeps the subclass (PermissionError, ...) and names the target
            raise OSError(failure[0], f"could not write checkpoint {path}: {failure[1]}") from error
        raise


def _file_system_failure(error: BaseException) -> tuple[int | None, str] | None:
    """(errno, reason) when `error` is a file-system failure, else None. safetensors reports those as a
    SafetensorError whose text alone holds the errno ("I/O error: Permission denied (os error 13)")."""
    if isinstance(error, OSError):
        return error.errno, error.strerror or str(error)
    match = _OS_ERROR.search(str(error)) if isinstance(error, SafetensorError) else None
    if match is None:
        return None
    code = int(match.group(1))
    return code, os.strerror(code)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the data itself is already synced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
