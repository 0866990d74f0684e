"""One command per published row: train from scratch, pick the checkpoint (the average of the last ones, as the
paper does for translation; the best by validation loss for language models), evaluate, compare."""

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
    higher_is_better: bool = True  # BLEU: reach at least the target; loss, perplexity: at most
    split: str = "test"
    average_checkpoints: bool = True  # False: evaluate best.safetensors

    def reached(self, value: float) -> bool:
        if self.higher_is_better:
            return value >= self.target - self.tolerance
        return value <= self.target + self.tolerance


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
    "shakespeare_char": PublishedRow(
        preset="shakespeare_char",
        what="Tiny Shakespeare, character level, validation (last 10%)",
        metric="loss",
        target=1.45,
        tolerance=0.0,
        anchor="1.4697: nanoGPT shakespeare_char, 6 x 384, about 3 minutes on an A100",
        higher_is_better=False,
        split="valid",
        average_checkpoints=False,
    ),
    "wikitext2": PublishedRow(
        preset="wikitext2",
        what="WikiText-2, word level, test",
        metric="ppl",
        target=90.0,
        tolerance=0.0,
        anchor="65.8: AWD-LSTM (Merity et al., 2017); plain small models usually land above 100",
        higher_is_better=False,
        average_checkpoints=False,
    ),
}


def published_row(name: str) -> PublishedRow:
    if name not in ROWS:
        raise ValueError(f"no published row named {name!r} (valid: {', '.join(ROWS)})")
    return ROWS[name]


def reproduce(
    name: str, *, overrides: list[str], average: int = 5, device: str = "auto"
) -> tuple[Evaluation, Path]:
    """Train the row's preset, then evaluate on the row's split the average of its last `average` checkpoints
    (translation, as the paper does) or its best checkpoint (language models)."""
    if average < 1:
        raise ValueError(f"--average must be >= 1, got {average}")
    row = published_row(name)
    config = load_run_config(row.preset, overrides)
    _, _, out_dir = train(config)
    if row.average_checkpoints:
        checkpoint = average_checkpoints(
            last_n_checkpoints(out_dir, average), output=out_dir / "averaged.safetensors"
        )
    else:
        checkpoint = out_dir / "best.safetensors"
    return evaluate_checkpoint(checkpoint, split=row.split, device=device), checkpoint
