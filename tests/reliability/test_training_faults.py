"""Faults during training: non-finite losses and gradients, out of memory, an unwritable or full output directory.

Each fault is injected at a known micro-batch of the toy task, so every message can be checked for the step, the
batch and the last good checkpoint, and every checkpoint left behind for being intact and unchanged.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from torch import nn

from tformer.cli.main import main
from tformer.training import checkpoint as checkpoint_module
from tformer.training import trainer as trainer_module
from tformer.training.checkpoint import load_checkpoint
from tformer.training.guards import MAX_CONSECUTIVE_SKIPS, NonFiniteLossError, TrainingOutOfMemoryError
from tformer.training.losses import LossOutput
from tformer.training.trainer import FitResult, TrainConfig, Trainer
from training.toy_task import ToyBatch, ToyModel, ToyTask, toy_config

LAST = "last.safetensors"


def _model() -> ToyModel:
    torch.manual_seed(0)
    return ToyModel()


def _fit(task: ToyTask, out_dir: Path, **overrides: object) -> FitResult:
    config = toy_config(**{"checkpoint_every": 1, "grad_accum_steps": 2, **overrides})
    return Trainer(_model(), task, config, out_dir=out_dir, run_config={"task": "toy"}).fit()


class _NaNGradient(torch.autograd.Function):
    """The identity forward, NaN backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.full_like(grad, float("nan"))


