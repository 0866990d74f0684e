"""Trainer.fit on the toy task: learning, exact gradient accumulation, exact resume, checkpoints, logs, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from tformer.training.checkpoint import load_checkpoint, save_checkpoint
from tformer.training.logging import RunLogger
from tformer.training.losses import LossOutput
from tformer.training.trainer import FitResult, TrainConfig, Trainer

from .toy_task import ToyBatch, ToyModel, ToyTask, toy_config

RUN_CONFIG = {"task": "toy", "model": {"d_model": 16}}


def _model(*, dropout: float = 0.0) -> ToyModel:
    torch.manual_seed(0)
    return ToyModel(dropout=dropout)


def _fit(
    model: nn.Module, task: object, out_dir: Path, *, resume: bool = False, **overrides: object
) -> FitResult:
    trainer = Trainer(model, task, toy_config(**overrides), out_dir=out_dir, run_config=RUN_CONFIG)
    return trainer.fit(resume=resume)


def _train_records(history: list[dict]) -> list[dict]:
    return [record for record in history if "loss" in record]


def _assert_same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class OneBatchTask(ToyTask):
    """Every epoch is the same single batch: a model that can learn must drive its loss to ~0."""

    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterator[ToyBatch]:
        yield ToyBatch(self.train.tokens[:8], self.train.targets[:8])


def test_overfits_one_batch(tmp_path: Path) -> None:
    result = _fit(
        _model(), OneBatchTask(), tmp_path, max_steps=150, lr=3e-2, eval_every=1000, checkpoint_every=1000
    )
    losses = [record["loss"] for record in _train_records(result.history)]
    assert len(losses) == 150
    assert losses[0] > 2.0  # ~log(16) at init
    assert losses[-1] < 0.02


@pytest.mark.parametrize("micro_batch, accum", [(4, 2), (2, 4)])
def test_grad_accumulation_equals_one_large_batch(tmp_path: Path, micro_batch: int, accum: int) -> None:
    # The micro-batches hold different numbers of real tokens, so averaging per-micro-batch means would differ.
    counts = {int((b.targets != -100).sum()) for b in ToyTask(batch_size=micro_batch).train_batches(0)}
    assert len(counts) > 1
    large, small = _model(), _model()
    initial = {name: p.detach().clone() for name, p in large.named_parameters()}
    _fit(large, ToyTask(batch_size=micro_batch * accum), tmp_path / "large", max_steps=8)
    _fit(small, ToyTask(batch_size=micro_batch), tmp_path / "small", max_steps=8, grad_accum_steps=accum)
    for (name, p_large), p_small in zip(large.named_parameters(), small.parameters(), strict=True):
        assert not torch.equal(p_large, initial[name])  # it trained
        torch.testing.assert_close(p_small, p_large, rtol=0, atol=1e-6, msg=name)


def test_resume_in_process_is_bit_exact(tmp_path: Path) -> None:
    # 48 sequences / batch 4 = 12 batches per epoch: 20 steps cross an epoch, the split at 7 is mid-epoch.
    full = _model(dropout=0.3)
    _fit(full, ToyTask(), tmp_path / "full", max_steps=20, checkpoint_every=7)
    first = _model(dropout=0.3)
    _fit(first, ToyTask(), tmp_path / "split", max_steps=7, checkpoint_every=7)
    second = _model(dropout=0.3)  # fresh weights: everything must come from the checkpoint
    result = _fit(second, ToyTask(), tmp_path / "split", resume=True, max_steps=20, checkpoint_every=7)
    assert result.step == 20
    _assert_same_parameters(full.state_dict(), second.state_dict())
    progress = load_checkpoint(tmp_path / "split" / "last.safetensors").progress
    assert progress["step"] == 20 and progress["epoch"] == 1 and progress["batch_in_epoch"] == 8
    # the log reads as one run: each step once, in order
    records = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 21))


def test_resume_refuses_a_checkpoint_with_impossible_progress(tmp_path: Path) -> None:
    # a tampered or damaged progress is named with its file before anything trains on it
    model = _model()
    _fit(model, ToyTask(), tmp_path, max_steps=2)
    last = tmp_path / "last.safetensors"
    stored = load_checkpoint(last)
    save_checkpoint(last, model=model, progress={**stored.progress, "step": -5}, run_config=RUN_CONFIG)
    with pytest.raises(ValueError, match=r"last\.safetensors: progress\.step must be an int >= 0, got -5"):
        _fit(_model(), ToyTask(), tmp_path, resume=True, max_steps=4)


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    resumed, fresh = _model(), _model()
    _fit(resumed, ToyTask(), tmp_path / "a", resume=True, max_steps=3)
    _fit(fresh, ToyTask(), tmp_path / "b", max_steps=3)
    _assert_same_parameters(resumed.state_dict(), fresh.state_dict())


def test_resume_warns_only_when_the_run_config_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fit(run_config: dict, max_steps: int) -> None:
        config = toy_config(max_steps=max_steps, checkpoint_every=1)
        Trainer(_model(), ToyTask(), config, out_dir=tmp_path, run_config=run_config).fit(resume=True)

    with caplog.at_level(logging.WARNING, logger="tformer"):
        fit({"betas": (0.9, 0.98)}, 2)
        fit({"betas": (0.9, 0.98)}, 3)  # the tuple comes back from the checkpoint as a list: still equal
        assert not caplog.records
        fit({"betas": (0.5, 0.5)}, 4)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "run config differs" in caplog.records[0].getMessage()


class NaNTask(ToyTask):
    def __init__(self, *, nan_at_call: int) -> None:
        super().__init__()
        self.calls = 0
        self.nan_at_call = nan_at_call

    def loss(self, model: nn.Module, batch: ToyBatch) -> LossOutput:
        self.calls += 1
        out = super().loss(model, batch)
        if self.calls == self.nan_at_call:
            return LossOutput(out.loss_sum * float("nan"), out.n_items)
        return out


def test_nan_loss_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    # grad_accum 2: loss call 7 is the first micro-batch of update 4
    with pytest.raises(ValueError, match="step 4"):
        _fit(_model(), NaNTask(nan_at_call=7), tmp_path, max_steps=10, checkpoint_every=1, grad_accum_steps=2)
    ckpt = load_checkpoint(tmp_path / "last.safetensors")
    assert ckpt.progress["step"] == 3
    assert all(torch.isfinite(t).all() for t in ckpt.model_state.values())


class ScriptedEvalTask(ToyTask):
    """evaluate() returns the next value of a script, whatever the model."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = iter(values)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        assert not model.training and not torch.is_grad_enabled()
        return {"score": next(self.values)}


