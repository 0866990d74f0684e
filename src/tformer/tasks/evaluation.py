"""Evaluating a trained checkpoint on a held-out split: translation models decode and score the hypotheses;
language models report the cross-entropy and perplexity of the split."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tformer.metrics.bleu import sacrebleu_scores, tokenized_lowercase_bleu
from tformer.metrics.text import exact_match
from tformer.tasks.language_model import TextCodec, evaluate_stream, load_stream
from tformer.tasks.runs import TrainedModel, load_trained
from tformer.tasks.translation import translate
from tformer.tasks.translation_data import load_pairs


@dataclass
class Evaluation:
    metrics: dict[str, float | int | str]
    hypotheses: list[str]  # empty for language models
    references: list[str]


def score_translations(hypotheses: list[str], references: list[str]) -> dict[str, float | str]:
    """Every metric we report, named for what it is: exact match, BLEU on lowercased tokenized text (how the
    published Multi30k numbers are computed), and cased detokenized sacreBLEU and chrF with their signatures."""
    scores = sacrebleu_scores(hypotheses, references)
    return {
        "exact_match": exact_match(hypotheses, references),
        "bleu_lowercase_tokenized": tokenized_lowercase_bleu(hypotheses, references),
        **scores,
    }


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    split: str,
    n: int | None = None,
    beam_size: int | None = None,
    device: str = "auto",
) -> Evaluation:
    """Score the checkpoint on `split` with its own config. Translation: decode the split (the first n pairs
    if given). Language model: score every token of the split (n and beam_size do not apply)."""
    trained = load_trained(checkpoint, device=device)
    if trained.config.task == "language_model":
        if n is not None or beam_size is not None:
            raise ValueError("n and beam size apply to translation checkpoints, not to language models")
        return _evaluate_language_model(trained, split=split)
    config = trained.config
    decode = config.decode if beam_size is None else dataclasses.replace(config.decode, beam_size=beam_size)
    data = config.data
    if data.dataset == "dates" and n is not None:
        data = dataclasses.replace(data, n_valid=n)  # generated: draw exactly n held-out pairs
    pairs = load_pairs(data, split, seed=config.train.seed)[:n]
    outputs = translate(trained.model, trained.tokenizers, [s for s, _ in pairs], config=decode)
    hypotheses, references = [o.text for o in outputs], [t for _, t in pairs]
    metrics = {"split": split, "n": len(pairs), "beam_size": decode.beam_size}
    return Evaluation({**metrics, **score_translations(hypotheses, references)}, hypotheses, references)


def _evaluate_language_model(trained: TrainedModel, *, split: str) -> Evaluation:
    data = trained.config.data
    stream = load_stream(data, TextCodec.for_config(data, trained.tokenizers), split)
    metrics = evaluate_stream(trained.model, stream, data)
    return Evaluation({"split": split, **metrics}, [], [])
