from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from tformer.seeding import capture_rng_state, restore_rng_state, seed_everything


def _draws() -> tuple:
    """One draw from every covered generator, including the cached-gaussian paths of python and numpy."""
    return (
        random.random(),
        random.gauss(0.0, 1.0),
        np.random.rand(3).tolist(),
        np.random.randn(1).tolist(),  # leaves a cached gaussian behind
        torch.rand(4).tolist(),
        torch.nn.functional.dropout(torch.ones(8), p=0.5).tolist(),
    )


def test_seed_everything_repeats_the_same_draws() -> None:
    seed_everything(1234)
    first = _draws()
    seed_everything(1234)
    assert _draws() == first
    seed_everything(1235)
    assert _draws() != first


def test_restore_reproduces_the_draws_after_capture() -> None:
    seed_everything(7)
    _draws()  # move every generator off its seeded state, leaving cached gaussians set
    state = capture_rng_state()
    expected = [_draws(), _draws()]
    restore_rng_state(state)
    assert [_draws(), _draws()] == expected


def test_state_survives_json_for_the_json_part_and_is_uint8_tensors_otherwise() -> None:
    seed_everything(3)
    random.gauss(0.0, 1.0)  # gauss_next is now cached
    state = capture_rng_state()
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    assert "torch_cpu" in tensors
    assert all(t.dtype == torch.uint8 and t.device.type == "cpu" for t in tensors.values())
    plain = {k: v for k, v in state.items() if k not in tensors}
    assert set(plain) == {"python", "numpy"}
    # what a checkpoint does: JSON for the plain part, tensors copied separately
    revived = json.loads(json.dumps(plain)) | {k: t.clone() for k, t in tensors.items()}
    expected = _draws()
    restore_rng_state(revived)
    assert _draws() == expected


def test_restore_rejects_foreign_state() -> None:
    state = capture_rng_state()
    with pytest.raises(ValueError, match="missing keys \\['numpy'\\]"):
        restore_rng_state({k: v for k, v in state.items() if k != "numpy"})
    with pytest.raises(ValueError, match="unknown keys \\['jax'\\]"):
        restore_rng_state(state | {"jax": 0})
    with pytest.raises(TypeError, match="torch_cpu"):
        restore_rng_state(state | {"torch_cpu": state["torch_cpu"].tolist()})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
def test_cuda_state_without_cuda_warns_and_restores_the_rest() -> None:
    state = capture_rng_state() | {"torch_cuda_0": torch.zeros(16, dtype=torch.uint8)}
    expected = _draws()
    with pytest.warns(UserWarning, match="CUDA is unavailable"):
        restore_rng_state(state)
    assert _draws() == expected


@pytest.mark.parametrize(
    ("seed", "error"), [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_seeds_raise(seed: object, error: type) -> None:
    with pytest.raises(error, match="seed"):
        seed_everything(seed)  # type: ignore[arg-type]
