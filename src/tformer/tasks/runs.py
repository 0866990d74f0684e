"""From a preset or YAML file to a trained checkpoint, and from a checkpoint back to a working model.

The run config is frozen here, once: preset YAML + command-line overrides -> a typed dataclass. Checkpoints store
it resolved (the model section completed with the data's vocabulary), so `evaluate`, `translate` and `generate`
need nothing but the checkpoint file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from tformer.config import flatten, from_dict, load_yaml_with_lines, merge, parse_overrides, to_dict
from tformer.registry import build_model
from tformer.tasks.base import RunConfig, TaskKind, TrainedModel
from tformer.tasks.language_model import LANGUAGE_MODEL
from tformer.tasks.translation import TRANSLATION
from tformer.training.checkpoint import Checkpoint, load_checkpoint, load_model_weights
from tformer.training.distributed import resolve_device
from tformer.training.trainer import FitResult, Trainer

PRESET_DIR = Path(__file__).parent / "presets"


# The task table: one row per kind of task (tasks/base.py); a run config's `task` names its row.
TASKS: dict[str, TaskKind] = {kind.name: kind for kind in (TRANSLATION, LANGUAGE_MODEL)}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_preset(preset_or_yaml: str) -> Path:
    """A path to a YAML file, or the name of a preset shipped in tasks/presets/."""
    path = Path(preset_or_yaml)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    preset = PRESET_DIR / f"{preset_or_yaml}.yaml"
    if not preset.is_file():
        raise ValueError(
            f"unknown preset {preset_or_yaml!r} (valid: {', '.join(preset_names())}, or a .yaml path)"
        )
    return preset


def _load_with_base(path: Path, *, seen: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """A YAML run config; `extends: PRESET` first loads that preset and applies this file on top of it."""
    if path in seen:
        raise ValueError(f"{path}: `extends` loops back to itself ({' -> '.join(map(str, (*seen, path)))})")
    data, locations = load_yaml_with_lines(path)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, locations
    if not isinstance(base_name, str):
        raise ValueError(f"{locations.get('extends', path)}: `extends` must name a preset, got {base_name!r}")
    base, base_locations = _load_with_base(resolve_preset(base_name), seen=(*seen, path))
    return merge(base, data), {**base_locations, **locations}


def _task_kind(name: Any, *, where: str) -> TaskKind:
    if name not in TASKS:
        raise ValueError(f"{where}: unknown task {name!r} (valid: {', '.join(TASKS)})")
    return TASKS[name]


def load_run_config(preset_or_yaml: str, overrides: list[str] | None = None) -> RunConfig:
    path = resolve_preset(preset_or_yaml)
    data, locations = _load_with_base(path)
    extra = parse_overrides(overrides or [])
    locations |= {key: "command line" for key in flatten(extra)}
    data = merge(data, extra)
    kind = _task_kind(data.get("task", "translation"), where=str(path))
    return from_dict(kind.run_config, data, where=str(path), locations=locations)


def train(config: RunConfig, *, resume: bool = False) -> tuple[FitResult, Any, Path]:
    """Build data, tokenizer and model from the run config and train; returns (result, task, out_dir).

    On resume the task state (the tokenizers) comes from the checkpoint, so token ids keep their meaning.
    """
    kind = _task_kind(config.task, where="run config")
    out_dir = Path(config.out_dir)
    last = out_dir / "last.safetensors"
    state = None
    if resume and last.is_file():
        state = _task_state(kind, load_checkpoint(last), last)
    torch.manual_seed(config.train.seed)  # the model's initial weights
    task = kind.build(config, state)
    resolved = dataclasses.replace(config, model=task.model_config())
    model = build_model(resolved.model)
    trainer = Trainer(
        model,
        task,
        config.train,
        out_dir=out_dir,
        run_config=to_dict(resolved),
        task_state=task.state_json(),
    )
    return trainer.fit(resume=resume), task, out_dir


def load_trained(path: str | Path, *, device: str = "auto", task: str | None = None) -> TrainedModel:
    """Everything needed to use a model, rebuilt from one checkpoint file (no pickle involved).

    `task`, when given, is the task the caller can handle; a checkpoint of another task is a clear error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = load_checkpoint(path)
    stored_task = ckpt.run_config.get("task")
    kind = _task_kind(stored_task, where=f"{path}: checkpoint")
    if task is not None and stored_task != task:
        raise ValueError(f"{path} is a {stored_task} checkpoint; this command needs a {task} checkpoint")
    config = from_dict(kind.run_config, ckpt.run_config, where=f"{path} (stored run config)")
    model = build_model(config.model)
    load_model_weights(model, ckpt)
    model.to(resolve_device(device)).eval()
    return TrainedModel(
        kind=kind, config=config, model=model, state=_task_state(kind, ckpt, path), progress=ckpt.progress
    )


def _task_state(kind: TaskKind, ckpt: Checkpoint, path: Path) -> Any:
    if ckpt.task_state is None:
        raise ValueError(f"{path} holds no {kind.name} task state: it was not written by `tformer train`")
    return kind.state_from_json(ckpt.task_state)
