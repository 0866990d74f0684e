"""The `tformer` command end to end on the tiny preset: train, evaluate, translate, info, and user errors."""

import io
import json
import pickle
import sys

import pytest

from tformer.cli.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert (
        main(["train", "tiny_dates", f"--out_dir={out}", "--train.max_steps=4", "--train.eval_every=2"]) == 0
    )
    return out


def test_train_writes_checkpoints_logs_and_run_info(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"best.safetensors", "last.safetensors", "log.jsonl", "run.json"} <= names
    run = json.loads((trained / "run.json").read_text())
    assert run["run_config"]["model"]["src_vocab_size"] > 4  # completed from the tokenizer
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert any("exact_match" in r for r in records)


def test_resume_continues_from_last_checkpoint(trained, capsys):
    assert (
        main(
            [
                "train",
                "tiny_dates",
                f"--out_dir={trained}",
                "--train.max_steps=6",
                "--train.eval_every=2",
                "--resume",
            ]
        )
        == 0
    )
    assert "done: 6 steps" in capsys.readouterr().out


def test_evaluate_writes_hypotheses(trained, tmp_path, capsys):
    hyps = tmp_path / "hyps.txt"
    assert main(["evaluate", str(trained / "best.safetensors"), "--n", "7", "--output", str(hyps)]) == 0
    assert len(hyps.read_text(encoding="utf-8").splitlines()) == 7
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n"] == 7 and 0.0 <= metrics["exact_match"] <= 1.0


def test_translate_arguments_stdin_file_nbest_and_plot(trained, tmp_path, capsys, monkeypatch):
    ckpt = str(trained / "best.safetensors")
    assert main(["translate", ckpt, "23.11.2026", "le 4 juillet 1976"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"1. Mai 1990\n\nMay 2, 1990\n")))
    assert main(["translate", ckpt]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # one output line per input line, empty ones too

    source, output, png = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "attn.png"
    source.write_text("23.11.2026\n12/01/1999\n", encoding="utf-8")
    args = [
        "translate",
        ckpt,
        "--input",
        str(source),
        "--output",
        str(output),
        "--beam",
        "3",
        "--n-best",
        "2",
    ]
    assert main([*args, "--plot-attention", str(png)]) == 0
    lines = output.read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "1", "2"]
    scores = [float(line.split("\t")[1]) for line in lines[:2]]
    assert scores[0] >= scores[1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    head_png = tmp_path / "head.png"
    assert (
        main([*args, "--plot-attention", str(head_png), "--attention-layer", "0", "--attention-head", "1"])
        == 0
    )
    assert head_png.read_bytes() != png.read_bytes()  # another layer's head, another picture
    capsys.readouterr()
    assert main([*args, "--plot-attention", str(head_png), "--attention-head", "9"]) != 0
    assert "head 9 is out of range" in capsys.readouterr().err


def test_info_on_preset_and_checkpoint(trained, capsys):
    assert main(["info", "base"]) == 0
    assert "total parameters:     63,082,496" in capsys.readouterr().out
    assert main(["info", str(trained / "best.safetensors")]) == 0
    assert "forward FLOPs/token" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "tiny_dates", "--model.n_layer=3"], "unknown key 'model.n_layer'"),
        (["train", "tiny_dates", "--model.d_model=big"], "model.d_model"),
        (["train", "tiny_dates", "--model.n_heads=5"], "n_heads=5 must divide d_model=32"),
        (["train", "no_such_preset"], "unknown preset 'no_such_preset'"),
        (["train", "missing.yaml"], "config file not found: missing.yaml"),
        (["translate", "missing.safetensors", "x"], "checkpoint not found: missing.safetensors"),
        (["info", "huge"], "unknown model preset 'huge'"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_yaml_errors_name_file_and_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("task: translation\nmodel:\n  d_model: 32\n  n_layerz: 2\n", encoding="utf-8")
    assert main(["train", str(config)]) == 2
    assert f"{config}:4" in capsys.readouterr().err


def test_invalid_utf8_input_names_the_line(trained, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfe broken\n")
    assert main(["translate", str(trained / "best.safetensors"), "--input", str(bad)]) == 2
    assert f"{bad}:2: not valid UTF-8" in capsys.readouterr().err


def test_pickle_disguised_as_checkpoint_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    fake = tmp_path / "model.safetensors"
    fake.write_bytes(pickle.dumps(Exploit()))
    assert main(["translate", str(fake), "x"]) == 2
    assert not marker.exists()
    assert "model.safetensors" in capsys.readouterr().err


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="unknown preset"):
        main(["--debug", "train", "no_such_preset"])


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "translate", "info"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: tformer" in capsys.readouterr().out


def test_over_long_input_is_truncated_and_still_plotted(trained, tmp_path, capsys):
    png = tmp_path / "long.png"
    assert (
        main(["translate", str(trained / "best.safetensors"), "1" * 200, "--plot-attention", str(png)]) == 0
    )
    err = capsys.readouterr().err
    assert "it was truncated" in err
    assert png.is_file()


def test_unwritable_output_is_one_line(trained, tmp_path, capsys):
    assert (
        main(["translate", str(trained / "best.safetensors"), "23.11.2026", "--output", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_final_step_is_evaluated_even_off_schedule(tmp_path):
    assert (
        main(["train", "tiny_dates", f"--out_dir={tmp_path}", "--train.max_steps=5", "--train.eval_every=3"])
        == 0
    )
    evaluated = [
        json.loads(line)["step"]
        for line in (tmp_path / "log.jsonl").read_text().splitlines()
        if "val_loss" in line
    ]
    assert evaluated == [3, 5]
    assert (tmp_path / "best.safetensors").is_file()


def test_a_sentence_translates_the_same_alone_and_beside_a_long_one(trained):
    from tformer.tasks.runs import load_trained
    from tformer.tasks.translation import translate

    model = load_trained(trained / "best.safetensors", device="cpu")
    config = model.config.decode
    alone = translate(model.model, model.state, ["1.1.2000"], config=config)
    batched = translate(
        model.model, model.state, ["1.1.2000", "der einunddreißigste Dezember 1999"], config=config
    )
    assert alone[0].tokens == batched[0].tokens


def test_translate_output_stays_one_line_per_input():
    from tformer.cli.translate import _one_line

    assert _one_line("a\nb\r\nc") == "a b c"
    assert _one_line("no break") == "no break"


def test_python_dash_m_tformer_runs_the_command_without_an_install():
    # The GPU machine runs the checkout with PYTHONPATH=src (docs/gpu_runbook.md): `python -m tformer` must work.
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-m", "tformer", "reproduce", "--help"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "usage: tformer reproduce" in done.stdout
