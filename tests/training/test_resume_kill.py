"""SIGKILL a training run, resume it, and get bit-identical state to an uninterrupted run; never a broken file.

Runs are child processes of a multiprocessing fork server that has imported torch and tformer once, so a run
starts in milliseconds instead of seconds. Two tests:

- 20 kill trials at seeded random points: each trial starts a fresh run that SIGKILLs itself at the n-th time
  it reaches one of ten points (mid-window, after an optimizer step, inside a checkpoint write before and
  after the rename, with a half-written temporary file, around last.safetensors' link, after pruning, after a
  log line, inside evaluation), then resumes it. Every checkpoint left behind must load, and the resumed run
  must end with the same weights, optimizer, scheduler and RNG state, progress and logged losses as the
  uninterrupted run.
- three kills in a row from outside, at random moments of a run slowed by a sleep per micro-batch.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from tformer.training.checkpoint import Checkpoint, load_checkpoint

from .toy_task import ToyModel, ToyTask, toy_config

# The fork server imports these once; each run is a fork of it. torch._dynamo (pulled in by the optimizer)
# and tensorboard are most of a cold start.
_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload([__name__, "torch._dynamo", "torch.utils.tensorboard"])

TIMEOUT_S = 60
KILL_POINTS = (
    "loss",  # at the start of a micro-batch's loss: mid-window, gradients half accumulated
    "optimizer_step",  # the weights moved, the step is not yet counted or saved
    "tmp_written",  # a checkpoint's temporary file is complete, neither synced nor renamed
    "tmp_torn",  # as above, but the temporary file cut in half (death in the middle of the write)
    "before_replace",  # the atomic rename of a checkpoint, last.safetensors' link or the log truncation
    "after_replace",  # the rename done, the directory not yet synced
    "before_link",  # step-N.safetensors written, last.safetensors still the previous step
    "after_prune",  # the old numbered checkpoints deleted
    "after_log",  # the log shows a step whose checkpoint is not written yet
    "evaluate",  # inside an evaluation (best.safetensors may follow)
)
N_TRIALS = 20
TRIAL_RUN = {"max_steps": 10, "grad_accum_steps": 2, "eval_every": 3, "checkpoint_every": 1, "keep_last": 2}


class _KillSwitch:
    """Counts how often the run reaches each kill point and SIGKILLs the process at the chosen one."""

    def __init__(self, kill_at: tuple[str, int] | None) -> None:
        self.kill_at = kill_at
        self.counts: Counter[str] = Counter()

    def reached(self, point: str, *, before_kill: Callable[[], None] | None = None) -> None:
        self.counts[point] += 1
        if self.kill_at == (point, self.counts[point]):
            if before_kill is not None:
                before_kill()
            os.kill(os.getpid(), signal.SIGKILL)


def _install_kill_points(switch: _KillSwitch) -> None:
    """Wrap the functions the trainer calls at each kill point (in this child process only)."""
    from tformer.training import checkpoint, trainer
    from tformer.training.logging import RunLogger

    def wrap(owner: Any, name: str, before: str | None, after: str | None) -> None:
        original = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if before:
                switch.reached(before)
            result = original(*args, **kwargs)
            if after:
                switch.reached(after)
            return result

        setattr(owner, name, wrapped)

    original_save_file = checkpoint.save_file

    def save_file(tensors: Any, filename: Any, metadata: Any = None) -> None:
        original_save_file(tensors, filename, metadata=metadata)
        switch.reached("tmp_written")
        tmp = Path(filename)
        switch.reached("tmp_torn", before_kill=lambda: os.truncate(tmp, tmp.stat().st_size // 2))

    checkpoint.save_file = save_file
    wrap(ToyTask, "loss", "loss", None)
    wrap(ToyTask, "evaluate", "evaluate", None)
    wrap(os, "replace", "before_replace", "after_replace")
    wrap(trainer, "link_or_copy", "before_link", None)
    wrap(trainer, "prune_numbered", None, "after_prune")
    wrap(RunLogger, "log", None, "after_log")
    register_optimizer_step_post_hook(lambda *_: switch.reached("optimizer_step"))


def _train_child(
    out_dir: Path,
    *,
    resume: bool,
    kill_at: tuple[str, int] | None,
    delay_s: float,
    run: dict[str, int],
    output: Path,
) -> None:
    """One training run of the toy task (in a forked child); writes its kill-point counts next to `output`."""
    with output.open("w") as sink:  # keep the child's log lines out of pytest's output
        os.dup2(sink.fileno(), sys.stdout.fileno())
        os.dup2(sink.fileno(), sys.stderr.fileno())
    torch.set_num_threads(1)  # every run sums in the same order, bit for bit
    switch = _KillSwitch(kill_at)
    _install_kill_points(switch)
    from tformer.training.trainer import Trainer

    torch.manual_seed(1234)
    model = ToyModel(dropout=0.3)  # dropout: the resumed run must also restore the RNG state
    config = toy_config(**run)
    Trainer(model, ToyTask(delay_s=delay_s), config, out_dir=out_dir, run_config={"task": "toy"}).fit(
        resume=resume
    )
    output.with_suffix(".counts.json").write_text(json.dumps(switch.counts))


def _start(out_dir: Path, *, resume: bool, kill_at=None, delay_s: float = 0.0, run: dict) -> Any:
    output = out_dir.parent / f"{out_dir.name}-{'resume' if resume else 'start'}.txt"
    kwargs = {"resume": resume, "kill_at": kill_at, "delay_s": delay_s, "run": run, "output": output}
    process = _SERVER.Process(target=_train_child, args=(out_dir,), kwargs=kwargs)
    process.start()
    process.output = output
    return process


def _finish(process: Any, *, expect_kill: bool) -> None:
    process.join(TIMEOUT_S)
    expected = -signal.SIGKILL if expect_kill else 0
    assert process.exitcode == expected, process.output.read_text()


def _assert_same(a: Any, b: Any, where: str) -> None:
    """Bit-identical nested state: tensors by dtype, shape and every bit; floats NaN-aware."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}/{index}")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


