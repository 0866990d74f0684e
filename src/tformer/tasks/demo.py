"""The embedded demo: train a small Transformer to rewrite human-written dates into ISO form, then show it.

No downloads and no data files: the data is generated (tformer.data.dates), held-out dates never occur in
training in any style, and the whole run fits in a few minutes on two CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tformer.tasks.evaluation import evaluate_checkpoint
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
    result, _, out_dir = train(config)
    train_seconds = time.perf_counter() - start
    # Score the best checkpoint exactly as `tformer evaluate` would, then show it as `tformer translate` would.
    best = out_dir / "best.safetensors"
    evaluation = evaluate_checkpoint(best, split="test", n=n_test, device=config.train.device)
    trained = load_trained(best, device=config.train.device)
    shown = translate(trained.model, trained.state, EXAMPLES, config=config.decode)
    png = plot_translation_attention(
        trained.model, trained.state, EXAMPLES[0], shown[0], path=out_dir / "attention.png"
    )
    return DemoResult(
        exact_match=evaluation.metrics["exact_match"],
        n_test=n_test,
        train_seconds=train_seconds,
        steps=result.step,
        checkpoint=best,
        examples=[(src, out.text) for src, out in zip(EXAMPLES, shown, strict=True)],
        attention_png=png,
    )