class FaultyTask(ToyTask):
    """Runs `faults[n]` on the n-th call of loss() (counting from 1); a fault may raise or change the output."""

    def __init__(self, faults: dict[int, Callable[[LossOutput], LossOutput]], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.faults = faults
        self.calls = 0

    def loss(self, model: nn.Module, batch: ToyBatch) -> LossOutput:
        self.calls += 1
        out = super().loss(model, batch)
        fault = self.faults.get(self.calls)
        return out if fault is None else fault(out)


def nan_loss(out: LossOutput) -> LossOutput:
    return LossOutput(out.loss_sum * float("nan"), out.n_items)


def inf_loss(out: LossOutput) -> LossOutput:
    return LossOutput(out.loss_sum + float("inf"), out.n_items)


def nan_gradient(out: LossOutput) -> LossOutput:
    return LossOutput(_NaNGradient.apply(out.loss_sum), out.n_items)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---------------------------------------------------------------------------------------------------------------
# Non-finite loss or gradients


@pytest.mark.parametrize(
    "fault, what", [(nan_loss, "non-finite loss (nan)"), (inf_loss, "non-finite loss (inf)")]
)
def test_nonfinite_loss_stops_naming_step_batch_and_the_unchanged_last_checkpoint(
    tmp_path: Path, fault: Callable, what: str
) -> None:
    # grad_accum 2: loss call 8 is the second micro-batch of update 4, batch index 7 of epoch 0
    with pytest.raises(NonFiniteLossError) as raised:
        _fit(FaultyTask({8: fault}), tmp_path / "faulty", max_steps=10)
    message = str(raised.value)
    assert f"{what} at step 4 (epoch 0, batch index 7, loss sum" in message
    assert f"the last good checkpoint is {tmp_path / 'faulty' / LAST} (step 3), unchanged" in message
    assert "train.nonfinite=skip" in message and "\n" not in message
    # the last checkpoint is exactly the one a clean 3-step run writes
    _fit(ToyTask(), tmp_path / "clean", max_steps=3)
    kept, clean = (load_checkpoint(tmp_path / d / LAST) for d in ("faulty", "clean"))
    for key in ("step", "epoch", "batch_in_epoch"):  # (the clean run evaluated its final step)
        assert kept.progress[key] == clean.progress[key]
    _assert_same_state(kept.model_state, clean.model_state)
    _assert_same_state(
        kept.optimizer_state["state"]["out.weight"], clean.optimizer_state["state"]["out.weight"]
    )


@pytest.mark.parametrize("clip_norm", [1.0, None])
def test_nonfinite_gradient_with_a_finite_loss_is_caught_before_the_update(
    tmp_path: Path, clip_norm: float | None
) -> None:
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite gradient norm \(nan\) at step 2 \(micro-batches from "
        r"epoch 0, batch index 2 to epoch 0, batch index 3\)",
    ):
        _fit(FaultyTask({3: nan_gradient}), tmp_path, max_steps=5, clip_norm=clip_norm)
    kept = load_checkpoint(tmp_path / LAST)
    assert kept.progress["step"] == 1
    assert all(torch.isfinite(t).all() for t in kept.model_state.values())


class _DropWindow(ToyTask):
    """The toy task without the micro-batches at `dropped` indices of epoch 0."""

    def __init__(self, dropped: set[int]) -> None:
        super().__init__()
        self.dropped = dropped

    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterator[ToyBatch]:
        for index, batch in enumerate(super().train_batches(epoch, rank=rank, world_size=world_size)):
            if epoch > 0 or index not in self.dropped:
                yield batch


@pytest.mark.parametrize("fault", [nan_loss, nan_gradient])
def test_skip_drops_exactly_that_update_and_counts_it(tmp_path: Path, fault: Callable) -> None:
    # loss call 7 is in update 4 (batch indices 6 and 7 of epoch 0)
    result = _fit(FaultyTask({7: fault}), tmp_path / "skip", max_steps=6, nonfinite="skip", keep_last=10)
    assert result.step == 6
    # a skipped update changes nothing: weights and optimizer state after step 4 are those after step 3
    at_3, at_4 = (load_checkpoint(tmp_path / "skip" / f"step-00000{s}.safetensors") for s in (3, 4))
    _assert_same_state(at_3.model_state, at_4.model_state)
    _assert_same_state(
        at_3.optimizer_state["state"]["out.weight"], at_4.optimizer_state["state"]["out.weight"]
    )
    assert (at_3.progress["skipped_steps"], at_4.progress["skipped_steps"]) == (0, 1)
    # ... and the run equals one that never saw that window (constant lr; AdamW does not count the skip)
    _fit(_DropWindow({6, 7}), tmp_path / "without", max_steps=5)
    _assert_same_state(
        load_checkpoint(tmp_path / "without" / LAST).model_state,
        load_checkpoint(tmp_path / "skip" / LAST).model_state,
    )
    records = [json.loads(line) for line in (tmp_path / "skip" / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "lr" in r]
    assert [r.get("skipped_steps", 0) for r in train] == [0, 0, 0, 1, 1, 1]
    # a NaN loss stays out of the logged mean: the interval of step 4 alone has no loss to show (null)
    no_loss = [r["loss"] is None for r in train]
    assert no_loss == [False, False, False, fault is nan_loss, False, False]


def test_a_fault_between_reading_points_is_reported_at_the_next_one_and_never_applied(tmp_path: Path) -> None:
    # The trainer reads the device's numbers only at log, evaluation and checkpoint steps (here 4 and 8): the
    # NaN of update 2 (loss call 4) is reported at step 4, before that step's checkpoint is written.
    sparse = {"max_steps": 8, "log_every": 4, "eval_every": 4, "checkpoint_every": 4}
    with pytest.raises(NonFiniteLossError) as raised:
        _fit(FaultyTask({4: nan_loss}), tmp_path / "stop", **sparse)
    assert "non-finite loss (nan) at step 2 (epoch 0, batch index 3, loss sum nan)" in str(raised.value)
    assert "no checkpoint has been written yet" in str(raised.value)
    assert not (tmp_path / "stop" / LAST).exists()
    # "skip": the update was dropped on the device, so the run equals one that never saw that window
    result = _fit(FaultyTask({4: nan_gradient}), tmp_path / "skip", nonfinite="skip", **sparse)
    assert result.step == 8
    _fit(_DropWindow({2, 3}), tmp_path / "without", **{**sparse, "max_steps": 7, "checkpoint_every": 7})
    _assert_same_state(
        load_checkpoint(tmp_path / "without" / LAST).model_state,
        load_checkpoint(tmp_path / "skip" / LAST).model_state,
    )
    records = [json.loads(line) for line in (tmp_path / "skip" / "log.jsonl").read_text().splitlines()]
    assert [r.get("skipped_steps", 0) for r in records if "lr" in r] == [1, 1]


def no_items(out: LossOutput) -> LossOutput:
    return LossOutput(out.loss_sum * 0, out.n_items * 0)


def test_a_window_without_items_stops_the_run_before_its_checkpoint(tmp_path: Path) -> None:
    # Both micro-batches of update 3 (loss calls 5 and 6) claim no items: a mean over them does not exist.
    sparse = {"max_steps": 8, "log_every": 4, "eval_every": 4, "checkpoint_every": 4}
    with pytest.raises(
        ValueError,
        match=r"training stopped at step 3: micro-batches from epoch 0, batch index 4 "
        r"to epoch 0, batch index 5 hold no items \(n_items=0.0\); task.loss must count",
    ):
        _fit(FaultyTask({5: no_items, 6: no_items}), tmp_path / "empty", **sparse)
    assert not (tmp_path / "empty" / LAST).exists()


def test_skip_stops_a_run_that_only_skips(tmp_path: Path) -> None:
    every_call = {call: nan_loss for call in range(1, 2 * MAX_CONSECUTIVE_SKIPS + 10)}
    with pytest.raises(NonFiniteLossError, match=f"the {MAX_CONSECUTIVE_SKIPS}th non-finite update in a row"):
        _fit(FaultyTask(every_call), tmp_path, max_steps=100, nonfinite="skip")
    assert load_checkpoint(tmp_path / LAST).progress["skipped_steps"] == MAX_CONSECUTIVE_SKIPS - 1


def test_nonfinite_policy_is_validated() -> None:
    with pytest.raises(
        ValueError, match=r"TrainConfig.nonfinite='ignore' is invalid: must be one of \('stop', 'skip'\)"
    ):
        TrainConfig(nonfinite="ignore")


# ---------------------------------------------------------------------------------------------------------------
# Out of memory


def _raise_oom(*_: object, **__: object) -> None:
    raise torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)\nmore"
    )