def _assert_same_checkpoint(expected: Checkpoint, actual: Checkpoint) -> None:
    for part in ("model_state", "optimizer_state", "scheduler_state", "rng_state", "run_config"):
        _assert_same(getattr(expected, part), getattr(actual, part), part)
    # train_seconds, eval_seconds and a budget's time mark are measured wall time (like the throughput _logged
    # leaves out): kept, never bit-identical
    timed = ("train_seconds", "eval_seconds", "budget_mark_seconds")
    untimed = [{k: v for k, v in c.progress.items() if k not in timed} for c in (expected, actual)]
    _assert_same(*untimed, "progress")
    assert actual.progress["train_seconds"] > 0, "progress/train_seconds"


def _logged(out_dir: Path) -> list[tuple[int, str, float]]:
    """(step, name, value) of every loss and metric in log.jsonl (throughput is timing, left out)."""
    rows = []
    for line in (out_dir / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        rows += [(record["step"], k, v) for k, v in record.items() if k in ("loss", "val_loss")]
    return rows


def _assert_every_checkpoint_loads(out_dir: Path) -> None:
    for path in out_dir.glob("*.safetensors"):
        load_checkpoint(path)  # raises on a torn, truncated or damaged file


def _kill_plan(counts: dict[str, int], seed: int) -> list[tuple[str, int]]:
    """N_TRIALS (point, occurrence) pairs: every point in turn, at a seeded random occurrence of it."""
    rng = random.Random(seed)
    assert set(counts) == set(KILL_POINTS), counts  # the uninterrupted run reaches every point
    return [(point, rng.randint(1, counts[point])) for point in (KILL_POINTS * N_TRIALS)[:N_TRIALS]]


@pytest.mark.slow
def test_twenty_kills_at_random_points_each_resume_bit_identical(tmp_path: Path) -> None:
    reference_dir = tmp_path / "reference"
    reference = _start(reference_dir, resume=False, run=TRIAL_RUN)
    _finish(reference, expect_kill=False)
    counts = json.loads(reference.output.with_suffix(".counts.json").read_text())
    expected = load_checkpoint(reference_dir / "last.safetensors")
    assert expected.progress["step"] == TRIAL_RUN["max_steps"]
    expected_log = _logged(reference_dir)

    torn_files = 0
    for trial, kill_at in enumerate(_kill_plan(counts, seed=2026)):
        out_dir = tmp_path / f"trial-{trial:02d}-{kill_at[0]}-{kill_at[1]}"
        _finish(_start(out_dir, resume=False, kill_at=kill_at, run=TRIAL_RUN), expect_kill=True)
        _assert_every_checkpoint_loads(out_dir)
        torn_files += any(out_dir.glob("*.tmp"))  # a partial file is only ever under a .tmp name
        _finish(_start(out_dir, resume=True, run=TRIAL_RUN), expect_kill=False)

        _assert_every_checkpoint_loads(out_dir)
        assert not list(out_dir.glob("*.tmp")), "the resumed run rewrote and renamed every temporary file"
        _assert_same_checkpoint(expected, load_checkpoint(out_dir / "last.safetensors"))
        _assert_same_checkpoint(
            load_checkpoint(reference_dir / "best.safetensors"), load_checkpoint(out_dir / "best.safetensors")
        )
        assert _logged(out_dir) == expected_log  # the log reads as one run with the same losses
    assert torn_files >= 2  # at least the tmp_written and tmp_torn kills left a temporary file behind


# ---------------------------------------------------------------------------------------------------------------
# Kills from outside at random moments

SLOW_RUN = {"max_steps": 24, "eval_every": 4, "checkpoint_every": 1}  # 12 batches per epoch: crosses one
SLOW_DELAY_S = 0.01


def _logged_step(log: Path) -> int:
    if not log.exists():
        return 0
    steps = [0]
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written right now
            steps.append(json.loads(line)["step"])
    return max(steps)


def _run_and_kill(out_dir: Path, *, after_step: int, extra_delay_s: float) -> int:
    """Start a (resumed) run, SIGKILL it once log.jsonl shows `after_step` plus a delay; the last logged step."""
    process = _start(out_dir, resume=True, delay_s=SLOW_DELAY_S, run=SLOW_RUN)
    deadline = time.monotonic() + TIMEOUT_S
    while _logged_step(out_dir / "log.jsonl") < after_step:
        assert process.is_alive(), f"run ended before it could be killed: {process.output.read_text()}"
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.002)
    time.sleep(extra_delay_s)
    process.kill()
    _finish(process, expect_kill=True)  # fails if the run finished before the kill
    return _logged_step(out_dir / "log.jsonl")


