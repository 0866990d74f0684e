"""The one seeding helper: seed every generator a run draws from, and capture/restore their states for resuming.

Covered: Python's `random`, NumPy's legacy global generator (`np.random.*`, not `np.random.default_rng()`
instances), torch's CPU generator and, when CUDA is available, each CUDA device's generator.
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import torch

_MAX_SEED = 2**32 - 1  # numpy's legacy seeding accepts 32-bit seeds only
_CUDA_PREFIX = "torch_cuda_"


def seed_everything(seed: int) -> None:
    """Seed python random, numpy and torch (CPU and all CUDA devices) with `seed`."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**32 - 1], got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device (lazily when CUDA is not yet initialised)


def capture_rng_state() -> dict[str, object]:
    """Snapshot of every generator's state.

    Keys and types: "python" (a JSON list) and "numpy" (a JSON dict) are JSON-serialisable; "torch_cpu" and
    "torch_cuda_<i>" (one per CUDA device, only when CUDA is available) are uint8 CPU tensors.
    """
    version, internal, gauss_next = random.getstate()
    bit_generator, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, object] = {
        "python": [version, list(internal), gauss_next],
        "numpy": {
            "bit_generator": bit_generator,
            "key": key.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            state[f"{_CUDA_PREFIX}{index}"] = cuda_state.cpu()
    return state


def restore_rng_state(state: dict[str, object]) -> None:
    """Put every generator back to a capture_rng_state() snapshot (also one that went through JSON).

    CUDA states for devices this machine lacks (or all of them, without CUDA) are skipped with a warning.
    """
    required = {"python", "numpy", "torch_cpu"}
    missing = required - state.keys()
    unknown = {k for k in state.keys() - required if not k.startswith(_CUDA_PREFIX)}
    if missing or unknown:
        raise ValueError(
            f"not an rng state from capture_rng_state(): missing keys {sorted(missing)}, unknown keys "
            f"{sorted(unknown)}; expected {sorted(required)} plus optional '{_CUDA_PREFIX}<i>'"
        )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["bit_generator"],
            np.asarray(np_state["key"], dtype=np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(_as_byte_tensor(state["torch_cpu"], "torch_cpu"))
    cuda_keys = sorted(
        (k for k in state if k.startswith(_CUDA_PREFIX)), key=lambda k: int(k[len(_CUDA_PREFIX) :])
    )
    if cuda_keys and not torch.cuda.is_available():
        warnings.warn(
            f"rng state holds {len(cuda_keys)} CUDA generator state(s) but CUDA is unavailable; skipped them",
            stacklevel=2,
        )
        return
    for key in cuda_keys:
        index = int(key[len(_CUDA_PREFIX) :])
        if index >= torch.cuda.device_count():
            warnings.warn(
                f"rng state {key!r} is for a CUDA device this machine lacks; skipped it", stacklevel=2
            )
            continue
        torch.cuda.set_rng_state(_as_byte_tensor(state[key], key), device=index)


def _as_byte_tensor(value: object, key: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8:
        raise TypeError(f"rng state {key!r} must be a torch.uint8 tensor, got {type(value).__name__}")
    return value.cpu()
