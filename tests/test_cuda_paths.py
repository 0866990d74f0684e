"""The code paths that only run on a GPU, checked in seconds when one is there (CI has none: all skipped).

A session with a GPU runs `python3 -m pytest tests/test_cuda_paths.py -q` first (docs/gpu_runbook.md):
- torch's dropout on CUDA;
- fused AdamW;
- train.compile=auto with bf16 autocast, end to end through the CLI, with resume;
- CUDA decoding equal to CPU decoding;
- `tformer bench` with its CUDA memory and profiler paths.
tests/training/test_no_host_sync.py has one more: training steps that never wait for the GPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from tformer.cli.main import main
from tformer.data.catalog import data_dir
from tformer.decoding import Seq2SeqState, greedy_search
from tformer.models.seq2seq import Seq2SeqTransformer, preset_config
from tformer.nn.dropout import dropout
from tformer.training.optim import build_optimizer
from tformer.training.train_config import TrainConfig, resolve_auto_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def test_dropout_on_cuda_drops_at_rate_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    y = dropout(torch.ones(1 << 20, device=CUDA), 0.1, training=True)
    assert abs((y == 0).float().mean().item() - 0.1) < 0.003
    assert abs(y.mean().item() - 1.0) < 0.003


def test_auto_settings_on_cuda_compile_and_use_bf16_where_supported():
    resolved = resolve_auto_settings(TrainConfig(precision="auto"), CUDA)
    assert resolved.compile is True
    assert resolved.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    model = torch.nn.Linear(4, 4).to(CUDA)
    assert build_optimizer(model, lr=1e-3).param_groups[0]["fused"] is True


@pytest.mark.skipif(
    not (data_dir() / "tinyshakespeare").is_dir(), reason="the Tiny Shakespeare copy is not present"
)
def test_language_model_trains_compiled_in_bf16_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    cuda = ["--train.device=cuda", "--train.precision=auto", "--train.compile=auto"]
    assert main(["train", "tiny_shakespeare", f"--out_dir={out}", *cuda]) == 0
    assert (
        main(["train", "tiny_shakespeare", f"--out_dir={out}", *cuda, "--train.max_steps=9", "--resume"]) == 0
    )
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(loss == loss and loss < 10 for loss in losses)  # finite, sane
    run = json.loads((out / "run.json").read_text())
    assert run["train_config"]["compile"] is True
    assert (
        main(["generate", str(out / "best.safetensors"), "ROMEO:", "--max-new-tokens", "20", "--seed", "1"])
        == 0
    )
    assert capsys.readouterr().out.strip()


def test_greedy_decoding_on_cuda_equals_cpu():
    torch.manual_seed(0)
    config = preset_config("tiny", src_vocab_size=60, tgt_vocab_size=60, pad_id=0)
    model = Seq2SeqTransformer(config).eval()
    src = torch.randint(3, 60, (5, 11))

    def decode(device: torch.device) -> list[list[int]]:
        state = Seq2SeqState(model.to(device), src.to(device))
        hypotheses = greedy_search(state, batch_size=5, bos_id=1, eos_id=2, max_new_tokens=12)
        return [h.tokens for h in hypotheses]

    assert decode(CUDA) == decode(torch.device("cpu"))


def test_bench_runs_every_suite_with_memory_and_profiles_on_cuda(tmp_path):
    path, profiles = tmp_path / "bench.json", tmp_path / "profiles"
    argv = ["bench", "--device", "cuda", "--size", "tiny", "--steps", "1", "--warmup", "0"]
    assert main([*argv, "--json", str(path), "--profile", str(profiles), "--profile-steps", "1"]) == 0
    report = json.loads(path.read_text())
    assert all(row["peak_memory_bytes"] and row["peak_memory_bytes"] > 0 for row in report["rows"])
    assert (profiles / "summary.md").read_text().count("ms/step") == len(report["rows"])
