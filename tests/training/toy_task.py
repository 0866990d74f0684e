"""A toy TrainingTask for the trainer tests: map each token of a padded sequence to (3 * token + 1) mod V.

Tiny on purpose (an embedding MLP, a few dozen sequences) so that tens of updates take well under a second.
Sequences have random lengths, so micro-batches hold different numbers of real tokens: a trainer that
averages per-micro-batch means instead of dividing the window's sums would fail the equality tests.

Run as a script (``PYTHONPATH=src python tests/training/toy_task.py --out DIR ...``) it trains once; the
kill/resume and DDP tests start it in subprocesses (under torchrun for DDP).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tformer.training.losses import LossOutput
from tformer.training.schedules import ScheduleConfig
from tformer.training.trainer import TrainConfig, Trainer

VOCAB = 16
PAD = 0
IGNORE = -100


@dataclass
class ToyBatch:
    tokens: torch.Tensor  # Long[B, T], PAD after each sequence's length
    targets: torch.Tensor  # Long[B, T], IGNORE at padding

    def to(self, device: torch.device | str) -> ToyBatch:
        return ToyBatch(self.tokens.to(device), self.targets.to(device))


class ToyModel(nn.Module):
    def __init__(self, *, d_model: int = 16, hidden: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(d_model, hidden)
        self.out = nn.Linear(hidden, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embed(tokens))  # [B, T, D]
        return self.out(torch.relu(self.hidden(x)))  # [B, T, V]


def make_sequences(n: int, *, seq_len: int, seed: int) -> ToyBatch:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (n, seq_len), generator=generator)
    lengths = torch.randint(1, seq_len + 1, (n, 1), generator=generator)
    real = torch.arange(seq_len).unsqueeze(0) < lengths  # [n, T]
    targets = torch.where(real, (3 * tokens + 1) % VOCAB, IGNORE)
    return ToyBatch(tokens.masked_fill(~real, PAD), targets)


def toy_loss(model: nn.Module, batch: ToyBatch) -> LossOutput:
    logits = model(batch.tokens)  # [B, T, V]
    loss_sum = F.cross_entropy(
        logits.flatten(0, 1), batch.targets.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    return LossOutput(loss_sum=loss_sum, n_items=(batch.targets != IGNORE).sum())


class ToyTask:
    """Shuffles `n_train` sequences per epoch (seeded by seed and epoch); a global batch is `batch_size`
    sequences per rank, rank r taking the r-th slice of it, so W ranks see exactly one process's batches of
    W * batch_size. `delay_s` slows each micro-batch so a test can kill a run part way."""

    def __init__(
        self,
        *,
        n_train: int = 48,
        n_val: int = 16,
        seq_len: int = 6,
        batch_size: int = 4,
        seed: int = 0,
        delay_s: float = 0.0,
    ) -> None:
        self.train = make_sequences(n_train, seq_len=seq_len, seed=seed)
        self.val = make_sequences(n_val, seq_len=seq_len, seed=seed + 1)
        self.batch_size = batch_size
        self.seed = seed
        self.delay_s = delay_s
        self.nan_at_call: int | None = (
            None  # loss() returns NaN on this call (counted from 1), for fault tests
        )
        self.loss_calls = 0

    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterator[ToyBatch]:
        order = torch.randperm(
            len(self.train.tokens), generator=torch.Generator().manual_seed(self.seed * 1000 + epoch)
        )
        global_size = self.batch_size * world_size
        for start in range(0, len(order) - global_size + 1, global_size):
            rows = order[start + rank * self.batch_size : start + (rank + 1) * self.batch_size]
            yield ToyBatch(self.train.tokens[rows], self.train.targets[rows])

    def loss(self, model: nn.Module, batch: ToyBatch) -> LossOutput:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.loss_calls += 1
        out = toy_loss(model, batch)
        if self.loss_calls == self.nan_at_call:
            return LossOutput(out.loss_sum * float("nan"), out.n_items)
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        out = toy_loss(model, self.val.to(device))
        return {"val_loss": (out.loss_sum / out.n_items).item()}


def toy_config(**overrides: object) -> TrainConfig:
    """Small, fast defaults: constant lr, no warmup, no progress bar, everything on the CPU."""
    defaults: dict[str, object] = {
        "max_steps": 10,
        "lr": 1e-2,
        "schedule": ScheduleConfig(kind="constant", warmup_steps=0),
        "eval_every": 5,
        "checkpoint_every": 5,
        "log_every": 1,
        "device": "cpu",
        "progress_bar": False,
    }
    return TrainConfig(**{**defaults, **overrides})


def main() -> None:
    parser = argparse.ArgumentParser(description="train the toy task once (used by the trainer tests)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds of sleep per micro-batch")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--nonfinite", choices=("stop", "skip"), default="stop")
    parser.add_argument(
        "--nan-loss",
        metavar="RANK:CALL",
        help="this rank's CALL-th loss (counted from 1) is NaN; others are not",
    )
    args = parser.parse_args()
    # One thread: every run (reference, killed, resumed) then sums in the same order, bit for bit.
    torch.set_num_threads(1)
    torch.manual_seed(1234)
    model = ToyModel(dropout=args.dropout)
    task = ToyTask(batch_size=args.batch_size, delay_s=args.delay)
    if args.nan_loss is not None:
        rank, call = map(int, args.nan_loss.split(":"))
        task.nan_at_call = call if rank == int(os.environ.get("RANK", "0")) else None
    config = toy_config(
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        grad_accum_steps=args.grad_accum,
        log_every=args.log_every,
        nonfinite=args.nonfinite,
    )
    Trainer(model, task, config, out_dir=args.out, run_config={"task": "toy"}).fit(resume=args.resume)


if __name__ == "__main__":
    main()
