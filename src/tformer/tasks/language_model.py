"""Language modelling as a task: a text corpus -> a token stream -> next-token prediction with a decoder-only model.

Two corpora: Tiny Shakespeare (one text; first 90% train, last 10% validation, as nanoGPT) and WikiText-2
(word level, its own train/valid/test). Perplexities are comparable only within one tokenization: the published
WikiText-2 numbers are word level over the 33,278-word vocabulary, one <eos> per line.

The task owns the data; the model gets its vocabulary size here, in `model_config`; the trainer sees only
`train_batches`, `loss` and `evaluate`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from tformer.checks import check_positive_ints
from tformer.data.lm_corpora import read_tinyshakespeare, read_wikitext2
from tformer.data.text_stream import IGNORE_INDEX, LMBatch, TextStream
from tformer.data.tokenizers import (
    Tokenizer,
    train_bpe_tokenizer,
    train_char_tokenizer,
    train_word_tokenizer,
)
from tformer.decoding.causal_lm import SamplingConfig
from tformer.models.gpt import GPTConfig
from tformer.models.rnn import LSTMLMConfig
from tformer.nn.modes import eval_mode
from tformer.tasks.base import Evaluation, EvaluationRequest, TaskKind, TrainedModel, refuse_options
from tformer.training.losses import LossOutput, label_smoothed_cross_entropy, total_loss
from tformer.training.train_config import TrainConfig

CORPORA = ("tinyshakespeare", "wikitext2")
TOKENIZERS = ("char", "bpe", "word")
SPLITS = {"tinyshakespeare": ("train", "valid"), "wikitext2": ("train", "valid", "test")}


@dataclass(frozen=True)
class LMDataConfig:
    dataset: str = "tinyshakespeare"  # "tinyshakespeare" or "wikitext2"
    data_dir: str | None = None  # default: $TFORMER_DATA_DIR, else ../shared/data when present
    tokenizer: str = "char"  # "char", "bpe" (byte-level) or "word" (whitespace-separated words)
    vocab_size: int = 8000  # bpe only
    block_size: int = 256  # tokens per training window (<= model.context_length)
    batch_size: int = 64  # windows per batch
    batches_per_epoch: int = 1000  # windows are drawn at random offsets: an "epoch" is this many batches
    eval_stride: int | None = None  # None: non-overlapping evaluation windows; < block_size: sliding windows
    limit_tokens: int | None = None  # use only the first N tokens of each split (smoke tests)

    def __post_init__(self) -> None:
        for name, valid in {"dataset": CORPORA, "tokenizer": TOKENIZERS}.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"data.{name} {getattr(self, name)!r} is unknown (valid: {', '.join(valid)})"
                )
        check_positive_ints(
            self, "vocab_size", "block_size", "batch_size", "batches_per_epoch", prefix="data."
        )
        if self.eval_stride is not None and not 1 <= self.eval_stride <= self.block_size:
            raise ValueError(
                f"data.eval_stride must be in [1, block_size={self.block_size}], got {self.eval_stride}"
            )
        if self.limit_tokens is not None and self.limit_tokens <= self.block_size:
            raise ValueError(
                f"data.limit_tokens must exceed block_size={self.block_size}, got {self.limit_tokens}"
            )


@dataclass(frozen=True)
class LMRunConfig:
    task: str = "language_model"
    out_dir: str = "runs/language_model"
    data: LMDataConfig = field(default_factory=LMDataConfig)
    model: GPTConfig | LSTMLMConfig = field(default_factory=GPTConfig)  # chosen by `model.type`
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SamplingConfig = field(default_factory=SamplingConfig)  # defaults of `tformer generate`


@dataclass(frozen=True)
class TextCodec:
    """Text <-> the ids of a token stream. Word-level streams mark each line end with EOS (the WikiText-2
    convention); character and byte-level streams keep the newline character itself."""

    tokenizer: Tokenizer
    eos_ends_lines: bool

    @classmethod
    def for_config(cls, data: LMDataConfig, tokenizer: Tokenizer) -> TextCodec:
        return cls(tokenizer, eos_ends_lines=data.tokenizer == "word")

    def encode(self, text: str) -> list[int]:
        if not self.eos_ends_lines:
            return self.tokenizer.encode(text)
        *full_lines, last = text.split("\n")
        eos = self.tokenizer.eos_id
        ids = [i for line in self.tokenizer.encode_batch(full_lines) for i in [*line, eos]]
        return ids + self.tokenizer.encode(last)

    def decode(self, ids: list[int]) -> str:
        if not self.eos_ends_lines:
            return self.tokenizer.decode(ids)
        lines, current = [], []
        for i in ids:
            if i == self.tokenizer.eos_id:
                lines.append(current)
                current = []
            else:
                current.append(i)
        return "\n".join(self.tokenizer.decode(line) for line in [*lines, current])

    def start_ids(self, prompt: str) -> list[int]:
        """The prompt's ids; an empty prompt starts a new line, which every stream has seen many times."""
        return self.encode(prompt) or self.encode("\n")


