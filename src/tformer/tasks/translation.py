"""Translation as a task: sentence pairs -> tokenizer and batches -> seq2seq model -> loss, decoding, metrics.

The task owns everything data-shaped. The model gets its vocabulary size and padding id from here, in
`model_config`, and the trainer sees only `train_batches`, `loss` and `evaluate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tformer.checks import check_positive_ints
from tformer.data.batching import (
    Seq2SeqBatch,
    make_seq2seq_batch,
    pad_sequences,
    shard_batches,
    token_budget_batches,
)
from tformer.data.tokenizers import Tokenizer, TokenizerPair
from tformer.decoding import Hypothesis, Seq2SeqState, beam_search, greedy_search
from tformer.metrics.bleu import sacrebleu_scores, tokenized_lowercase_bleu
from tformer.metrics.text import exact_match
from tformer.models.rnn import LSTMSeq2SeqConfig
from tformer.models.seq2seq import Seq2SeqConfig
from tformer.nn.modes import eval_mode
from tformer.tasks.base import Evaluation, EvaluationRequest, TaskKind, TrainedModel
from tformer.tasks.translation_data import TranslationDataConfig, build_tokenizers, load_pairs
from tformer.training.losses import LossOutput, label_smoothed_cross_entropy, total_loss
from tformer.training.trainer import TrainConfig
from tformer.viz.attention import plot_attention
from tformer.viz.capture import capture_attention


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 1  # 1 = greedy
    length_penalty: float = 0.6  # GNMT alpha, as in the paper
    # Output length cap. One number for every sentence, so an output never depends on what it is batched with.
    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        check_positive_ints(self, "beam_size", "max_new_tokens", prefix="decode.")


@dataclass(frozen=True)
class TranslationRunConfig:
    task: str = "translation"
    out_dir: str = "runs/translation"
    data: TranslationDataConfig = field(default_factory=TranslationDataConfig)
    model: Seq2SeqConfig | LSTMSeq2SeqConfig = field(default_factory=Seq2SeqConfig)  # by `model.type`
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


class TranslationTask:
    def __init__(self, config: TranslationRunConfig, *, tokenizers: TokenizerPair | None = None) -> None:
        self.config = config
        self.train_pairs = load_pairs(config.data, "train", seed=config.train.seed)
        self.valid_pairs = load_pairs(config.data, "valid", seed=config.train.seed)
        self.tokenizers = tokenizers or build_tokenizers(config.data, self.train_pairs)
        self._train = self._encode(self.train_pairs)
        self._valid = self._encode(self.valid_pairs)

    def _encode(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]]]:
        return (
            self.tokenizers.source.encode_batch([s for s, _ in pairs]),
            self.tokenizers.target.encode_batch([t for _, t in pairs]),
        )

    def state_json(self) -> str:
        """What a checkpoint must keep for the model to be used: both tokenizers."""
        return self.tokenizers.to_json()

    def model_config(self) -> Seq2SeqConfig | LSTMSeq2SeqConfig:
        """The run's model config completed with the data's facts: the one place they meet."""
        src, tgt = self.tokenizers.source, self.tokenizers.target
        return dataclasses.replace(
            self.config.model, src_vocab_size=src.vocab_size, tgt_vocab_size=tgt.vocab_size, pad_id=tgt.pad_id
        )

    def _batches(self, data, *, epoch: int, shuffle: bool) -> list[list[int]]:
        src, tgt = data
        # +1 for the EOS (source) or BOS/EOS (target) each side gains in the batch
        lengths = [max(len(s), len(t)) + 1 for s, t in zip(src, tgt, strict=True)]
        return token_budget_batches(
            lengths,
            max_tokens=self.config.data.max_tokens,
            seed=self.config.train.seed,
            epoch=epoch,
            shuffle=shuffle,
        )

    def _make_batch(self, data, indices: list[int]) -> Seq2SeqBatch:
        src, tgt = data
        tok = self.tokenizers.target  # the special ids are the same in every tformer tokenizer
        return make_seq2seq_batch(
            [src[i] for i in indices],
            [tgt[i] for i in indices],
            pad_id=tok.pad_id,
            bos_id=tok.bos_id,
            eos_id=tok.eos_id,
        )

    def train_batches(self, epoch: int, *, rank: int = 0, world_size: int = 1) -> Iterator[Seq2SeqBatch]:
        batches = shard_batches(
            self._batches(self._train, epoch=epoch, shuffle=True), rank=rank, world_size=world_size
        )
        for indices in batches:
            yield self._make_batch(self._train, indices)

    def loss(self, model: nn.Module, batch: Seq2SeqBatch, *, smoothing: float | None = None) -> LossOutput:
        """Summed (label-smoothed) cross-entropy over the real target tokens.

        The model computes logits at batch.tgt_positions only ([N, V], not [B, T, V]): the output layer is the
        largest matmul of a step and a bucketed batch is still partly padding. Padding would add exactly 0
        to the sum, so the result is the same as over [B, T, V] with ignore_index.
        """
        smoothing = self.config.data.label_smoothing if smoothing is None else smoothing
        logits = model(
            batch.src_ids, batch.tgt_in, src_mask=batch.src_mask, tgt_positions=batch.tgt_positions
        ).logits  # [N, V]
        targets = batch.tgt_out.flatten().index_select(0, batch.tgt_positions)  # [B, T] -> [N]
        loss_sum = label_smoothed_cross_entropy(
            logits,
            targets,
            smoothing=smoothing,
            ignore_index=self.tokenizers.target.pad_id,
            reduction="sum",
        )
        return LossOutput(loss_sum=loss_sum, n_items=batch.tgt_mask.sum())

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation loss (no smoothing: a true cross-entropy); exact match and lowercased tokenized BLEU of
        the first `data.eval_decode` validation sentences, decoded with the run's decode settings."""
        device = next(model.parameters()).device
        total, count = total_loss(
            self.loss(model, self._make_batch(self._valid, indices).to(device), smoothing=0.0)
            for indices in self._batches(self._valid, epoch=0, shuffle=False)
        )
        metrics = {"val_loss": total / max(count, 1)}
        n = min(self.config.data.eval_decode, len(self.valid_pairs))
        if n:
            sources = [s for s, _ in self.valid_pairs[:n]]
            hypotheses = translate(model, self.tokenizers, sources, config=self.config.decode)
            texts, references = [h.text for h in hypotheses], [t for _, t in self.valid_pairs[:n]]
            metrics["exact_match"] = exact_match(texts, references)
            metrics["bleu"] = tokenized_lowercase_bleu(texts, references)
        return metrics