@pytest.mark.slow
def test_repeated_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = _start(reference_dir, resume=False, delay_s=SLOW_DELAY_S, run=SLOW_RUN)
    # Three kills in a row, each in a later part of the run than the last one's log reached (a resumed run
    # truncates the log only after its start-up, so an earlier target could fire on the stale log). The last
    # target leaves >= 6 updates (>= 60 ms of sleep) so that the run cannot finish before the kill lands.
    rng = random.Random(0)
    killed_at = 0
    for low, high in ((1, 6), (8, 12), (15, 18)):
        target = max(rng.randint(low, high), killed_at + 1)
        # a few ms past the logged step lands in that step's eval/checkpoint save or in the next update
        killed_at = _run_and_kill(killed_dir, after_step=target, extra_delay_s=rng.uniform(0.0, 0.02))
        assert killed_at < SLOW_RUN["max_steps"]
        _assert_every_checkpoint_loads(killed_dir)
    _finish(_start(killed_dir, resume=True, delay_s=SLOW_DELAY_S, run=SLOW_RUN), expect_kill=False)
    _finish(reference, expect_kill=False)

    expected, resumed = (load_checkpoint(d / "last.safetensors") for d in (reference_dir, killed_dir))
    _assert_same_checkpoint(expected, resumed)
    assert [step for step, name, _ in _logged(killed_dir) if name == "loss"] == list(
        range(1, SLOW_RUN["max_steps"] + 1)
    )
    assert _logged(killed_dir) == _logged(reference_dir)
