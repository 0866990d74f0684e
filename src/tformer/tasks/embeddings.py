"""Word vectors as a task: train word2vec on a corpus, query the vectors, and show what they cannot do.

The vectors file is safetensors: one tensor "vectors" [V, D] (the input table) and, in the header metadata,
JSON with the words (row order) and the settings that trained them. Loading runs no code from the file.

`context_similarities` is the comparison the Transformer's motivation makes: word2vec has one vector per word,
whatever the sentence, while a language model's hidden state for the same word changes with its context.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from tformer.checks import check_positive_int, check_positive_ints
from tformer.data.lm_corpora import read_wikitext2
from tformer.data.skipgram import (
    DEFAULT_SAMPLE,
    NegativeSampler,
    Word2VecBatch,
    build_vocabulary,
    iter_batches,
    keep_probabilities,
)
from tformer.models.word2vec import (
    Word2Vec,
    Word2VecConfig,
    Word2VecMode,
    negative_sampling_loss,
    parse_mode,
)
from tformer.seeding import seed_everything
from tformer.training.distributed import resolve_device

_META_KEY = "tformer.word2vec"
_TENSOR_KEY = "vectors"
FORMAT_VERSION = 1
# word2vec.c: -alpha 0.025 for skip-gram, 0.05 for CBOW, decayed linearly to 1e-4 of it over training.
_START_LR = {Word2VecMode.SKIPGRAM: 0.025, Word2VecMode.CBOW: 0.05}
_MIN_LR_FRACTION = 1e-4


@dataclass(frozen=True)
class Word2VecTraining:
    """Defaults are word2vec.c's (size 100, window 5, negative 5, sample 1e-3, min-count 5, iter 5)."""

    dim: int = 100
    mode: Word2VecMode = Word2VecMode.SKIPGRAM
    window: int = 5
    negatives: int = 5
    sample: float = DEFAULT_SAMPLE  # subsampling threshold t; 0 turns subsampling off
    min_count: int = 5
    epochs: int = 5
    batch_size: int = 1024
    learning_rate: float | None = None  # None: 0.025 for skip-gram, 0.05 for CBOW
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_mode(self.mode))
        check_positive_ints(self, "dim", "window", "negatives", "min_count", "epochs", "batch_size")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(
                f"learning_rate must be > 0 (or None for word2vec.c's), got {self.learning_rate}"
            )

    @property
    def start_lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else _START_LR[self.mode]


