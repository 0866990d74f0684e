"""SIGKILL a training run at a random moment, resume it, and get bit-identical parameters to an uninterrupted run.

Each run is a subprocess of toy_task.py with dropout (so the RNG state matters), a checkpoint every update
and a short sleep per micro-batch (so there is time to kill it part way, sometimes inside a checkpoint save).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tformer.training.checkpoint import load_checkpoint

SCRIPT = Path(__file__).with_name("toy_task.py")
SRC = Path(__file__).resolve().parents[2] / "src"
MAX_STEPS = 24  # 12 batches per epoch: the runs cross an epoch boundary
RUN_ARGS = ["--max-steps", str(MAX_STEPS), "--checkpoint-every", "1", "--eval-every", "4", "--dropout", "0.3"]
RUN_ARGS += ["--delay", "0.01"]
TIMEOUT_S = 60


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _command(out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--out", str(out_dir), *RUN_ARGS, *extra]


def _run(out_dir: Path, *extra: str) -> None:
    done = subprocess.run(
        _command(out_dir, *extra), env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr


def _logged_step(log: Path) -> int:
    if not log.exists():
        return 0
    steps = [0]
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written right now
            steps.append(json.loads(line)["step"])
    return max(steps)


def _train_losses(log: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def _run_and_kill(out_dir: Path, *, after_step: int, extra_delay_s: float) -> int:
    """Start a (resumed) run, SIGKILL it once log.jsonl shows `after_step` plus a delay; the last logged step."""
    process = subprocess.Popen(
        _command(out_dir, "--resume"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + TIMEOUT_S
    while _logged_step(out_dir / "log.jsonl") < after_step:
        assert process.poll() is None, (
            f"run ended before it could be killed: {process.stderr.read().decode()}"
        )
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.002)
    time.sleep(extra_delay_s)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=TIMEOUT_S)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the run finished before the kill"
    return _logged_step(out_dir / "log.jsonl")


@pytest.mark.slow
def test_repeated_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = subprocess.Popen(_command(reference_dir), env=_env(), stdout=subprocess.DEVNULL)
    # Three kills in a row, each in a later part of the run than the last one's log reached (a resumed run
    # truncates the log only after its start-up, so an earlier target could fire on the stale log). The last
    # target leaves >= 6 updates (>= 60 ms of sleep) so that the run cannot finish before the kill lands.
    rng = random.Random(0)
    killed_at = 0
    for low, high in ((1, 6), (8, 12), (15, 18)):
        target = max(rng.randint(low, high), killed_at + 1)
        # a few ms past the logged step lands in that step's eval/checkpoint save or in the next update
        killed_at = _run_and_kill(killed_dir, after_step=target, extra_delay_s=rng.uniform(0.0, 0.02))
        assert killed_at < MAX_STEPS
    _run(killed_dir, "--resume")
    assert reference.wait(timeout=TIMEOUT_S) == 0

    expected, resumed = (load_checkpoint(d / "last.safetensors") for d in (reference_dir, killed_dir))
    assert resumed.progress == expected.progress
    assert expected.model_state.keys() == resumed.model_state.keys()
    for name, tensor in expected.model_state.items():
        assert torch.equal(resumed.model_state[name], tensor), name
    for path in killed_dir.glob("*.safetensors"):
        assert load_checkpoint(path).progress["step"] <= MAX_STEPS, path
    # the log reads as one run, with the same losses as the uninterrupted one at every step
    resumed_log, expected_log = (_train_losses(d / "log.jsonl") for d in (killed_dir, reference_dir))
    assert [step for step, _ in resumed_log] == list(range(1, MAX_STEPS + 1))
    assert resumed_log == expected_log
