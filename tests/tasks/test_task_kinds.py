"""A new kind of task plugs in with one row of the task table: training, its checkpoint, loading, evaluation
(library and CLI) and `info` all work for it without naming it; its own task state (no tokenizer here) and its
own optimizer parameter groups travel with it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from tformer.cli.main import main
from tformer.data.text_stream import LMBatch, TextStream
from tformer.models.gpt import GPTConfig
from tformer.tasks import runs
from tformer.tasks.base import Evaluation, EvaluationRequest, TaskKind, TrainedModel, refuse_options
from tformer.tasks.evaluation import evaluate_checkpoint
from tformer.tasks.language_model import language_model_loss
from tformer.tasks.models import describe_model
from tformer.training.checkpoint import load_checkpoint, save_checkpoint
from tformer.training.losses import LossOutput
from tformer.training.schedules import ScheduleConfig
from tformer.training.trainer import TrainConfig

ALPHABET = "abcdefg"  # the task state: what each token id stands for
BLOCKS_LR_SCALE = 0.5  # the task's own parameter groups give the Transformer blocks half the learning rate


def _counting_stream(n: int) -> TextStream:
    return TextStream(torch.arange(n) % len(ALPHABET))  # a b c ... g a b c ...: next token is predictable


@dataclass(frozen=True)
class CountingRunConfig:
    task: str = "counting"
    out_dir: str = "runs/counting"
    model: GPTConfig = field(
        default_factory=lambda: GPTConfig(
            vocab_size=1, context_length=8, d_model=16, n_heads=2, n_layers=1, d_ff=32
        )
    )
    train: TrainConfig = field(default_factory=TrainConfig)


class CountingTask:
    def __init__(self, config: CountingRunConfig, *, alphabet: str | None = None) -> None:
        self.config = config
        self.alphabet = alphabet or ALPHABET
        self.train_stream, self.valid_stream = _counting_stream(400), _counting_stream(64)

    def state_json(self) -> str:
        return json.dumps({"alphabet": self.alphabet})

    def model_config(self) -> GPTConfig:
        return dataclasses.replace(self.config.model, vocab_size=len(self.alphabet))

    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterator[LMBatch]:
        return self.train_stream.random_batches(
            batch_size=4, block_size=8, n_batches=5, seed=0, epoch=epoch, rank=rank, world_size=world_size
        )

    def loss(self, model: nn.Module, batch: LMBatch) -> LossOutput:
        return language_model_loss(model, batch)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"val_loss": _mean_loss(model, self.valid_stream)}

    def parameter_groups(self, model: nn.Module, *, weight_decay: float) -> list[dict]:
        blocks = [p for name, p in model.named_parameters() if name.startswith("blocks")]
        rest = [p for name, p in model.named_parameters() if not name.startswith("blocks")]
        lr = self.config.train.lr
        return [
            {"params": rest, "weight_decay": weight_decay},
            {"params": blocks, "lr": lr * BLOCKS_LR_SCALE},
        ]


@torch.no_grad()
def _mean_loss(model: nn.Module, stream: TextStream) -> float:
    total = [language_model_loss(model, b) for b in stream.sequential_batches(batch_size=4, block_size=8)]
    return float(sum(t.loss_sum for t in total) / sum(t.n_items for t in total))


def evaluate_counting(trained: TrainedModel, request: EvaluationRequest) -> Evaluation:
    refuse_options(request, "counting", "n", "beam_size")
    loss = _mean_loss(trained.model, _counting_stream(64))
    return Evaluation({"split": request.split, "loss": loss}, [f"{request.split}: loss {loss:.3f}"])


COUNTING = TaskKind(
    name="counting",
    run_config=CountingRunConfig,
    build=lambda config, state: CountingTask(config, alphabet=None if state is None else state["alphabet"]),
    state_from_json=json.loads,
    evaluate=evaluate_counting,
)


@pytest.fixture
def counting_run(tmp_path, monkeypatch):
    monkeypatch.setitem(runs.TASKS, "counting", COUNTING)
    train = TrainConfig(
        max_steps=6,
        lr=1e-2,
        eval_every=3,
        checkpoint_every=3,
        device="cpu",
        compile=False,
        progress_bar=False,
        schedule=ScheduleConfig(kind="constant", warmup_steps=0),
    )
    config = CountingRunConfig(out_dir=str(tmp_path / "run"), train=train)
    runs.train(config)
    return tmp_path / "run"


def test_a_new_task_kind_trains_loads_and_keeps_its_own_state(counting_run) -> None:
    trained = runs.load_trained(counting_run / "last.safetensors", device="cpu")
    assert trained.kind is COUNTING and isinstance(trained.config, CountingRunConfig)
    assert trained.state == {"alphabet": ALPHABET}
    assert trained.model.config.vocab_size == len(ALPHABET)  # completed from the task, stored resolved


def test_the_tasks_own_parameter_groups_reach_the_optimizer(counting_run) -> None:
    groups = load_checkpoint(counting_run / "last.safetensors").optimizer_state["param_groups"]
    assert [g["lr"] for g in groups] == [1e-2, 1e-2 * BLOCKS_LR_SCALE]
    assert all(name.startswith("blocks") for name in groups[1]["params"])
    assert not any(name.startswith("blocks") for name in groups[0]["params"])


def test_evaluate_and_info_work_for_it_without_knowing_its_name(counting_run, capsys) -> None:
    checkpoint = counting_run / "last.safetensors"
    result = evaluate_checkpoint(checkpoint, split="valid", device="cpu")
    assert (
        set(result.metrics) == {"split", "loss"} and result.metrics["loss"] < 1.8
    )  # log 7 = 1.95: it learnt
    with pytest.raises(ValueError, match="beam_size does not apply to a counting checkpoint"):
        evaluate_checkpoint(checkpoint, split="valid", beam_size=4, device="cpu")

    assert main(["evaluate", str(checkpoint), "--split", "valid", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"valid: loss {result.metrics['loss']:.3f}"
    assert json.loads(out[-1]) == result.metrics
    assert "gpt" in describe_model(str(checkpoint), length=8)


def test_a_checkpoint_without_its_task_state_is_a_clear_error(counting_run, tmp_path) -> None:
    stored = load_checkpoint(counting_run / "last.safetensors")
    trained = runs.load_trained(counting_run / "last.safetensors", device="cpu")
    bare = save_checkpoint(
        tmp_path / "bare.safetensors",
        model=trained.model,
        progress=stored.progress,
        run_config=stored.run_config,
    )
    with pytest.raises(ValueError, match="bare.safetensors holds no counting task state"):
        runs.load_trained(bare, device="cpu")
