"""The task-kind record: everything `train`, `evaluate`, `info` and the checkpoint loaders need to know about a
kind of task, so that none of them branches on a task's name.

A task kind names its run-config type, builds its task from a run config (and, on resume or load, from the
task state a checkpoint stored: the tokenizers today; class names or scaler statistics for families without a
tokenizer), reads that state back from its JSON, and evaluates a trained model on a named split into a flat
dict of metrics with a few lines of human-readable summary. The task object itself is what the Trainer drives
(training/task_protocol.py); it may also offer its own optimizer parameter groups there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn


class RunConfig(Protocol):
    """What every kind's run config has: the kind's name, where the run writes, the model section (its
    `type` picks the registry's family) and the Trainer's settings."""

    task: str
    out_dir: str
    model: Any
    train: Any  # TrainConfig


@dataclass(frozen=True)
class EvaluationRequest:
    """What to evaluate: a split, and the options a kind may take (a kind refuses those it cannot honour)."""

    split: str
    n: int | None = None  # score only the first n examples
    beam_size: int | None = None  # decoding tasks: instead of the run config's beam


@dataclass
class Evaluation:
    metrics: dict[str, float | int | str]
    summary: list[str]  # the metrics as a person reads them, one line each
    hypotheses: list[str] = field(default_factory=list)  # decoding tasks only: one output per example
    references: list[str] = field(default_factory=list)


@dataclass
class TrainedModel:
    """A model rebuilt from a checkpoint, with what its task needs to use it."""

    kind: TaskKind
    config: Any  # the kind's run config, as stored in the checkpoint
    model: nn.Module
    state: Any  # the kind's task state (TokenizerPair for translation, Tokenizer for language models)
    progress: dict


@dataclass(frozen=True)
class TaskKind:
    """One row of the task table (tasks/runs.py)."""

    name: str
    run_config: type
    build: Callable[[Any, Any], Any]  # (run config, task state or None to build it from the data) -> task
    state_from_json: Callable[[str], Any]  # the inverse of the task's state_json()
    evaluate: Callable[[TrainedModel, EvaluationRequest], Evaluation]


def refuse_options(request: EvaluationRequest, kind: str, *options: str) -> None:
    """A clear error for request options a kind of task cannot honour, rather than silently ignoring them."""
    given = [name for name in options if getattr(request, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} does not apply to a {kind} checkpoint; leave it unset")