def test_out_of_memory_in_the_forward_is_one_line_with_advice(tmp_path: Path) -> None:
    with pytest.raises(TrainingOutOfMemoryError) as raised:
        _fit(FaultyTask({5: _raise_oom}), tmp_path, max_steps=10)
    message = str(raised.value)
    assert isinstance(raised.value, torch.OutOfMemoryError)  # code catching torch's OOM still catches it
    assert "\n" not in message
    assert message.startswith("out of memory at step 3 (epoch 0, batch index 4; the last good checkpoint is ")
    assert "(step 2), unchanged): CUDA out of memory. Tried to allocate 2.00 GiB" in message
    assert (
        "a smaller batch" in message and "train.grad_accum_steps" in message and "data.max_tokens" in message
    )
    assert load_checkpoint(tmp_path / LAST).progress["step"] == 2


def test_out_of_memory_in_the_optimizer_step_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(torch.optim.AdamW, "step", _raise_oom)
    argv = ["train", "tiny_dates", f"--out_dir={tmp_path}", "--train.max_steps=2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("tformer train: error: out of memory at step 1 (epoch 0, batch index 0; ")
    assert "no checkpoint has been written yet" in err and "grad_accum_steps" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# Unwritable or full output directory


def _make_unwritable(directory: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Stop checkpoint writes into `directory`: by permissions where they bind, else (root, which ignores them)
    by making the write itself fail with EACCES, as the kernel would. Returns which mechanism was used."""
    directory.chmod(0o500)
    probe = directory / "probe"
    try:
        probe.touch()
    except PermissionError:
        return "chmod"
    probe.unlink()
    directory.chmod(0o700)

    def refuse(tensors: object, filename: str | os.PathLike, metadata: object = None) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(filename))

    monkeypatch.setattr(checkpoint_module, "save_file", refuse)
    return "patched write"


def _disk_full(monkeypatch: pytest.MonkeyPatch, *, as_safetensors: bool = True) -> None:
    """Checkpoint writes get part way, then fail with ENOSPC, raised as safetensors raises it (a SafetensorError
    with the OS error in its text) or as a plain OSError."""

    def half_then_full(tensors: object, filename: str | os.PathLike, metadata: object = None) -> None:
        Path(filename).write_bytes(b"\0" * 100)
        if as_safetensors:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(checkpoint_module, "save_file", half_then_full)


@pytest.mark.parametrize("fault", ["unwritable", "disk full", "disk full (OSError)"])
def test_failed_checkpoint_write_names_the_path_and_keeps_the_last_good_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    snapshot: dict[str, bytes] = {}

    def break_the_disk(out: LossOutput) -> LossOutput:  # during update 3, after checkpoint 2 was written
        snapshot["last"] = (tmp_path / LAST).read_bytes()
        if fault == "unwritable":
            snapshot["mechanism"] = _make_unwritable(tmp_path, monkeypatch).encode()
        else:
            _disk_full(monkeypatch, as_safetensors=fault == "disk full")
        return out

    try:
        with pytest.raises(OSError) as raised:
            _fit(FaultyTask({5: break_the_disk}), tmp_path, max_steps=10)
    finally:
        tmp_path.chmod(0o700)
    error = raised.value
    assert error.errno == (errno.EACCES if fault == "unwritable" else errno.ENOSPC)
    message = str(error.strerror)
    assert f"could not write checkpoint {tmp_path / 'step-000003.safetensors'}" in message
    assert message.startswith("training stopped at step 3 (epoch 0, batch index 5; ")
    assert f"the last good checkpoint is {tmp_path / LAST} (step 2), unchanged" in message
    assert f"make {tmp_path} writable, then continue with --resume" in message
    assert (tmp_path / LAST).read_bytes() == snapshot["last"]
    assert load_checkpoint(tmp_path / LAST).progress["step"] == 2
    assert not list(tmp_path.glob("*.tmp"))  # the half-written temporary file was removed
    for path in tmp_path.glob("*.safetensors"):
        load_checkpoint(path)


def test_full_disk_through_the_cli_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _disk_full(monkeypatch)
    assert main(["train", "tiny_dates", f"--out_dir={tmp_path}", "--train.max_steps=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tformer train: error: training stopped at step 2 (epoch 0, batch index 1; ")
    assert "could not write checkpoint" in err and "No space left on device" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_link_to_last_failing_keeps_the_previous_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the numbered checkpoint is written, but replacing last.safetensors fails: last stays the previous step
    def broken_link(src: Path, dst: Path) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))

    def break_link(out: LossOutput) -> LossOutput:
        monkeypatch.setattr(trainer_module, "link_or_copy", broken_link)
        return out

    with pytest.raises(
        OSError, match=r"step 3 .*\(step 2\), unchanged\): Input/output error: .*last.safetensors"
    ):
        _fit(FaultyTask({5: break_link}), tmp_path, max_steps=10)
    assert load_checkpoint(tmp_path / LAST).progress["step"] == 2
    assert load_checkpoint(tmp_path / "step-000003.safetensors").progress["step"] == 3