class WordVectors:
    """Words and their vectors [V, D]; cosine neighbours and analogies."""

    def __init__(self, words: Sequence[str], vectors: Tensor, *, settings: dict | None = None) -> None:
        if vectors.dim() != 2 or vectors.shape[0] != len(words):
            raise ValueError(
                f"vectors must be [{len(words)}, D] for {len(words)} words, got {tuple(vectors.shape)}"
            )
        self.words = tuple(words)
        self._index = {word: i for i, word in enumerate(self.words)}
        if len(self._index) != len(self.words):
            raise ValueError("words must be distinct")
        self.vectors = vectors.detach().float().cpu()
        self._unit = F.normalize(self.vectors, dim=1)  # [V, D], rows of length 1 (zero rows stay zero)
        self.settings = dict(settings or {})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def index_of(self, word: str) -> int:
        if word not in self._index:
            close = difflib.get_close_matches(word, self.words, n=5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise ValueError(f"word {word!r} is not in the vocabulary of {len(self)} words{hint}")
        return self._index[word]

    def vector(self, word: str) -> Tensor:
        return self.vectors[self.index_of(word)]

    def neighbors(self, word: str, *, k: int = 10) -> list[tuple[str, float]]:
        """The k words of highest cosine similarity to `word`, itself excluded."""
        index = self.index_of(word)
        return self._nearest(self._unit[index], exclude={index}, k=k)

    def analogy(self, a: str, b: str, c: str, *, k: int = 1) -> list[tuple[str, float]]:
        """a : b :: c : ?  The words nearest (cosine) to unit(b) - unit(a) + unit(c), a, b and c excluded,
        as word2vec's compute-accuracy; e.g. analogy("man", "king", "woman") -> queen."""
        ia, ib, ic = (self.index_of(word) for word in (a, b, c))
        query = self._unit[ib] - self._unit[ia] + self._unit[ic]
        return self._nearest(F.normalize(query, dim=0), exclude={ia, ib, ic}, k=k)

    def _nearest(self, query: Tensor, *, exclude: set[int], k: int) -> list[tuple[str, float]]:
        check_positive_int("k", k)
        scores = self._unit @ query  # [V, D] @ [D] -> [V]
        scores[list(exclude)] = -torch.inf
        top = torch.topk(scores, min(k, len(self) - len(exclude)))
        return [
            (self.words[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write safetensors (the vectors) + JSON metadata (words, settings), atomically."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"vectors file {path} must end in .safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format_version": FORMAT_VERSION, "words": list(self.words), "settings": self.settings}
        partial = path.with_suffix(".tmp")
        save_file({_TENSOR_KEY: self.vectors.contiguous()}, partial, metadata={_META_KEY: json.dumps(header)})
        os.replace(partial, path)  # a crash leaves the old file or the new one, never half of one
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WordVectors:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"vectors file {path} does not exist (make one with `tformer embed train`)"
            )
        expected = "expected a vectors file written by `tformer embed train`"
        try:
            with safe_open(path, framework="pt", device="cpu") as file:
                metadata = file.metadata() or {}
                vectors = file.get_tensor(_TENSOR_KEY) if _TENSOR_KEY in file.keys() else None  # noqa: SIM118
        except Exception as error:  # safetensors has its own error types for every kind of bad file
            raise ValueError(f"{path} is not a readable safetensors file ({error}); {expected}") from error
        try:
            header = json.loads(metadata[_META_KEY])
            words, settings, version = header["words"], header["settings"], header["format_version"]
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} has no word2vec metadata ({error!r}); {expected}") from error
        if version != FORMAT_VERSION or vectors is None or not all(isinstance(w, str) for w in words):
            raise ValueError(
                f"{path}: format version {version!r}, or its words or vectors are missing; {expected}"
            )
        return cls(words, vectors, settings=settings)


def train_word_vectors(
    sentences: Sequence[str],
    *,
    training: Word2VecTraining = Word2VecTraining(),
    device: str = "cpu",
    progress: bool = False,
) -> WordVectors:
    """word2vec on `sentences` (whitespace-separated words, one sentence or line each), with batched SGD.

    The loss of a batch is the sum over its examples, so one step is the C code's per-example updates added
    together; the learning rate decays linearly with the words consumed, as there.
    """
    seed_everything(training.seed)  # the input table's uniform init
    rng = np.random.default_rng(training.seed)  # every data draw
    vocabulary = build_vocabulary(sentences, min_count=training.min_count)
    encoded = vocabulary.encode(sentences)
    model = Word2Vec(Word2VecConfig(vocab_size=len(vocabulary), dim=training.dim, mode=training.mode))
    model.to(resolve_device(device))  # after the CPU init, so a seed gives the same start on any device
    optimizer = torch.optim.SGD(model.parameters(), lr=training.start_lr)  # SGD takes sparse gradients
    keep = keep_probabilities(vocabulary.counts, sample=training.sample)
    sampler = NegativeSampler(vocabulary.counts)
    # tqdm draws only on a terminal: in a log file a bar redrawn per batch is noise
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=training.epochs, unit="epoch", disable=not show, dynamic_ncols=True)
    epoch_losses = []  # mean loss per example, per epoch: kept with the vectors as the training record
    for epoch in range(training.epochs):
        loss_sum, examples = torch.zeros((), device=model.vectors.device), 0  # no GPU sync per batch
        batches = iter_batches(
            encoded,
            mode=training.mode.value,
            window=training.window,
            keep_probability=keep,
            sampler=sampler,
            negatives=training.negatives,
            batch_size=training.batch_size,
            rng=rng,
        )
        for batch in batches:
            batch = batch.to(model.vectors.device)
            done = (epoch + batch.progress) / training.epochs
            lr = training.start_lr * max(_MIN_LR_FRACTION, 1.0 - done)
            loss = _sgd_step(model, optimizer, batch, lr=lr)
            loss_sum, examples = loss_sum + loss, examples + len(batch.targets)
            if show:
                bar.set_postfix(loss=f"{loss_sum.item() / examples:.3f}", refresh=False)
                bar.update((epoch + batch.progress) - bar.n)
        epoch_losses.append(loss_sum.item() / max(examples, 1))
    bar.close()
    settings = {
        **dataclasses.asdict(training),
        "mode": training.mode.value,
        "vocab_size": len(vocabulary),
        "epoch_losses": epoch_losses,
    }
    return WordVectors(vocabulary.words, model.vectors, settings=settings)


def _sgd_step(
    model: Word2Vec, optimizer: torch.optim.Optimizer, batch: Word2VecBatch, *, lr: float
) -> Tensor:
    """One update on the summed loss of `batch` at learning rate `lr`; returns that loss (detached)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    output = model(
        batch.inputs, input_mask=batch.input_mask, targets=batch.targets, negatives=batch.negatives
    )
    loss = negative_sampling_loss(
        output.positive_logits,
        output.negative_logits,
        negative_mask=batch.negatives != batch.targets[:, None],  # [B, K]
        reduction="sum",
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_wikitext2_vectors(
    out: str | os.PathLike[str],
    *,
    training: Word2VecTraining,
    data_dir: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> tuple[WordVectors, Path, float]:
    """Train on WikiText-2 train (word level, lines as sentences) and save: (vectors, path, seconds)."""
    if Path(out).suffix != ".safetensors":  # fail before the training, not after it
        raise ValueError(f"--out {out} must end in .safetensors")
    lines = [line for line in read_wikitext2("train", root=data_dir) if line.strip()]
    start = time.perf_counter()
    vectors = train_word_vectors(lines, training=training, device=device, progress=progress)
    seconds = time.perf_counter() - start
    where = str(resolve_device(device))
    vectors.settings.update(
        corpus="wikitext2/train", seconds=round(seconds, 1), device=where, torch=torch.__version__
    )
    return vectors, vectors.save(out), seconds


class HasHiddenStates(Protocol):
    def hidden_states(self, input_ids: Tensor) -> Tensor: ...  # Long[B, T] -> [B, T, D]


class Codec(Protocol):
    unk_id: int

    def encode(self, text: str) -> list[int]: ...


@dataclass
class ContextTable:
    """Cosine similarities [n, n] of one word's vectors across n sentences, per model."""

    word: str
    sentences: list[str]
    word2vec: Tensor
    language_model: Tensor

    def to_markdown(self) -> str:
        n = len(self.sentences)
        lines = [f"**{self.word}**", ""] + [f"{i + 1}. {s}" for i, s in enumerate(self.sentences)] + [""]
        lines += ["| pair | word2vec | language model |", "|---|---:|---:|"]
        for i in range(n):
            for j in range(i + 1, n):
                lines.append(
                    f"| {i + 1}-{j + 1} | {self.word2vec[i, j]:.3f} | {self.language_model[i, j]:.3f} |"
                )
        return "\n".join(lines)


def context_similarities(
    word: str,
    sentences: Sequence[str],
    *,
    word_vectors: WordVectors,
    language_model: HasHiddenStates,
    codec: Codec,
) -> ContextTable:
    """For `word` in each of `sentences`: its word2vec vector (the same in every one, so all similarities are
    1) against the language model's hidden state at the word's last token (which depends on the sentence)."""
    if len(sentences) < 2:
        raise ValueError(f"give at least 2 sentences to compare, got {len(sentences)}")
    static = word_vectors.vector(word).expand(len(sentences), -1)  # [D] -> [n, D]: one vector per word
    contextual = torch.stack(
        [_contextual_vector(word, s, language_model, codec) for s in sentences]
    )  # [n, D]
    return ContextTable(word, list(sentences), _cosine_matrix(static), _cosine_matrix(contextual))


def _contextual_vector(word: str, sentence: str, language_model: HasHiddenStates, codec: Codec) -> Tensor:
    match = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", sentence)
    if match is None:
        raise ValueError(f"word {word!r} does not occur (as a whole word) in sentence {sentence!r}")
    ids = codec.encode(sentence)
    through_word = codec.encode(sentence[: match.end()])
    # Valid only when the tokens up to the word are a prefix of the sentence's tokens (a token boundary at the
    # word's end); otherwise, e.g. "bank," as one word-level token, no token is the word's own.
    if not through_word or ids[: len(through_word)] != through_word:
        raise ValueError(
            f"{word!r} in {sentence!r} does not end on a token boundary of the tokenizer; "
            "separate it from what follows (e.g. 'bank ,' for a word-level tokenizer)"
        )
    if through_word[-1] == codec.unk_id:  # the model would show its vector for <unk>, not for the word
        raise ValueError(f"the language model's tokenizer has no token for {word!r} (it encodes to <unk>)")
    was_training = getattr(language_model, "training", False)
    if was_training:
        language_model.eval()  # no dropout: the vectors must depend on the sentence only
    try:
        with torch.no_grad():
            hidden = language_model.hidden_states(torch.tensor([ids]))  # [1, T, D]
    finally:
        if was_training:
            language_model.train()
    return hidden[0, len(through_word) - 1].float().cpu()


def _cosine_matrix(vectors: Tensor) -> Tensor:
    unit = F.normalize(vectors, dim=1)  # [n, D]
    return unit @ unit.T  # [n, n]
