"""One command per published row: train from scratch, average the last checkpoints, evaluate, compare."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tformer.tasks.evaluation import Evaluation, evaluate_checkpoint
from tformer.tasks.runs import load_run_config, train
from tformer.training.averaging import average_checkpoints, last_n_checkpoints


@dataclass(frozen=True)
class PublishedRow:
    preset: str
    what: str
    metric: str  # a key of the evaluation metrics
    target: float  # what tformer must reach
    tolerance: float  # run-to-run spread we accept around the target
    anchor: str  # the published number it is measured against


ROWS = {
    "multi30k_de_en": PublishedRow(
        preset="multi30k_de_en",
        what="Multi30k De->En, test_2016_flickr",
        metric="bleu_lowercase_tokenized",
        target=40.0,
        tolerance=1.0,
        anchor="36.52: 3+3-layer 256-wide Transformer, bentrevett/pytorch-seq2seq (lowercased, spaCy-tokenized)",
    ),
    "multi30k_en_de": PublishedRow(
        preset="multi30k_en_de",
        what="Multi30k En->De, test_2016_flickr",
        metric="bleu_lowercase_tokenized",
        target=41.0,
        tolerance=1.0,
        anchor="about 41: text-only Transformer baselines in the multimodal-MT literature",
    ),
}


def published_row(name: str) -> PublishedRow:
    if name not in ROWS:
        raise ValueError(f"no published row named {name!r} (valid: {', '.join(ROWS)})")
    return ROWS[name]


def reproduce(
    name: str, *, overrides: list[str], average: int = 5, device: str = "auto"
) -> tuple[Evaluation, Path]:
    """Train the row's preset, average its last `average` checkpoints (as the paper does) and evaluate on test."""
    if average < 1:
        raise ValueError(f"--average must be >= 1, got {average}")
    row = published_row(name)
    config = load_run_config(row.preset, overrides)
    _, _, out_dir = train(config)
    averaged = average_checkpoints(
        last_n_checkpoints(out_dir, average), output=out_dir / "averaged.safetensors"
    )
    return evaluate_checkpoint(averaged, split="test", device=device), averaged
