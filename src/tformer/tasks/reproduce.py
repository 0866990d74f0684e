"""One command per published row: train from scratch, pick the checkpoint (the average of the last ones, as the
paper does for translation; the best by validation loss for language models), evaluate, compare.

A row has a recipe per machine class: the CPU recipe reaches its target on 2 CPU cores within a fixed budget of
training minutes (the preset's train.budget_minutes), the GPU recipe is the longer run a GPU affords. `reproduce`
runs the GPU recipe when the device is a GPU and the CPU recipe otherwise, and says which one ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tformer.checks import check_positive_int
from tformer.tasks.base import Evaluation
from tformer.tasks.evaluation import evaluate_checkpoint
from tformer.tasks.runs import load_run_config, train
from tformer.training.averaging import average_checkpoints, checkpoints_near_the_end
from tformer.training.run_state import Progress

MACHINES = ("cpu", "gpu")


@dataclass(frozen=True)
class Recipe:
    preset: str
    target: float | None  # what tformer must reach; None: the row is reported, not judged
    tolerance: float = 0.0  # run-to-run spread we accept around the target
    budget: str = ""  # what the recipe is allowed, in words, for the printout


@dataclass(frozen=True)
class PublishedRow:
    what: str
    metric: str  # a key of the evaluation metrics
    anchor: str  # the published number it is measured against
    recipes: dict[str, Recipe]  # by machine class: "cpu", "gpu"
    higher_is_better: bool = True  # BLEU: reach at least the target; loss, perplexity: at most
    split: str = "test"
    average_checkpoints: bool = True  # False: evaluate best.safetensors

    def reached(self, value: float, recipe: Recipe) -> bool | None:
        """None when the recipe has no target (a figure that is only reported)."""
        if recipe.target is None:
            return None
        if self.higher_is_better:
            return value >= recipe.target - recipe.tolerance
        return value <= recipe.target + recipe.tolerance


_BLEU = "bleu_lowercase_tokenized"
_CPU_HOUR = "60 min of training on 2 CPU cores"


def _translation(what: str, anchor: str, *, cpu: Recipe, gpu: Recipe | None = None) -> PublishedRow:
    recipes = {"cpu": cpu} if gpu is None else {"cpu": cpu, "gpu": gpu}
    return PublishedRow(what=what, metric=_BLEU, anchor=anchor, recipes=recipes)


def _language_model(what: str, metric: str, anchor: str, split: str, **recipes: Recipe) -> PublishedRow:
    return PublishedRow(
        what=what,
        metric=metric,
        anchor=anchor,
        recipes=recipes,
        higher_is_better=False,
        split=split,
        average_checkpoints=False,
    )


ROWS = {
    "multi30k_de_en": _translation(
        "Multi30k De->En, test_2016_flickr",
        "36.52: 3+3-layer 256-wide Transformer, bentrevett/pytorch-seq2seq (lowercased, spaCy-tokenized, GPU)",
        cpu=Recipe("multi30k_de_en_cpu", 37.0, budget=_CPU_HOUR),
        gpu=Recipe("multi30k_de_en", 40.0, tolerance=1.0, budget="6,000 updates on a GPU"),
    ),
    "multi30k_en_de": _translation(
        "Multi30k En->De, test_2016_flickr",
        "about 41: text-only Transformer baselines in the multimodal-MT literature (GPU)",
        cpu=Recipe("multi30k_en_de_cpu", 35.0, budget=_CPU_HOUR),
        gpu=Recipe("multi30k_en_de", 41.0, tolerance=1.0, budget="6,000 updates on a GPU"),
    ),
    "multi30k_en_fr": _translation(
        "Multi30k En->Fr, test_2016_flickr",
        "none: reported only",
        cpu=Recipe("multi30k_en_fr_cpu", None, budget=_CPU_HOUR),
    ),
    "multi30k_de_en_lstm": _translation(
        "Multi30k De->En, LSTM + attention, test_2016_flickr",
        "28.3: bidirectional GRU + attention, bentrevett/pytorch-seq2seq (GPU)",
        cpu=Recipe("multi30k_de_en_lstm_cpu", 28.3, budget=_CPU_HOUR),
    ),
    "shakespeare_char": _language_model(
        "Tiny Shakespeare, character level, validation (last 10%)",
        "loss",
        "1.4697: nanoGPT shakespeare_char, 6 x 384, about 3 minutes on an A100",
        "valid",
        cpu=Recipe("shakespeare_char_cpu", 1.60, budget="15 min of training on 2 CPU cores"),
        gpu=Recipe("shakespeare_char", 1.45, budget="about 3 minutes on a GPU"),
    ),
    "shakespeare_char_nanogpt_cpu": _language_model(
        "Tiny Shakespeare, character level, validation (last 10%), nanoGPT's documented CPU configuration",
        "loss",
        "1.88: nanoGPT README, 4 x 128 GPT, block 64, 2,000 iterations on a CPU ('about 3 minutes')",
        "valid",
        cpu=Recipe("shakespeare_char_nanogpt_cpu", 1.88, budget="nanoGPT's 2,000 iterations"),
    ),
    "wikitext2": _language_model(
        "WikiText-2, word level, test",
        "ppl",
        "65.8: AWD-LSTM (Merity et al., 2017); plain small models usually land above 100",
        "test",
        cpu=Recipe("wikitext2_cpu", 120.0, budget=_CPU_HOUR),
        gpu=Recipe("wikitext2", 90.0, budget="8,000 updates on a GPU"),
    ),
    "wikitext2_lstm": _language_model(
        "WikiText-2, word level, test, 2-layer LSTM",
        "ppl",
        "65.8: AWD-LSTM; 2-layer LSTM of Zaremba et al. (2014), medium: 82.2 on PTB",
        "test",
        cpu=Recipe("wikitext2_lstm_cpu", None, budget=_CPU_HOUR),
    ),
}


def published_row(name: str) -> PublishedRow:
    if name not in ROWS:
        raise ValueError(f"no published row named {name!r} (valid: {', '.join(ROWS)})")
    return ROWS[name]


def machine_for(device: str) -> str:
    """'gpu' when `device` is (or 'auto' resolves to) CUDA, else 'cpu'."""
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if device.startswith("cuda") else "cpu"


def pick_recipe(row: PublishedRow, machine: str) -> tuple[str, Recipe]:
    """The row's recipe for `machine`; a row with only a CPU recipe runs it on a GPU too."""
    if machine not in MACHINES:
        raise ValueError(f"machine must be one of {MACHINES}, got {machine!r}")
    if machine in row.recipes:
        return machine, row.recipes[machine]
    return "cpu", row.recipes["cpu"]


