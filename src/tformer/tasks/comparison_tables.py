"""The pure parts of `tformer compare`: numbers in, rows and text out (length buckets, what a run's log says,
markdown tables), so they are tested without training. tasks/comparison.py measures and plots with them."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tformer.metrics.bleu import tokenized_lowercase_bleu
from tformer.training.logging import JSONL_NAME

MODEL_NAMES = {
    "transformer": "Transformer",
    "lstm_attention": "LSTM + attention",
    "gpt": "GPT",
    "lstm": "LSTM",
}
# Source-sentence lengths in words: each bucket holds the lengths up to its bound, the last one everything longer.
LENGTH_BOUNDS = (10, 15, 20, 25)


@dataclass(frozen=True)
class BucketScore:
    label: str  # "1-10", "11-15", ..., "26+"
    n: int  # sentences in the bucket
    bleu: float | None  # lowercased tokenized BLEU of the bucket; None when it holds no sentence


@dataclass(frozen=True)
class TranslationRow:
    run: str
    model: str  # the run config's model.type
    parameters: int
    metric: str  # train.metric: the validation score that chose best.safetensors
    bleu: float  # lowercased tokenized
    sacrebleu: float  # cased, detokenized
    chrf: float
    best_step: int | None
    seconds_to_best: float | None  # training-update wall time at the best validation step; None: not logged
    tokens_per_s: float | None  # median logged training throughput (target tokens); None: not logged
    greedy_sentences_per_s: float
    beam_size: int
    beam_sentences_per_s: float


@dataclass(frozen=True)
class LMRow:
    run: str
    model: str
    parameters: int
    test_ppl: float
    tokens_per_s: float | None
    test_set: str  # e.g. "wikitext2 test, word tokens"


def bucket_labels(bounds: Sequence[int] = LENGTH_BOUNDS) -> list[str]:
    lows = [1, *(b + 1 for b in bounds)]
    return [f"{low}-{high}" for low, high in zip(lows, bounds, strict=False)] + [f"{lows[-1]}+"]


def length_buckets(sources: Sequence[str], bounds: Sequence[int] = LENGTH_BOUNDS) -> list[list[int]]:
    """Indices of the sentences in each length bucket, by whitespace-separated words of the source."""
    if not bounds or any(b <= a for a, b in zip([0, *bounds], bounds, strict=False)):
        raise ValueError(f"length bounds must be positive and increasing, got {list(bounds)}")
    buckets: list[list[int]] = [[] for _ in range(len(bounds) + 1)]
    for index, sentence in enumerate(sources):
        words = len(sentence.split())
        buckets[sum(words > bound for bound in bounds)].append(index)
    return buckets


def bleu_by_length(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    bounds: Sequence[int] = LENGTH_BOUNDS,
) -> list[BucketScore]:
    """Lowercased tokenized BLEU of each source-length bucket (corpus BLEU over the bucket's sentences)."""
    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(
            f"need one hypothesis and reference per source: {len(sources)} sources, "
            f"{len(hypotheses)} hypotheses, {len(references)} references"
        )
    scores = []
    for label, indices in zip(bucket_labels(bounds), length_buckets(sources, bounds), strict=True):
        bleu = None
        if indices:
            bleu = tokenized_lowercase_bleu(
                [hypotheses[i] for i in indices], [references[i] for i in indices]
            )
        scores.append(BucketScore(label, len(indices), bleu))
    return scores


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's log.jsonl, in order."""
    path = Path(run_dir) / JSONL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: RUN_DIR must be an output directory of `tformer train`")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON record ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(f"{path}:{number}: a log record must be an object with an int 'step'")
        records.append(record)
    return records


def seconds_at_step(records: Sequence[dict[str, Any]], *, step: int | None, metric: str) -> float | None:
    """The logged train_seconds of the evaluation at `step` (None: no such record, or an older log)."""
    for record in records:
        if record["step"] == step and metric in record and record.get("train_seconds") is not None:
            return float(record["train_seconds"])
    return None


def median_throughput(records: Sequence[dict[str, Any]]) -> float | None:
    """Median of the logged items/s (target tokens for translation and language models). The median, because
    the first interval holds warm-up and compilation and would drag a mean down."""
    rates = [float(r["items_per_s"]) for r in records if r.get("items_per_s") is not None]
    return statistics.median(rates) if rates else None


def validation_curve(records: Sequence[dict[str, Any]], *, metric: str) -> list[tuple[float, float]]:
    """(train_seconds, metric) of every evaluation record that has both."""
    return [
        (float(r["train_seconds"]), float(r[metric]))
        for r in records
        if r.get(metric) is not None and r.get("train_seconds") is not None
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns: {list(row)}")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _number(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# fmt: off
TRANSLATION_HEADERS = (
    "run", "model", "parameters", "BLEU (lowercased, tokenized)", "sacreBLEU (cased)", "chrF",
    "time to best validation (step)", "train tokens/s", "greedy sent/s", "beam sent/s (k)",
)
# fmt: on


def translation_table(rows: Sequence[TranslationRow]) -> str:
    cells = [
        [r.run, MODEL_NAMES.get(r.model, r.model), f"{r.parameters:,}"]
        + [f"{r.bleu:.2f}", f"{r.sacrebleu:.2f}", f"{r.chrf:.2f}"]
        + [f"{_duration(r.seconds_to_best)} ({r.best_step})", _number(r.tokens_per_s, ",.0f")]
        + [f"{r.greedy_sentences_per_s:,.1f}", f"{r.beam_sentences_per_s:,.1f} (k={r.beam_size})"]
        for r in rows
    ]
    return markdown_table(TRANSLATION_HEADERS, cells)


def length_table(runs: Sequence[str], buckets: Sequence[Sequence[BucketScore]]) -> str:
    """Buckets down, runs across; every run must be scored on the same sentences."""
    if not buckets:
        raise ValueError("length_table needs at least one run")
    reference = [(b.label, b.n) for b in buckets[0]]
    for run, scores in zip(runs, buckets, strict=True):
        if [(b.label, b.n) for b in scores] != reference:
            raise ValueError(f"run {run!r} was scored on other sentences: buckets {scores} vs {reference}")
    rows = [
        [label, str(n), *(_number(scores[i].bleu, ".2f") for scores in buckets)]
        for i, (label, n) in enumerate(reference)
    ]
    return markdown_table(["source words", "sentences", *runs], rows)


def lm_table(rows: Sequence[LMRow]) -> str:
    cells = [
        [r.run, MODEL_NAMES.get(r.model, r.model), f"{r.parameters:,}", f"{r.test_ppl:.2f}"]
        + [_number(r.tokens_per_s, ",.0f")]
        for r in rows
    ]
    return markdown_table(["run", "model", "parameters", "test perplexity", "train tokens/s"], cells)


# ---- measuring runs ----
