"""Transformer against LSTM on the same data, pipeline and hardware: the measurements, tables and plots of
`tformer compare`.

The pure parts (length buckets, what a run's log says, markdown tables) live in tasks/comparison_tables.py and
are tested without training; `measure_translation_run`, `measure_lm_run` and `compare` here compose them with
evaluation, timing and plotting.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import tformer
from tformer.checks import check_positive_int
from tformer.data.tokenizers import TokenizerPair
from tformer.models.summary import count_parameters
from tformer.tasks.comparison_tables import (
    BucketScore,
    LMRow,
    TranslationRow,
    bleu_by_length,
    length_table,
    lm_table,
    median_throughput,
    read_log,
    seconds_at_step,
    translation_table,
    validation_curve,
)
from tformer.tasks.evaluation import evaluate_checkpoint
from tformer.tasks.runs import load_trained
from tformer.tasks.translation import DecodeConfig, TranslationRunConfig, translate
from tformer.tasks.translation_data import MULTI30K_SPLITS, load_pairs
from tformer.training.distributed import resolve_device
from tformer.training.logging import RUN_INFO_NAME
from tformer.training.rotation import BEST_CHECKPOINT
from tformer.viz.attention import new_figure, save_png

DECODE_BATCH = 64  # sentences per decoding batch, as `tformer translate` and `evaluate`


@dataclass(frozen=True)
class TranslationMeasurement:
    row: TranslationRow
    buckets: list[BucketScore]
    curve: list[tuple[float, float]]  # (train_seconds, validation BLEU) of every logged evaluation
    test_set: str  # e.g. "multi30k de->en test_2016_flickr, 1000 sentences"
    signatures: str  # of the sacreBLEU and chrF scores


def decoding_speed(
    model: nn.Module, tokenizers: TokenizerPair, sources: Sequence[str], *, config: DecodeConfig
) -> float:
    """Sentences per second translating `sources` (after one warm-up batch, which is not timed)."""
    if not sources:
        raise ValueError("decoding speed needs at least one source sentence")
    device = next(model.parameters()).device
    translate(model, tokenizers, sources[:DECODE_BATCH], config=config, batch_size=DECODE_BATCH)

    def now() -> float:
        if device.type == "cuda":  # kernels run asynchronously: the clock must wait for them
            torch.cuda.synchronize(device)
        return time.perf_counter()

    start = now()
    translate(model, tokenizers, sources, config=config, batch_size=DECODE_BATCH)
    return len(sources) / (now() - start)


def _checkpoint(run_dir: Path) -> Path:
    path = Path(run_dir) / BEST_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: RUN_DIR must be an output directory of `tformer train`")
    return path


def _test_pairs(config: TranslationRunConfig, n: int | None) -> tuple[list[tuple[str, str]], str]:
    """The test pairs evaluate_checkpoint scores (the first n; generated dates: exactly n drawn), named."""
    data = config.data
    if data.dataset == "dates":
        data = data if n is None else dataclasses.replace(data, n_valid=n)
        pairs = load_pairs(data, "test", seed=config.train.seed)[:n]
        return pairs, f"dates test, {len(pairs)} sentences"  # generated: the language fields do not apply
    pairs = load_pairs(data, "test", seed=config.train.seed)[:n]
    split = MULTI30K_SPLITS["test"]
    return pairs, f"{data.dataset} {data.src_lang}->{data.tgt_lang} {split}, {len(pairs)} sentences"


def measure_translation_run(run_dir: Path, *, n: int | None, device: str) -> TranslationMeasurement:
    """Test-set scores (`evaluate_checkpoint`, the run's beam), BLEU by source length, decoding speed greedy
    and with the run's beam, and from the log the time to the best validation score and the throughput."""
    run_dir = Path(run_dir)
    checkpoint = _checkpoint(run_dir)
    records = read_log(run_dir)
    trained = load_trained(checkpoint, device=device, task="translation")
    config = trained.config
    evaluation = evaluate_checkpoint(checkpoint, split="test", n=n, device=device)
    pairs, test_set = _test_pairs(config, n)
    sources = [s for s, _ in pairs]
    assert [t for _, t in pairs] == evaluation.references, "the timed sources are not the evaluated ones"
    greedy_config = dataclasses.replace(config.decode, beam_size=1)
    greedy = decoding_speed(trained.model, trained.state, sources, config=greedy_config)
    beam_size = config.decode.beam_size
    beam = greedy
    if beam_size > 1:
        beam = decoding_speed(trained.model, trained.state, sources, config=config.decode)
    best_step, metric, metrics = trained.progress.get("best_step"), config.train.metric, evaluation.metrics
    row = TranslationRow(
        run=run_dir.name,
        model=config.model.type,
        parameters=count_parameters(trained.model),
        metric=metric,
        bleu=float(metrics["bleu_lowercase_tokenized"]),
        sacrebleu=float(metrics["sacrebleu"]),
        chrf=float(metrics["chrf"]),
        best_step=best_step,
        seconds_to_best=seconds_at_step(records, step=best_step, metric=metric),
        tokens_per_s=median_throughput(records),
        greedy_sentences_per_s=greedy,
        beam_size=beam_size,
        beam_sentences_per_s=beam,
    )
    return TranslationMeasurement(
        row=row,
        buckets=bleu_by_length(sources, evaluation.hypotheses, evaluation.references),
        curve=validation_curve(records, metric="bleu"),
        test_set=test_set,
        signatures=f"sacreBLEU {metrics['sacrebleu_signature']}, chrF {metrics['chrf_signature']}",
    )


def measure_lm_run(run_dir: Path, *, device: str) -> LMRow:
    """Test perplexity (`evaluate_checkpoint`, split test), parameters and the logged training throughput."""
    run_dir = Path(run_dir)
    checkpoint = _checkpoint(run_dir)
    trained = load_trained(checkpoint, device=device, task="language_model")
    metrics = evaluate_checkpoint(checkpoint, split="test", device=device).metrics
    return LMRow(
        run=run_dir.name,
        model=trained.config.model.type,
        parameters=count_parameters(trained.model),
        test_ppl=float(metrics["ppl"]),
        tokens_per_s=median_throughput(read_log(run_dir)),
        test_set=f"{trained.config.data.dataset} test, {trained.config.data.tokenizer} tokens",
    )


def trained_on(run_dir: Path) -> str:
    """The device a run trained on, from its run.json ("unknown" without one)."""
    path = Path(run_dir) / RUN_INFO_NAME
    if not path.is_file():
        return "unknown"
    info = json.loads(path.read_text(encoding="utf-8"))
    return f"{info.get('device_name') or info.get('device', 'unknown')}"


def hardware(device: str) -> str:
    """This machine as a report names it: the CPU model and core count, and the GPU when one is used."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    described = f"{cpu}, {os.cpu_count()} cores"
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        described = f"{torch.cuda.get_device_name(resolved)}; {described}"
    return described


# ---- plots and the report ----


def plot_bleu_by_length(runs: Sequence[str], buckets: Sequence[Sequence[BucketScore]], *, path: Path) -> Path:
    """Grouped bars: one group per length bucket (its sentence count below), one bar per run."""
    figure = new_figure(width=7.0, height=3.6)
    ax = figure.subplots()
    width = 0.8 / len(runs)
    for index, (run, scores) in enumerate(zip(runs, buckets, strict=True)):
        xs = [i + (index - (len(runs) - 1) / 2) * width for i in range(len(scores))]
        ax.bar(xs, [s.bleu or 0.0 for s in scores], width=width, label=run)
    ax.set_xticks(range(len(buckets[0])), [f"{s.label}\n({s.n})" for s in buckets[0]])
    ax.set_xlabel("source words (sentences)")
    ax.set_ylabel("BLEU (lowercased, tokenized)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return save_png(figure, path)


def plot_bleu_against_time(
    runs: Sequence[str], curves: Sequence[list[tuple[float, float]]], *, path: Path
) -> Path:
    """Validation BLEU against training wall-clock time (minutes), one line per run."""
    figure = new_figure(width=7.0, height=3.6)
    ax = figure.subplots()
    for run, curve in zip(runs, curves, strict=True):
        if curve:
            ax.plot([s / 60 for s, _ in curve], [b for _, b in curve], marker=".", label=run)
    ax.set_xlabel("training time (minutes; evaluation excluded)")
    ax.set_ylabel("validation BLEU")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(True, alpha=0.3)
    return save_png(figure, path)


def _same(what: str, runs: Sequence[str], values: Sequence[str]) -> str:
    if len(set(values)) > 1:
        listed = "; ".join(f"{run}: {value}" for run, value in zip(runs, values, strict=True))
        raise ValueError(f"the {what} runs must share their test set to be compared ({listed})")
    return values[0]


def _run_names(run_dirs: Sequence[Path]) -> list[str]:
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) < len(names):
        raise ValueError(
            f"run directories need distinct names to label the tables, got {[str(d) for d in run_dirs]}"
        )
    return names


def _translation_section(measured: Sequence[TranslationMeasurement], out_dir: Path) -> str:
    runs = [m.row.run for m in measured]
    test_set = _same("translation", runs, [m.test_set for m in measured])
    buckets = [m.buckets for m in measured]
    lengths = plot_bleu_by_length(runs, buckets, path=out_dir / "bleu_by_length.png")
    curves = plot_bleu_against_time(runs, [m.curve for m in measured], path=out_dir / "bleu_vs_time.png")
    unplotted = [m.row.run for m in measured if not m.curve]
    metrics = " / ".join(sorted({f"`{m.row.metric}`" for m in measured}))  # the runs' train.metric
    notes = (
        "Every score decodes the test set with the run's own beam (`tformer evaluate`). BLEU on lowercased "
        f"tokenized text is the figure published Multi30k results use; {measured[0].signatures}. Time to best: "
        "the training wall time (updates only; evaluation and checkpoints excluded) logged at the evaluation "
        f"with the best validation {metrics}, its step in brackets. Train tokens/s: the median logged training "
        "throughput in target tokens. Decoding speed: the test sources decoded on this machine in batches of "
        f"{DECODE_BATCH}, after one untimed warm-up batch.\n"
    )
    curve_notes = (
        "Validation BLEU as logged during training (the first `data.eval_decode` validation sentences, the "
        "run's beam) against the training wall time at that step."
        + (f" Not plotted (no train_seconds in its log): {', '.join(unplotted)}." if unplotted else "")
    )
    return "\n".join(
        [
            f"### Translation: {test_set}\n",
            translation_table([m.row for m in measured]),
            notes,
            "#### BLEU by source-sentence length\n",
            "Lowercased tokenized corpus BLEU of the test sentences whose source has that many "
            "whitespace-separated words (the source text as the model reads it).\n",
            length_table(runs, buckets),
            f"![BLEU by source-sentence length]({lengths.name})\n",
            "#### Validation BLEU against training time\n",
            curve_notes + "\n",
            f"![Validation BLEU against training time]({curves.name})\n",
        ]
    )


def _lm_section(rows: Sequence[LMRow]) -> str:
    test_set = _same("language-model", [r.run for r in rows], [r.test_set for r in rows])
    notes = (
        "Perplexity over every token of the test split (`tformer evaluate`, the run's windows). Train "
        "tokens/s: the median logged training throughput.\n"
    )
    return "\n".join([f"### Language modelling: {test_set}\n", lm_table(rows), notes])


def compare(
    *,
    translation_runs: Sequence[Path],
    lm_runs: Sequence[Path],
    out_dir: Path,
    n: int | None = None,
    device: str = "auto",
    command: str,
) -> Path:
    """Measure the runs, write out_dir/comparison.md (a docs/results.md section) and its PNGs; returns the
    markdown's path. `command` is the command line the report names."""
    if not translation_runs and not lm_runs:
        raise ValueError("nothing to compare: give translation and/or language-model run directories")
    check_positive_int("n", n, optional=True)
    names = _run_names([*translation_runs, *lm_runs])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    if translation_runs:
        measured = [measure_translation_run(d, n=n, device=device) for d in translation_runs]
        sections.append(_translation_section(measured, out_dir))
    if lm_runs:
        sections.append(_lm_section([measure_lm_run(d, device=device) for d in lm_runs]))
    devices = [trained_on(d) for d in [*translation_runs, *lm_runs]]
    same = "" if len(set(devices)) == 1 else " **Not all on the same device: times are not comparable.**"
    header = [
        "## Transformer against LSTM: the same data, pipeline and hardware\n",
        f"Command: `{command}` ({datetime.date.today().isoformat()}; measured on {hardware(device)}; "
        f"torch {torch.__version__}, tformer {tformer.__version__}). Trained on: "
        + "; ".join(f"{name}: {dev}" for name, dev in zip(names, devices, strict=True))
        + f".{same}\n",
    ]
    path = out_dir / "comparison.md"
    path.write_text("\n".join(header + sections), encoding="utf-8")
    return path