@dataclass
class Translation:
    text: str
    score: float
    tokens: list[int]
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # the n-best list, best first


def translate(
    model: nn.Module,
    tokenizers: TokenizerPair,
    sentences: Sequence[str],
    *,
    config: DecodeConfig,
    batch_size: int = 64,
    n_best: int = 1,
) -> list[Translation]:
    """Decode sentences in length-sorted batches (less padding), returned in input order."""
    device = next(model.parameters()).device
    source, target = tokenizers.source, tokenizers.target
    encoded = [ids + [source.eos_id] for ids in source.encode_batch(list(sentences))]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    results: list[Translation | None] = [None] * len(encoded)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            src_ids, src_mask = pad_sequences([encoded[i] for i in chunk], pad_id=source.pad_id)
            hyps = _search(
                model,
                src_ids.to(device),
                src_mask.to(device),
                target=target,
                config=config,
                limit=config.max_new_tokens,
                n_best=n_best,
            )
            for i, nbest in zip(chunk, hyps, strict=True):
                best = nbest[0]
                results[i] = Translation(
                    text=target.decode(best.tokens),
                    score=best.score,
                    tokens=best.tokens,
                    alternatives=[(target.decode(h.tokens), h.score) for h in nbest],
                )
    return results  # type: ignore[return-value]


def _search(
    model: nn.Module,
    src_ids: torch.Tensor,
    src_mask: torch.Tensor,
    *,
    target: Tokenizer,
    config: DecodeConfig,
    limit: int,
    n_best: int,
) -> list[list[Hypothesis]]:
    state = Seq2SeqState(model, src_ids, src_mask)
    common = dict(
        batch_size=src_ids.shape[0],
        bos_id=target.bos_id,
        eos_id=target.eos_id,
        max_new_tokens=limit,
    )
    if config.beam_size == 1 and n_best == 1:
        return [[h] for h in greedy_search(state, **common)]
    return beam_search(
        state,
        beam_size=max(config.beam_size, n_best),
        length_penalty=config.length_penalty,
        n_best=n_best,
        **common,
    )


