"""The embedded demo: train a small Transformer to rewrite human-written dates into ISO form, then show it.

No downloads and no data files: the data is generated (tformer.data.dates), held-out dates never occur in
training in any style, and the whole run fits in a few minutes on two CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tformer.data.dates import generate_date_pairs
from tformer.metrics.text import exact_match
from tformer.tasks.runs import load_run_config, load_trained, train
from tformer.tasks.translation import plot_translation_attention, translate

EXAMPLES = [
    "23rd of November 2026",
    "Nov 23, '26",
    "23.11.2026",
    "dreiundzwanzigster November 2026",
    "le 23 novembre 2026",
    "Monday, 23 November 2026",
    "14 juillet 1989",
    "9. Mai 1950",
]


@dataclass
class DemoResult:
    exact_match: float
    n_test: int
    train_seconds: float
    steps: int
    checkpoint: Path
    examples: list[tuple[str, str]]
    attention_png: Path


def run_demo(*, overrides: list[str], n_test: int = 1000) -> DemoResult:
    config = load_run_config("demo_dates", overrides)
    start = time.perf_counter()
    result, task, out_dir = train(config)
    train_seconds = time.perf_counter() - start
    # Evaluate the best checkpoint, loaded exactly as a user's `tformer translate` would load it.
    trained = load_trained(out_dir / "best.safetensors")
    model, tokenizers = trained.model, trained.tokenizers
    test_pairs = generate_date_pairs(n_test, seed=config.train.seed, split="test")
    outputs = translate(model, tokenizers, [s for s, _ in test_pairs], config=config.decode)
    accuracy = exact_match([o.text for o in outputs], [t for _, t in test_pairs])
    shown = translate(model, tokenizers, EXAMPLES, config=config.decode, return_attention=True)
    png = plot_translation_attention(tokenizers, EXAMPLES[0], shown[0], path=out_dir / "attention.png")
    return DemoResult(
        exact_match=accuracy,
        n_test=n_test,
        train_seconds=train_seconds,
        steps=result.step,
        checkpoint=out_dir / "best.safetensors",
        examples=[(src, out.text) for src, out in zip(EXAMPLES, shown, strict=True)],
        attention_png=png,
    )
