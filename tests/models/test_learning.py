"""A tiny seq2seq model learns to copy and to reverse short sequences exactly, in a few hundred CPU steps.

End to end: batching, the model, the loss, the optimizer and greedy decoding through Seq2SeqState must all be
right for a held-out set to come out 100% exact. Random sequences of 3..8 symbols (ids 4..13; 0 pad, 1 bos,
2 eos); the held-out sequences never occur in training.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import torch

from tformer.data.batching import make_seq2seq_batch
from tformer.decoding import Seq2SeqState, greedy_search
from tformer.models.seq2seq import Seq2SeqTransformer, preset_config
from tformer.nn.blocks import NormPosition
from tformer.training.losses import label_smoothed_cross_entropy
from tformer.training.optim import build_optimizer
from tformer.training.schedules import cosine_lr

PAD, BOS, EOS = 0, 1, 2
SYMBOLS = range(4, 14)
VOCAB = SYMBOLS.stop
MIN_LEN, MAX_LEN = 3, 8
N_HELD_OUT = 200
IGNORE = -100

TASKS: dict[str, Callable[[list[int]], list[int]]] = {
    "copy": lambda seq: list(seq),
    "reverse": lambda seq: seq[::-1],
}


@dataclass(frozen=True)
class Recipe:
    """The smallest setting found that reaches 100% on both tasks for seeds 0, 1 and 2.

    With one layer, or 300 steps, reverse stays at 90-99.5% on some seeds; d_model 64 is no better and twice
    as slow.
    """

    d_model: int = 32
    n_layers: int = 2
    steps: int = 400
    lr: float = 1e-2
    warmup_steps: int = 30
    batch_size: int = 64
    seed: int = 0


def random_sequence(rng: random.Random) -> list[int]:
    return [rng.choice(SYMBOLS) for _ in range(rng.randint(MIN_LEN, MAX_LEN))]


def held_out_set(seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    seen: dict[tuple[int, ...], None] = {}  # insertion-ordered set: distinct sequences, reproducible order
    while len(seen) < N_HELD_OUT:
        seen[tuple(random_sequence(rng))] = None
    return [list(seq) for seq in seen]


def training_sources(rng: random.Random, *, batch_size: int, exclude: set[tuple[int, ...]]) -> Iterator[list]:
    """Endless batches of `batch_size` random sequences, none of them in `exclude`."""
    while True:
        batch: list[list[int]] = []
        while len(batch) < batch_size:
            seq = random_sequence(rng)
            if tuple(seq) not in exclude:
                batch.append(seq)
        yield batch


def build_model(recipe: Recipe) -> Seq2SeqTransformer:
    torch.manual_seed(recipe.seed)
    config = preset_config(
        "tiny",
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        # Source and target use the same symbols, so one table; it also keeps the initialisation independent
        # of the order in which the model initialises two embedding tables (see the reproducibility test).
        share_embeddings=True,
        d_model=recipe.d_model,
        n_heads=4,
        d_ff=2 * recipe.d_model,
        n_encoder_layers=recipe.n_layers,
        n_decoder_layers=recipe.n_layers,
        norm_position=NormPosition.PRE,  # learns faster than post-norm at a high learning rate
        dropout=0.0,
        max_len=MAX_LEN + 2,
    )
    return Seq2SeqTransformer(config)


def train(task: str, recipe: Recipe, *, exclude: set[tuple[int, ...]]) -> Seq2SeqTransformer:
    """Teacher-forced AdamW with warmup + cosine decay; the decay to 0 settles the last few errors."""
    model = build_model(recipe).train()
    optimizer = build_optimizer(model, lr=recipe.lr)
    batches = training_sources(random.Random(recipe.seed), batch_size=recipe.batch_size, exclude=exclude)
    for step in range(1, recipe.steps + 1):
        lr = cosine_lr(
            step,
            base_lr=recipe.lr,
            warmup_steps=recipe.warmup_steps,
            total_steps=recipe.steps,
            min_lr_ratio=0.0,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        sources = next(batches)
        batch = make_seq2seq_batch(
            sources, [TASKS[task](s) for s in sources], pad_id=PAD, bos_id=BOS, eos_id=EOS
        )
        logits = model(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits  # [B, T, V]
        loss = label_smoothed_cross_entropy(logits, batch.tgt_out.masked_fill(~batch.tgt_mask, IGNORE))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def greedy_outputs(model: Seq2SeqTransformer, sources: list[list[int]]) -> list[list[int]]:
    batch = make_seq2seq_batch(sources, sources, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    state = Seq2SeqState(model, batch.src_ids, batch.src_mask)
    hypotheses = greedy_search(
        state, batch_size=len(sources), bos_id=BOS, eos_id=EOS, max_new_tokens=2 * MAX_LEN
    )
    return [h.tokens for h in hypotheses]


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_tiny_model_learns_the_task_exactly(task):
    held_out = held_out_set(seed=1234)
    model = train(task, Recipe(), exclude={tuple(seq) for seq in held_out})
    expected = [TASKS[task](seq) for seq in held_out]
    outputs = greedy_outputs(model, held_out)
    wrong = [(src, out) for src, out, want in zip(held_out, outputs, expected, strict=True) if out != want]
    assert not wrong, f"{len(wrong)}/{N_HELD_OUT} wrong, e.g. (source, output): {wrong[:5]}"


def test_the_same_seed_builds_the_same_model():
    """Two models built after the same torch.manual_seed must be identical, or no seeded test is reproducible.

    Fails while `Seq2SeqTransformer._init_weights` loops over the set {src_embed, tgt_embed}: set order follows
    the modules' memory addresses, so which table gets the first random draws changes from build to build (and
    from run to run). Every model is kept alive so that each one lands at a new address.
    """

    def build() -> Seq2SeqTransformer:
        torch.manual_seed(0)
        return Seq2SeqTransformer(preset_config("tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB + 1))

    models = [build() for _ in range(16)]
    reference = models[0].state_dict()
    for model in models[1:]:
        for name, value in model.state_dict().items():
            assert torch.equal(value, reference[name]), f"{name} differs between two builds with seed 0"
