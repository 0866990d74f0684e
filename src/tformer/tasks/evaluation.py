"""Evaluating a trained translation checkpoint on a held-out split: decode, score, save the hypotheses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tformer.metrics.bleu import sacrebleu_scores, tokenized_lowercase_bleu
from tformer.metrics.text import exact_match
from tformer.tasks.runs import load_trained
from tformer.tasks.translation import translate
from tformer.tasks.translation_data import load_pairs


@dataclass
class Evaluation:
    metrics: dict[str, float | int | str]
    hypotheses: list[str]
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
    """Decode `split` ("valid" or "test"; the first n pairs if given) with the checkpoint's own config."""
    trained = load_trained(checkpoint, device=device)
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