@dataclass
class Reproduction:
    evaluation: Evaluation
    checkpoint: Path
    machine: str  # which recipe ran
    recipe: Recipe
    train_progress: Progress  # the run's final counters: steps, train_seconds, eval_seconds, planned_steps
    budget_minutes: float | None
    after_training_seconds: float  # checkpoint averaging and the final evaluation
    averaged_steps: list[int] = field(
        default_factory=list
    )  # the checkpoints averaged; empty: best.safetensors


# Average only checkpoints from the last quarter of the updates: on a short budgeted run "the last 5" can reach
# back to the fast-changing early updates (every 200 averaged steps 200-979 of a 979-step run: 29.2 BLEU, its
# last checkpoint alone 34.8).
AVERAGING_WINDOW = 0.25


def reproduce(
    name: str, *, overrides: list[str], average: int = 5, device: str = "auto", machine: str | None = None
) -> Reproduction:
    """Train the row's recipe for the machine, then evaluate on the row's split the average of its last
    `average` checkpoints (translation, as the paper does) or its best checkpoint (language models)."""
    check_positive_int("--average", average)
    row = published_row(name)
    machine, recipe = pick_recipe(row, machine or machine_for(device))
    config = load_run_config(recipe.preset, overrides)
    result, _, out_dir = train(config)
    started = time.perf_counter()
    averaged: dict[int, Path] = {}
    if row.average_checkpoints:
        averaged = checkpoints_near_the_end(
            out_dir, average, final_step=result.progress.step, window=AVERAGING_WINDOW
        )
        checkpoint = average_checkpoints(list(averaged.values()), output=out_dir / "averaged.safetensors")
    else:
        checkpoint = out_dir / "best.safetensors"
    evaluation = evaluate_checkpoint(checkpoint, split=row.split, device=device)
    return Reproduction(
        evaluation=evaluation,
        checkpoint=checkpoint,
        machine=machine,
        recipe=recipe,
        train_progress=result.progress,
        budget_minutes=config.train.budget_minutes,
        after_training_seconds=time.perf_counter() - started,
        averaged_steps=sorted(averaged),
    )
