"""tformer compare: length buckets, log facts and tables from hand-made inputs; the trainer's train_seconds
across a resume; the command end to end on tiny Transformer and LSTM runs trained here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from tformer.cli.main import main
from tformer.metrics.bleu import tokenized_lowercase_bleu
from tformer.tasks.comparison_tables import (
    BucketScore,
    LMRow,
    TranslationRow,
    bleu_by_length,
    bucket_labels,
    length_buckets,
    length_table,
    lm_table,
    markdown_table,
    median_throughput,
    seconds_at_step,
    translation_table,
    validation_curve,
)
from tformer.tasks.evaluation import evaluate_checkpoint
from tformer.tasks.runs import load_trained
from tformer.training.checkpoint import load_checkpoint
from tformer.training.trainer import Trainer
from training.toy_task import ToyModel, ToyTask, toy_config

from .run_configs import LSTM_DATES


def _sentence(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words))


def test_length_buckets_by_source_words() -> None:
    lengths = [1, 10, 11, 15, 16, 20, 21, 25, 26, 40, 3]
    buckets = length_buckets([_sentence(n) for n in lengths])
    assert bucket_labels() == ["1-10", "11-15", "16-20", "21-25", "26+"]
    assert buckets == [[0, 1, 10], [2, 3], [4, 5], [6, 7], [8, 9]]
    # words are whitespace-separated: runs of spaces and tabs do not make words
    assert length_buckets(["a  b\tc", _sentence(12)], (2, 5)) == [[], [0], [1]]
    with pytest.raises(ValueError, match=r"positive and increasing, got \[10, 10\]"):
        length_buckets(["a"], (10, 10))


def test_bleu_by_length_scores_each_bucket_on_its_own_sentences() -> None:
    short = ["the cat sat on the mat", "a dog runs in the park", "two men play chess"]
    long = [_sentence(30), "x " * 12 + "a b c d e f g h i j k l m n o p"]
    sources = [*short, *long]
    references = [*short, "completely different words here and there", "one two three four five"]
    hypotheses = [*short[:2], "two men play cards", *long]  # the long hypotheses share no word with refs
    scores = bleu_by_length(sources, hypotheses, references)
    assert [s.n for s in scores] == [3, 0, 0, 0, 2]
    assert scores[1].bleu is None and scores[4].bleu == 0.0
    # the short bucket is corpus BLEU over exactly its three sentences
    assert scores[0].bleu == pytest.approx(tokenized_lowercase_bleu(hypotheses[:3], references[:3]))
    assert 0.0 < scores[0].bleu < 100.0
    with pytest.raises(ValueError, match="3 sources, 2 hypotheses"):
        bleu_by_length(sources[:3], hypotheses[:2], references[:3])


RECORDS = [
    {"step": 2, "loss": 3.0, "lr": 0.1, "items_per_s": 100.0, "train_seconds": 1.0},
    {"step": 2, "val_loss": 2.0, "bleu": 5.0, "train_seconds": 1.0},
    {"step": 4, "loss": 2.0, "lr": 0.1, "items_per_s": 300.0, "train_seconds": 2.5},
    {"step": 4, "val_loss": 1.5, "bleu": 9.0, "train_seconds": 2.5},
    {"step": 6, "loss": 1.0, "lr": 0.1, "items_per_s": 200.0, "train_seconds": 4.0},
    {"step": 6, "val_loss": 1.6, "bleu": 8.0, "train_seconds": 4.0},
]


def test_log_facts() -> None:
    assert seconds_at_step(RECORDS, step=4, metric="bleu") == 2.5
    assert seconds_at_step(RECORDS, step=5, metric="bleu") is None
    assert seconds_at_step([{"step": 4, "bleu": 9.0}], step=4, metric="bleu") is None  # a log from before
    assert median_throughput(RECORDS) == 200.0  # median of 100, 300, 200
    assert median_throughput(RECORDS[1::2]) is None
    assert validation_curve(RECORDS, metric="bleu") == [(1.0, 5.0), (2.5, 9.0), (4.0, 8.0)]


ROW = TranslationRow(
    run="tf",
    model="transformer",
    parameters=1234567,
    metric="bleu",
    bleu=36.5249,
    sacrebleu=35.0,
    chrf=60.126,
    best_step=4000,
    seconds_to_best=754.0,
    tokens_per_s=51234.4,
    greedy_sentences_per_s=812.34,
    beam_size=5,
    beam_sentences_per_s=201.25,
)


def test_markdown_tables_from_rows() -> None:
    assert (
        markdown_table(["a", "b"], [["1", "2"], ["3", "4"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"
    )
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        markdown_table(["a", "b"], [["1"]])
    lstm = TranslationRow(
        **{
            **ROW.__dict__,
            "run": "lstm",
            "model": "lstm_attention",
            "seconds_to_best": None,
            "tokens_per_s": None,
            "best_step": 500,
            "beam_size": 1,
            "beam_sentences_per_s": 812.34,
        }
    )
    lines = translation_table([ROW, lstm]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == 11
    assert lines[2] == (
        "| tf | Transformer | 1,234,567 | 36.52 | 35.00 | 60.13 | 12.6 min (4000) | 51,234 | 812.3 | 201.2 (k=5) |"
    )
    assert lines[3] == (
        "| lstm | LSTM + attention | 1,234,567 | 36.52 | 35.00 | 60.13 | n/a (500) | n/a | 812.3 | 812.3 (k=1) |"
    )
    buckets = [[BucketScore("1-10", 7, 30.0), BucketScore("11+", 0, None)]] * 2
    assert length_table(["tf", "lstm"], buckets).splitlines()[2:] == [
        "| 1-10 | 7 | 30.00 | 30.00 |",
        "| 11+ | 0 | n/a | n/a |",
    ]
    with pytest.raises(ValueError, match="'lstm' was scored on other sentences"):
        length_table(["tf", "lstm"], [buckets[0], [BucketScore("1-10", 6, 1.0), BucketScore("11+", 1, 2.0)]])
    lm = lm_table([LMRow("gpt", "gpt", 20_000_000, 101.234, 80000.0, "wikitext2 test, word tokens")])
    assert lm.splitlines()[2] == "| gpt | GPT | 20,000,000 | 101.23 | 80,000 |"


class _SlowToyTask(ToyTask):
    """Every update takes at least 10 ms, so the logged training time has a floor we can check."""

    def __init__(self) -> None:
        super().__init__(delay_s=0.01)


def _fit_toy(out_dir: Path, *, max_steps: int, resume: bool) -> None:
    torch.manual_seed(0)
    config = toy_config(max_steps=max_steps, eval_every=3, checkpoint_every=3)
    Trainer(ToyModel(), _SlowToyTask(), config, out_dir=out_dir, run_config={"task": "toy"}).fit(
        resume=resume
    )


def test_train_seconds_is_cumulative_and_survives_resume(tmp_path: Path) -> None:
    _fit_toy(tmp_path, max_steps=6, resume=False)
    at_6 = load_checkpoint(tmp_path / "last.safetensors").progress["train_seconds"]
    _fit_toy(tmp_path, max_steps=9, resume=True)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 10))
    seconds = [r["train_seconds"] for r in train]
    assert all(b > a for a, b in zip(seconds, seconds[1:], strict=False))
    assert seconds[5] == at_6 and seconds[6] > at_6  # the resumed run goes on from the stored count
    assert seconds[-1] >= 9 * 0.01  # all nine updates, not only the three the resumed run made
    assert load_checkpoint(tmp_path / "last.safetensors").progress["train_seconds"] == seconds[-1]
    # each evaluation record carries the time of its step
    evals = {r["step"]: r["train_seconds"] for r in records if "val_loss" in r}
    assert evals == {3: seconds[2], 6: seconds[5], 9: seconds[8]}


BEST_BY_BLEU = ["--train.metric=bleu", "--train.metric_mode=max"]  # as the Multi30k recipes
TINY_LM = [
    *("--model.context_length=16", "--data.block_size=16", "--data.batch_size=4", "--data.eval_stride=null"),
    *("--data.batches_per_epoch=4", "--train.max_steps=2", "--train.eval_every=2", "--train.log_every=1"),
    *("--train.device=cpu", "--train.progress_bar=false"),
]


def _fake_wikitext2(root: Path) -> str:
    text = "\n".join(["the cat sat on the mat .", "a dog ran to the park and back ."] * 30).encode()
    (root / "wikitext2").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (root / "wikitext2" / f"{split}.txt.gz").write_bytes(gzip.compress(text))
    return str(root)


def test_compare_end_to_end_on_tiny_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lstm_yaml = tmp_path / "lstm.yaml"
    lstm_yaml.write_text(LSTM_DATES, encoding="utf-8")
    transformer, lstm = tmp_path / "transformer", tmp_path / "lstm"
    assert main(["train", "tiny_dates", f"--out_dir={transformer}", *BEST_BY_BLEU]) == 0
    assert main(["train", str(lstm_yaml), f"--out_dir={lstm}", *BEST_BY_BLEU]) == 0
    data_dir = _fake_wikitext2(tmp_path / "data")
    gpt, lstm_lm = tmp_path / "gpt", tmp_path / "lstm_lm"
    gpt_model = ["--model.d_model=16", "--model.n_heads=2", "--model.n_layers=1", "--model.d_ff=32"]
    lstm_model = ["--model.d_embed=16", "--model.d_hidden=16", "--model.context_length=16"]
    for preset, out, model in (("wikitext2", gpt, gpt_model), ("wikitext2_lstm", lstm_lm, lstm_model)):
        args = ["train", preset, f"--data.data_dir={data_dir}", f"--out_dir={out}", *model, *TINY_LM]
        assert main(args) == 0
    capsys.readouterr()

    out = tmp_path / "report"
    args = ["--translation", str(transformer), str(lstm), "--lm", str(gpt), str(lstm_lm)]
    assert main(["compare", *args, "--out", str(out), "--n", "8", "--device", "cpu"]) == 0
    report = (out / "comparison.md").read_text()
    assert capsys.readouterr().out.startswith(report)
    for png in ("bleu_by_length.png", "bleu_vs_time.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report
    assert "Command: `tformer compare --translation" in report and f"torch {torch.__version__}" in report
    assert "### Translation: dates test, 8 sentences\n" in report and "best validation `bleu`" in report

    rows = [line for line in report.splitlines() if line.startswith("| ")]
    transformer_rows = [r for r in rows if r.startswith("| transformer | Transformer |")]
    lstm_rows = [r for r in rows if r.startswith("| lstm | LSTM + attention |")]
    assert len(transformer_rows) == len(lstm_rows) == 1
    # the table's numbers are those of `tformer evaluate` and of the checkpoint's model
    for row, run in ((transformer_rows[0], transformer), (lstm_rows[0], lstm)):
        cells = [c.strip() for c in row.strip("|").split("|")]
        metrics = evaluate_checkpoint(run / "best.safetensors", split="test", n=8, device="cpu").metrics
        model = load_trained(run / "best.safetensors", device="cpu").model
        assert cells[2] == f"{sum(p.numel() for p in model.parameters()):,}"
        assert cells[3:6] == [f"{metrics[k]:.2f}" for k in ("bleu_lowercase_tokenized", "sacrebleu", "chrf")]
        assert cells[6].endswith(f"({load_checkpoint(run / 'best.safetensors').progress['best_step']})")
    assert lstm_rows[0].endswith("(k=2) |") and transformer_rows[0].endswith("(k=1) |")
    # the length table: one column per run, and the buckets hold the 8 sentences
    length_rows = [r for r in rows if r.split("|")[1].strip() in bucket_labels()]
    assert len(length_rows) == 5 and all(r.count("|") == 5 for r in length_rows)
    assert sum(int(r.split("|")[2]) for r in length_rows) == 8
    lm_rows = [r for r in rows if r.startswith(("| gpt | GPT |", "| lstm_lm | LSTM |"))]
    assert len(lm_rows) == 2
    ppl = evaluate_checkpoint(gpt / "best.safetensors", split="test", device="cpu").metrics["ppl"]
    assert f"| {ppl:.2f} |" in lm_rows[0]


def test_compare_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--out", str(tmp_path / "r")]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", "--translation", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "best.safetensors not found: RUN_DIR must be an output directory" in capsys.readouterr().err
    assert main(["compare", "--translation", str(tmp_path / "empty"), "--n", "0", "--out", "r"]) == 2
    assert "n must be an int >= 1 or None, got 0" in capsys.readouterr().err