def translation_attention(
    model: nn.Module,
    tokenizers: TokenizerPair,
    sentence: str,
    result: Translation,
    *,
    layer: int = -1,
    head: int | None = None,
) -> torch.Tensor:
    """Float[T + 1, S]: the cross-attention of `layer` (head `head`, or the mean of the heads) while the model
    wrote each token of `result` and then the end, over the source tokens and EOS.

    Recomputed by one teacher-forced pass over the output, which a causal decoder computes exactly as it did
    token by token, so the search itself never carries attention weights."""
    source, target = tokenizers.source, tokenizers.target
    device = next(model.parameters()).device
    src_ids = torch.tensor([source.encode(sentence) + [source.eos_id]], device=device)  # [1, S]
    tgt_ids = torch.tensor([[target.bos_id, *result.tokens]], device=device)  # [1, T + 1]
    with eval_mode(model), torch.no_grad(), capture_attention(model) as maps:
        model(src_ids, tgt_ids)
    weights = maps.cross_attention(layer=layer)[0]  # [H, T + 1, S]
    if head is None:
        return weights.mean(dim=0)
    if not 0 <= head < weights.shape[0]:
        raise ValueError(
            f"head {head} is out of range: the layer has {weights.shape[0]} head(s), 0..{weights.shape[0] - 1}"
        )
    return weights[head]


def plot_translation_attention(
    model: nn.Module,
    tokenizers: TokenizerPair,
    sentence: str,
    result: Translation,
    *,
    path: Path,
    layer: int = -1,
    head: int | None = None,
) -> Path:
    """Cross-attention heatmap of one translation: source tokens (and EOS) across, output tokens and the end
    down; the mean over heads of the last layer unless `layer` and `head` say otherwise."""
    weights = translation_attention(model, tokenizers, sentence, result, layer=layer, head=head)
    # "·" makes a space token visible on the axis
    src, tgt = tokenizers.source, tokenizers.target
    source = [src.decode([i]).replace(" ", "·") for i in src.encode(sentence)] + ["</s>"]
    target = [tgt.decode([i]).replace(" ", "·") for i in result.tokens] + ["</s>"]
    which = f"layer {layer}, " + ("mean of heads" if head is None else f"head {head}")
    return plot_attention(
        weights,
        source_tokens=source,
        target_tokens=target,
        path=path,
        title=f"{sentence!r} -> {result.text!r} ({which})",
    )


def score_translations(hypotheses: list[str], references: list[str]) -> dict[str, float | str]:
    """Every metric we report, named for what it is: exact match, BLEU on lowercased tokenized text (how the
    published Multi30k numbers are computed), and cased detokenized sacreBLEU and chrF with their signatures."""
    return {
        "exact_match": exact_match(hypotheses, references),
        "bleu_lowercase_tokenized": tokenized_lowercase_bleu(hypotheses, references),
        **sacrebleu_scores(hypotheses, references),
    }


def evaluate_translation(trained: TrainedModel, request: EvaluationRequest) -> Evaluation:
    """Decode the split (its first n pairs if given) with the run's decode settings, or another beam, and
    score the hypotheses against the references."""
    config = trained.config
    decode = config.decode
    if request.beam_size is not None:
        decode = dataclasses.replace(decode, beam_size=request.beam_size)
    data = config.data
    if data.dataset == "dates" and request.n is not None:
        data = dataclasses.replace(data, n_valid=request.n)  # generated: draw exactly n held-out pairs
    pairs = load_pairs(data, request.split, seed=config.train.seed)[: request.n]
    outputs = translate(trained.model, trained.state, [s for s, _ in pairs], config=decode)
    hypotheses, references = [o.text for o in outputs], [t for _, t in pairs]
    m = {
        "split": request.split,
        "n": len(pairs),
        "beam_size": decode.beam_size,
        **score_translations(hypotheses, references),
    }
    summary = [
        f"{m['n']} {request.split} sentences, beam {m['beam_size']}",
        f"  exact match:                       {100 * m['exact_match']:.2f}%",
        f"  BLEU, lowercased tokenized text:   {m['bleu_lowercase_tokenized']:.2f}",
        f"  sacreBLEU, cased detokenized:      {m['sacrebleu']:.2f}  ({m['sacrebleu_signature']})",
        f"  chrF:                              {m['chrf']:.2f}  ({m['chrf_signature']})",
    ]
    return Evaluation(m, summary, hypotheses, references)


TRANSLATION = TaskKind(
    name="translation",
    run_config=TranslationRunConfig,
    build=lambda config, state: TranslationTask(config, tokenizers=state),
    state_from_json=TokenizerPair.from_json,
    evaluate=evaluate_translation,
)