@pytest.mark.parametrize(
    "mode, values", [("min", [3.0, 1.0, 2.0, 1.5, 1.2, 0.5]), ("max", [1.0, 3.0, 2.0, 2.5, 2.9, 4.0])]
)
def test_early_stopping_and_best_checkpoint(tmp_path: Path, mode: str, values: list[float]) -> None:
    result = _fit(
        _model(),
        ScriptedEvalTask(values),
        tmp_path,
        max_steps=40,
        eval_every=2,
        checkpoint_every=2,
        keep_last=10,
        metric="score",
        metric_mode=mode,
        early_stopping_patience=3,
    )
    # evaluations at steps 2, 4, 6, 8, 10: the best is at step 4, then three without improvement
    assert (result.step, result.best_step, result.best_metric) == (10, 4, values[1])
    best = load_checkpoint(tmp_path / "best.safetensors")
    assert best.progress["step"] == 4 and best.progress["best_metric"] == values[1]
    _assert_same_parameters(
        best.model_state, load_checkpoint(tmp_path / "step-000004.safetensors").model_state
    )
    assert load_checkpoint(tmp_path / "last.safetensors").progress["step"] == 10
    # resuming a run that stopped early does not train further
    again = _fit(
        _model(),
        ScriptedEvalTask([]),
        tmp_path,
        resume=True,
        max_steps=40,
        eval_every=2,
        metric="score",
        metric_mode=mode,
        early_stopping_patience=3,
    )
    assert again.step == 10 and again.history == []


def test_nan_metric_never_becomes_the_best(tmp_path: Path) -> None:
    task = ScriptedEvalTask([float("nan"), 2.0, float("nan")])
    result = _fit(_model(), task, tmp_path, max_steps=3, eval_every=1, metric="score")
    assert (result.best_step, result.best_metric) == (2, 2.0)


