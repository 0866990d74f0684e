"""The language-model pipeline end to end at toy scale on Tiny Shakespeare: train, resume, evaluate, generate."""

from __future__ import annotations

import json
import math

import pytest

from tformer.cli.main import main
from tformer.data.catalog import data_dir
from tformer.tasks.language_model import LMDataConfig
from tformer.tasks.runs import load_run_config, load_trained

pytestmark = pytest.mark.skipif(
    not (data_dir() / "tinyshakespeare" / "input.txt.gz").is_file(),
    reason="the shared Tiny Shakespeare copy is not present",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shakespeare")
    assert main(["train", "tiny_shakespeare", f"--out_dir={out}"]) == 0
    return out


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_checkpoint_rebuilds_a_language_model(run_dir):
    trained = load_trained(run_dir / "best.safetensors", device="cpu", task="language_model")
    assert trained.config.task == "language_model"
    assert trained.model.config.vocab_size == trained.state.vocab_size == 65 + 4  # 65 characters + specials
    with pytest.raises(ValueError, match="needs a translation checkpoint"):
        load_trained(run_dir / "best.safetensors", device="cpu", task="translation")


def test_evaluate_reports_loss_perplexity_and_bits_per_character(run_dir, capsys):
    assert main(["evaluate", str(run_dir / "best.safetensors"), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    metrics = _last_json(out)
    assert (
        metrics["split"] == "valid" and metrics["tokens"] == 20000 - 1
    )  # limit_tokens, every token after the first
    assert metrics["ppl"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2))
    assert "bits per character" in out
    assert main(["evaluate", str(run_dir / "best.safetensors"), "--split", "test"]) == 2  # no test split here
    assert "no 'test' split" in capsys.readouterr().err


def test_generate_streams_the_prompt_and_its_continuation(run_dir, capsys):
    ckpt = str(run_dir / "last.safetensors")
    args = ["generate", ckpt, "ROMEO:", "--max-new-tokens", "25", "--seed", "1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) > len("ROMEO:")
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded: the same text again
    assert main(["generate", ckpt, "ROMEO:", "--greedy", "--max-new-tokens", "10"]) == 0
    greedy = capsys.readouterr()
    assert "seed:" not in greedy.err  # nothing random to report


def test_generate_stops_at_stop_strings_and_draws_several_samples(run_dir, capsys):
    ckpt = str(run_dir / "last.safetensors")
    args = [
        "generate",
        ckpt,
        "A",
        "--num-samples",
        "3",
        "--seed",
        "2",
        "--max-new-tokens",
        "200",
        "--stop",
        "e",
    ]
    assert main(args) == 0
    samples = capsys.readouterr().out.rstrip("\n").split("\n" + "-" * 40 + "\n")
    assert len(samples) == 3
    assert all(s.startswith("A") and "e" not in s[1:] for s in samples)


def test_generate_reads_the_prompt_from_stdin_and_rejects_other_checkpoints(run_dir, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"KING:\n")))
    assert main(["generate", str(run_dir / "last.safetensors"), "--greedy", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("KING:")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe bad")))
    assert main(["generate", str(run_dir / "last.safetensors")]) == 2
    assert "stdin line 1: not valid UTF-8" in capsys.readouterr().err
    assert main(["translate", str(run_dir / "last.safetensors"), "hello"]) == 2


def test_resume_continues_to_a_larger_step_count(run_dir, capsys):
    assert main(["train", "tiny_shakespeare", f"--out_dir={run_dir}", "--train.max_steps=8", "--resume"]) == 0
    assert "done: 8 steps" in capsys.readouterr().out


def test_presets_load_and_say_their_tokenization():
    for name in ("shakespeare_char", "wikitext2"):
        config = load_run_config(name)
        assert config.task == "language_model" and config.data.block_size <= config.model.context_length
    assert load_run_config("wikitext2").data.tokenizer == "word"


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(dataset="ptb"), "data.dataset"),
        (dict(tokenizer="sentencepiece"), "data.tokenizer"),
        (dict(block_size=0), "block_size"),
        (dict(block_size=8, eval_stride=9), "eval_stride"),
        (dict(block_size=8, limit_tokens=8), "limit_tokens"),
    ],
)
def test_data_config_errors_name_the_field(options, match):
    with pytest.raises(ValueError, match=match):
        LMDataConfig(**options)


def test_reproduce_scores_the_best_checkpoint_on_the_rows_split(tmp_path, capsys):
    toy = [
        "--model.d_model=32",
        "--model.n_heads=2",
        "--model.n_layers=1",
        "--model.d_ff=64",
        "--model.context_length=32",
        "--data.block_size=32",
        "--data.batch_size=4",
        "--data.limit_tokens=5000",
        "--train.budget_minutes=null",
        "--train.max_steps=3",
        "--train.schedule.total_steps=3",
        "--train.schedule.warmup_steps=1",
        "--train.eval_every=3",
        "--train.precision=fp32",
        "--train.progress_bar=false",
    ]
    args = ["reproduce", "shakespeare_char", "--device", "cpu", f"--out_dir={tmp_path}", *toy]
    assert main(args) == 1  # a 3-step toy model does not reach the target, and says so
    out = capsys.readouterr().out
    assert "recipe: cpu (shakespeare_char_cpu" in out
    assert "loss:" in out and "target <= 1.6" in out and "NOT reached" in out and "1.4697" in out
    assert "4999 tokens" in out and "best.safetensors" in out


LSTM_SHAKESPEARE = """
task: language_model
data: {dataset: tinyshakespeare, tokenizer: char, block_size: 16, batch_size: 4, limit_tokens: 3000}
model: {type: lstm, d_embed: 16, d_hidden: 16, n_layers: 1, dropout: 0.0}
train:
  max_steps: 3
  schedule: {kind: constant, warmup_steps: 0}
  eval_every: 3
  checkpoint_every: 3
  device: cpu
  progress_bar: false
sample: {max_new_tokens: 12}
"""


def test_an_lstm_language_model_runs_through_the_same_pipeline(tmp_path, capsys):
    from tformer.models.rnn import LSTMLanguageModel

    config = tmp_path / "lstm.yaml"
    config.write_text(LSTM_SHAKESPEARE, encoding="utf-8")
    assert main(["train", str(config), f"--out_dir={tmp_path / 'run'}"]) == 0
    ckpt = tmp_path / "run" / "best.safetensors"
    assert isinstance(load_trained(ckpt, device="cpu").model, LSTMLanguageModel)
    capsys.readouterr()
    assert main(["generate", str(ckpt), "KING:", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("KING:")
    assert main(["evaluate", str(ckpt), "--split", "valid"]) == 0
    assert _last_json(capsys.readouterr().out)["tokens"] == 2999


def test_info_describes_a_language_model_checkpoint(run_dir, capsys):
    assert main(["info", str(run_dir / "best.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "(gpt, step" in out and "total parameters:" in out and "lm_head" in out