def _read_split(data: LMDataConfig, split: str) -> str:
    if split not in SPLITS[data.dataset]:
        raise ValueError(
            f"{data.dataset} has no {split!r} split here (valid: {', '.join(SPLITS[data.dataset])})"
        )
    if data.dataset == "tinyshakespeare":
        return read_tinyshakespeare(data.data_dir)[split]
    return "".join(line + "\n" for line in read_wikitext2(split, data.data_dir))


def _train_tokenizer(data: LMDataConfig, text: str) -> Tokenizer:
    if data.tokenizer == "char":
        return train_char_tokenizer([text])
    if data.tokenizer == "word":
        return train_word_tokenizer(text.split("\n"))
    return train_bpe_tokenizer(text.split("\n"), vocab_size=data.vocab_size)


def load_stream(data: LMDataConfig, codec: TextCodec, split: str) -> TextStream:
    """One split of the corpus as a token stream (its first `data.limit_tokens` tokens when set)."""
    return _encode_stream(codec, _read_split(data, split), limit=data.limit_tokens)


def _encode_stream(codec: TextCodec, text: str, *, limit: int | None) -> TextStream:
    return TextStream(torch.tensor(codec.encode(text), dtype=torch.long)[:limit])


def language_model_loss(model: nn.Module, batch: LMBatch) -> LossOutput:
    """Summed next-token cross-entropy over the scored targets of the batch."""
    out = model(batch.input_ids, targets=batch.targets)
    if (
        out.target_log_probs is not None
    ):  # an adaptive-softmax head scored the targets itself (0 where ignored)
        return LossOutput(loss_sum=-out.target_log_probs.sum(), n_items=batch.n_targets)
    loss_sum = label_smoothed_cross_entropy(
        out.logits, batch.targets, smoothing=0.0, ignore_index=IGNORE_INDEX, reduction="sum"
    )  # logits [B, T, V]
    return LossOutput(loss_sum=loss_sum, n_items=batch.n_targets)


@torch.no_grad()
def evaluate_stream(model: nn.Module, stream: TextStream, data: LMDataConfig) -> dict[str, float]:
    """Cross-entropy of every token of `stream` after the first (nats/token), its perplexity, the number of
    tokens scored, and for character models bits per character."""
    device = next(model.parameters()).device
    batches = stream.sequential_batches(
        batch_size=data.batch_size, block_size=data.block_size, stride=data.eval_stride
    )
    with eval_mode(model):
        total, count = total_loss(language_model_loss(model, batch.to(device)) for batch in batches)
    loss = total / max(count, 1)
    metrics = {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": float(count)}
    if data.tokenizer == "char":
        metrics["bpc"] = loss / math.log(2)
    return metrics


class LanguageModelTask:
    def __init__(self, config: LMRunConfig, *, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        data = config.data
        train_text = _read_split(data, "train")
        self.tokenizer = tokenizer or _train_tokenizer(data, train_text)
        self.codec = TextCodec.for_config(data, self.tokenizer)
        self.train_stream = _encode_stream(self.codec, train_text, limit=data.limit_tokens)
        self.valid_stream = load_stream(data, self.codec, "valid")

    def state_json(self) -> str:
        """What a checkpoint must keep for the model to be used: the tokenizer."""
        return self.tokenizer.to_json()

    def model_config(self) -> GPTConfig | LSTMLMConfig:
        """The run's model config completed with the data's vocabulary: the one place they meet."""
        model = self.config.model
        if self.config.data.block_size > model.context_length:
            raise ValueError(
                f"data.block_size={self.config.data.block_size} exceeds model.context_length={model.context_length}"
            )
        return dataclasses.replace(model, vocab_size=self.tokenizer.vocab_size)

    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterator[LMBatch]:
        data = self.config.data
        return self.train_stream.random_batches(
            batch_size=data.batch_size,
            block_size=data.block_size,
            n_batches=data.batches_per_epoch,
            seed=self.config.train.seed,
            epoch=epoch,
            rank=rank,
            world_size=world_size,
        )

    def loss(self, model: nn.Module, batch: LMBatch) -> LossOutput:
        return language_model_loss(model, batch)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = evaluate_stream(model, self.valid_stream, self.config.data)
        return {f"val_{name}": value for name, value in metrics.items()}


def evaluate_language_model(trained: TrainedModel, request: EvaluationRequest) -> Evaluation:
    """The cross-entropy and perplexity of every token of the split (and bits per character for characters)."""
    refuse_options(request, "language-model", "n", "beam_size")
    data = trained.config.data
    stream = load_stream(data, TextCodec.for_config(data, trained.state), request.split)
    metrics = {"split": request.split, **evaluate_stream(trained.model, stream, data)}
    summary = [
        f"{int(metrics['tokens'])} {request.split} tokens scored",
        f"  cross-entropy: {metrics['loss']:.4f} nats/token   perplexity: {metrics['ppl']:.2f}",
    ]
    if "bpc" in metrics:
        summary.append(f"  bits per character: {metrics['bpc']:.4f}")
    return Evaluation(metrics, summary)


LANGUAGE_MODEL = TaskKind(
    name="language_model",
    run_config=LMRunConfig,
    build=lambda config, state: LanguageModelTask(config, tokenizer=state),
    state_from_json=Tokenizer.from_json,
    evaluate=evaluate_language_model,
)