def test_keep_last_prunes_numbered_checkpoints(tmp_path: Path) -> None:
    _fit(_model(), ToyTask(), tmp_path, max_steps=5, checkpoint_every=1, eval_every=2, keep_last=2)
    names = sorted(path.name for path in tmp_path.glob("*.safetensors"))
    assert names == [
        "best.safetensors",
        "last.safetensors",
        "step-000004.safetensors",
        "step-000005.safetensors",
    ]
    last, numbered = (
        load_checkpoint(tmp_path / name) for name in ("last.safetensors", "step-000005.safetensors")
    )
    assert last.progress == numbered.progress and last.progress["step"] == 5
    _assert_same_parameters(last.model_state, numbered.model_state)


def test_final_checkpoint_written_off_schedule(tmp_path: Path) -> None:
    _fit(_model(), ToyTask(), tmp_path, max_steps=7, checkpoint_every=5, eval_every=100, keep_last=0)
    # the last step is evaluated even off the eval schedule, so a best checkpoint exists too
    assert sorted(path.name for path in tmp_path.glob("*.safetensors")) == [
        "best.safetensors",
        "last.safetensors",
    ]
    ckpt = load_checkpoint(tmp_path / "last.safetensors")
    assert ckpt.progress["step"] == 7 and ckpt.run_config == RUN_CONFIG


def test_run_json_and_log_jsonl(tmp_path: Path) -> None:
    result = _fit(_model(), ToyTask(), tmp_path, max_steps=6, eval_every=3, log_every=2, seed=7)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["seed"] == 7 and info["world_size"] == 1 and info["device"] == "cpu"
    assert info["run_config"] == RUN_CONFIG and info["torch"] == torch.__version__
    assert {"python", "tformer", "train_config"} <= info.keys()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records == result.history
    train = _train_records(records)
    assert [r["step"] for r in train] == [2, 4, 6]
    for record in train:
        assert record["lr"] == pytest.approx(1e-2) and record["items_per_s"] > 0 and record["loss"] > 0
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    assert (tmp_path / "tensorboard").is_dir()


def test_readable_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tformer"):
        _fit(_model(), ToyTask(), tmp_path, max_steps=4, log_every=2, eval_every=4)
    lines = [record.getMessage() for record in caplog.records if record.name == "tformer"]
    assert [line.split(" | ")[0] for line in lines] == ["step 2", "step 4", "step 4"]
    assert lines[0].split(" | ")[1].startswith("loss ") and lines[2].split(" | ")[1].startswith("val_loss ")


def test_run_logger_on_resume_drops_records_after_the_checkpoint(tmp_path: Path) -> None:
    lines = [json.dumps({"step": step, "loss": 1.0}) for step in range(1, 6)]
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + '\n{"step": 6, "lo')  # killed mid-write
    run_logger = RunLogger(tmp_path, enabled=True, start_step=3)
    run_logger.log({"step": 4, "loss": 0.5})
    run_logger.close()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records == [
        {"step": 1, "loss": 1.0},
        {"step": 2, "loss": 1.0},
        {"step": 3, "loss": 1.0},
        {"step": 4, "loss": 0.5},
    ]


def test_log_loss_is_the_item_weighted_mean_of_the_interval(tmp_path: Path) -> None:
    # lr so small the weights barely move: the logged loss must match the losses recomputed at init
    model, task = _model(), ToyTask()
    expected = [task.loss(model, batch) for batch in list(task.train_batches(0))[:4]]
    mean = float(sum(o.loss_sum.detach() for o in expected) / sum(o.n_items for o in expected))
    result = _fit(model, task, tmp_path, max_steps=4, log_every=4, lr=1e-9, eval_every=100)
    assert _train_records(result.history)[0]["loss"] == pytest.approx(mean, rel=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cpu_is_rejected(tmp_path: Path, precision: str) -> None:
    with pytest.raises(ValueError, match="precision"):
        Trainer(_model(), ToyTask(), toy_config(precision=precision), out_dir=tmp_path, run_config={})


def test_missing_metric_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'bleu'"):
        _fit(_model(), ToyTask(), tmp_path, max_steps=2, eval_every=1, metric="bleu")


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_steps", 0),
        ("grad_accum_steps", 0),
        ("eval_every", -1),
        ("keep_last", -1),
        ("clip_norm", 0.0),
        ("metric_mode", "lowest"),
        ("early_stopping_patience", 0),
        ("precision", "fp8"),
        ("betas", (0.9,)),
        ("lr", 0.0),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_accepts_betas_as_list() -> None:
    assert TrainConfig(betas=[0.9, 0.99]).betas == (0.9, 0.99)
