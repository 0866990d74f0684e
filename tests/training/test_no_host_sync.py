"""A training step never makes the host wait for the device: only log, evaluation and checkpoint steps read back.

CI has no GPU, so the check runs on the CPU, watching for the operations that would wait on a GPU: reading a
value (`.item()`, `bool()`, `float()`, `.tolist()`, `.numpy()`) and operations whose output size depends on
the values (`nonzero`, boolean indexing, `masked_select`, `unique`). On a GPU, the last test also turns on
torch.cuda.set_sync_debug_mode("error"), which catches every wait, a blocking copy to the device included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tformer.cli.main import main
from tformer.data.catalog import data_dir
from tformer.training import trainer as trainer_module
from tformer.training.losses import LossOutput
from tformer.training.trainer import Trainer

from .toy_task import ToyBatch, ToyModel, ToyTask, toy_config

aten = torch.ops.aten
# aten._local_scalar_dense is what .item(), bool(), int() and float() of a tensor dispatch to
_SYNCING_OPS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_consecutive.default,
    aten.unique_dim.default,
    aten.repeat_interleave.Tensor,
    aten.equal.default,
}


class HostSyncWatch(TorchDispatchMode):
    """Records every operation that would wait for a GPU while `armed`; the trainer's reading points disarm it."""

    def __init__(self) -> None:
        super().__init__()
        self._armed = False
        self.cuda_sync_errors = False  # while armed, also make CUDA raise on any synchronisation
        self.seen_armed: list[str] = []
        self.seen_disarmed = 0

    @property
    def armed(self) -> bool:
        return self._armed

    @armed.setter
    def armed(self, value: bool) -> None:
        self._armed = value
        if self.cuda_sync_errors:
            torch.cuda.set_sync_debug_mode("error" if value else "default")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNCING_OPS or (func is aten.index.Tensor and _has_bool_index(args)):
            self._saw(str(func))
        return func(*args, **kwargs)

    def _saw(self, what: str) -> None:
        if self.armed:
            self.seen_armed.append(what)
        else:
            self.seen_disarmed += 1

    @contextlib.contextmanager
    def disarmed(self) -> Iterator[None]:
        armed, self.armed = self.armed, False
        try:
            yield
        finally:
            self.armed = armed


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(index is not None and index.dtype == torch.bool for index in indices)


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostSyncWatch]:
    """Arms a HostSyncWatch for Trainer._loop, except inside the reading points and the data pipeline (which
    works on host tensors, before the batch moves to the device)."""
    watch = HostSyncWatch()

    def disarm(method: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            with watch.disarmed():
                return method(*args, **kwargs)

        return wrapped

    def arm(method: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            watch.armed = True
            try:
                return method(*args, **kwargs)
            finally:
                watch.armed = False

        return wrapped

    def host_batches(*args, **kwargs) -> Iterator:
        stream = original_micro_batches(*args, **kwargs)
        while True:
            with watch.disarmed():
                item = next(stream)
            yield item

    for name in ("_settle", "_evaluate", "_save_periodic"):
        monkeypatch.setattr(Trainer, name, disarm(getattr(Trainer, name)))
    monkeypatch.setattr(Trainer, "_loop", arm(Trainer._loop))
    original_micro_batches = trainer_module.micro_batches
    monkeypatch.setattr(trainer_module, "micro_batches", host_batches)
    for name in ("tolist", "numpy"):  # these read host memory directly, without a dispatched operation
        original = getattr(torch.Tensor, name)

        def reading(self, *args, _original=original, _name=name, **kwargs):
            watch._saw(f"Tensor.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, reading)
    with watch:
        yield watch


# Between the reading points at steps 4 and 8, steps 1-3 and 5-7 must not read anything.
_SPARSE_READS = {"max_steps": 8, "log_every": 4, "eval_every": 8, "checkpoint_every": 8}


@pytest.mark.parametrize("clip_norm", [1.0, None])
@pytest.mark.parametrize("nonfinite", ["stop", "skip"])
def test_toy_training_steps_read_nothing_back(
    watch: HostSyncWatch, tmp_path: Path, clip_norm: float | None, nonfinite: str
) -> None:
    torch.manual_seed(0)
    config = toy_config(**_SPARSE_READS, clip_norm=clip_norm, nonfinite=nonfinite, grad_accum_steps=2)
    Trainer(ToyModel(), ToyTask(), config, out_dir=tmp_path, run_config={"task": "toy"}).fit()
    assert watch.seen_armed == []
    assert watch.seen_disarmed > 0  # the reading points did read: the watch sees what it should


class _ReadingTask(ToyTask):
    """A task whose loss reads its value: the watch must catch it."""

    def loss(self, model: torch.nn.Module, batch: ToyBatch) -> LossOutput:
        out = super().loss(model, batch)
        if out.loss_sum > 0:  # bool() of a tensor
            return out
        return out


def test_the_watch_catches_a_read_inside_a_step(watch: HostSyncWatch, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = toy_config(**_SPARSE_READS)
    Trainer(ToyModel(), _ReadingTask(), config, out_dir=tmp_path, run_config={"task": "toy"}).fit()
    assert watch.seen_armed == ["aten._local_scalar_dense.default"] * 8


_SPARSE_READS_CLI = [f"--train.{key}={value}" for key, value in _SPARSE_READS.items()]


def test_translation_training_steps_read_nothing_back(watch: HostSyncWatch, tmp_path: Path) -> None:
    # the Transformer encoder-decoder on the synthetic dates data, with dropout, clipping and label smoothing
    assert main(["train", "tiny_dates", f"--out_dir={tmp_path}", *_SPARSE_READS_CLI]) == 0
    assert watch.seen_armed == []
    assert watch.seen_disarmed > 0


@pytest.mark.skipif(
    not (data_dir() / "tinyshakespeare" / "input.txt.gz").is_file(),
    reason="the shared Tiny Shakespeare copy is not present",
)
def test_language_model_training_steps_read_nothing_back(watch: HostSyncWatch, tmp_path: Path) -> None:
    assert main(["train", "tiny_shakespeare", f"--out_dir={tmp_path}", *_SPARSE_READS_CLI]) == 0
    assert watch.seen_armed == []
    assert watch.seen_disarmed > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_training_steps_never_wait_for_the_gpu(watch: HostSyncWatch, tmp_path: Path) -> None:
    watch.cuda_sync_errors = True
    cuda = ["--train.device=cuda", "--train.precision=bf16", "--train.compile=false"]
    assert main(["train", "tiny_dates", f"--out_dir={tmp_path}", *_SPARSE_READS_CLI, *cuda]) == 0
    assert watch.seen_armed == []
