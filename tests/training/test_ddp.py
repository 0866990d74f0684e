"""DDP on CPU (gloo): 2 processes with gradient accumulation end where 1 process over the same global batch does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from tformer.training.checkpoint import load_checkpoint
from tformer.training.distributed import all_reduce_sum, cleanup, init_distributed, resolve_device, wrap_ddp

SCRIPT = Path(__file__).with_name("toy_task.py")
SRC = Path(__file__).resolve().parents[2] / "src"
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _start(command: list[str], out_dir: Path, *args: str) -> subprocess.Popen:
    full = [*command, str(SCRIPT), "--out", str(out_dir), "--max-steps", "8", "--eval-every", "4", *args]
    out_dir.mkdir(parents=True)
    output = (out_dir / "output.txt").open("w")
    return subprocess.Popen(full, env=_env(), stdout=output, stderr=subprocess.STDOUT)


def _final_parameters(process: subprocess.Popen, out_dir: Path) -> dict[str, torch.Tensor]:
    assert process.wait(timeout=120) == 0, (out_dir / "output.txt").read_text()[-5000:]
    return load_checkpoint(out_dir / "last.safetensors").model_state


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo unavailable"
)
def test_two_processes_match_one_process_over_the_global_batch(tmp_path: Path) -> None:
    # 1 process: batches of 8. DDP: 2 ranks x 2 accumulated micro-batches of 2 = the same 8 sequences per update
    # (the toy task gives rank r the r-th slice of each global batch); 8 updates cross an epoch boundary.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    ddp_run = _start(torchrun, tmp_path / "ddp", "--batch-size", "2", "--grad-accum", "2")
    single_run = _start([sys.executable], tmp_path / "single", "--batch-size", "8")
    single = _final_parameters(single_run, tmp_path / "single")
    ddp = _final_parameters(ddp_run, tmp_path / "ddp")
    assert single.keys() == ddp.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(ddp[name], tensor, rtol=0, atol=1e-6, msg=name)
    # rank 0 alone logs: a second writer would duplicate the records
    records = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 9))


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo unavailable"
)
def test_a_nan_on_one_rank_stops_or_is_skipped_on_every_rank_at_the_same_step(tmp_path: Path) -> None:
    # Rank 1's 3rd loss is NaN: update 2 (2 micro-batches per update). The trainer reads the all-reduced
    # numbers only at steps 4 and 8, and both ranks act on them there, in the same way.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    fault = ["--batch-size", "2", "--grad-accum", "2", "--nan-loss", "1:3", "--log-every", "4"]
    sparse = ["--checkpoint-every", "8", "--eval-every", "8"]
    stopped = _start(torchrun, tmp_path / "stop", *fault, *sparse)
    assert stopped.wait(timeout=120) != 0
    output = (tmp_path / "stop" / "output.txt").read_text()
    assert "non-finite loss (nan) at step 2 (epoch 0, batch index 2, loss sum nan)" in output  # rank 1
    assert (
        "at step 2 (micro-batches from epoch 0, batch index 2 to epoch 0, batch index 3 on this process; "
        "the non-finite loss came from another process)" in output
    )  # rank 0
    assert not (tmp_path / "stop" / "last.safetensors").exists()
    skipped = _start(torchrun, tmp_path / "skip", *fault, *sparse, "--nonfinite", "skip")
    assert skipped.wait(timeout=120) == 0, (tmp_path / "skip" / "output.txt").read_text()[-5000:]
    records = [json.loads(line) for line in (tmp_path / "skip" / "log.jsonl").read_text().splitlines()]
    assert [r.get("skipped_steps") for r in records if "lr" in r] == [1, 1]


def test_single_process_without_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.is_main) == (0, 0, 1, True)
    assert ctx.device == torch.device("cpu") and not ctx.owns_process_group
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, ctx) is model
    tensor = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_sum(tensor, ctx), torch.tensor([1.0, 2.0]))
    cleanup(ctx)  # nothing to destroy, must not raise


def test_device_resolution() -> None:
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_inconsistent_torchrun_env_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("RANK", "2"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="RANK=2"):
        init_distributed("cpu")
