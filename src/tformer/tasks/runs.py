"""From a preset or YAML file to a trained checkpoint, and from a checkpoint back to a working model.

The run config is frozen here, once: preset YAML + command-line overrides -> a typed dataclass. Checkpoints store
it resolved (the model section completed with the data's vocabulary), so `evaluate` and `translate` need nothing
but the checkpoint file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from tformer.config import flatten, from_dict, load_yaml_with_lines, merge, parse_overrides, to_dict
from tformer.data.tokenizers import TokenizerPair
from tformer.models.seq2seq import Seq2SeqTransformer
from tformer.tasks.translation import TranslationRunConfig, TranslationTask
from tformer.training.checkpoint import load_checkpoint, load_model_weights
from tformer.training.distributed import resolve_device
from tformer.training.trainer import FitResult, Trainer

PRESET_DIR = Path(__file__).parent / "presets"
RUN_CONFIGS = {"translation": TranslationRunConfig}


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


def load_run_config(preset_or_yaml: str, overrides: list[str] | None = None) -> TranslationRunConfig:
    path = resolve_preset(preset_or_yaml)
    data, locations = _load_with_base(path)
    extra = parse_overrides(overrides or [])
    locations |= {key: "command line" for key in flatten(extra)}
    data = merge(data, extra)
    task = data.get("task", "translation")
    if task not in RUN_CONFIGS:
        raise ValueError(f"{path}: unknown task {task!r} (valid: {', '.join(RUN_CONFIGS)})")
    return from_dict(RUN_CONFIGS[task], data, where=str(path), locations=locations)


def train(config: TranslationRunConfig, *, resume: bool = False) -> tuple[FitResult, TranslationTask, Path]:
    """Build data, tokenizer and model from the run config and train; returns (result, task, out_dir).

    On resume the tokenizer comes from the checkpoint, so token ids keep their meaning.
    """
    out_dir = Path(config.out_dir)
    last = out_dir / "last.safetensors"
    tokenizers = None
    if resume and last.is_file():
        tokenizers = TokenizerPair.from_json(load_checkpoint(last).tokenizer)
    torch.manual_seed(config.train.seed)  # the model's initial weights
    task = TranslationTask(config, tokenizers=tokenizers)
    resolved = dataclasses.replace(config, model=task.model_config())
    model = Seq2SeqTransformer(resolved.model)
    trainer = Trainer(
        model,
        task,
        config.train,
        out_dir=out_dir,
        run_config=to_dict(resolved),
        tokenizer_json=task.tokenizers.to_json(),
    )
    return trainer.fit(resume=resume), task, out_dir


@dataclass
class TrainedModel:
    config: TranslationRunConfig
    model: Seq2SeqTransformer
    tokenizers: TokenizerPair
    progress: dict


def load_trained(path: str | Path, *, device: str = "auto") -> TrainedModel:
    """Everything needed to translate or evaluate, rebuilt from one checkpoint file (no pickle involved)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = load_checkpoint(path)
    if ckpt.tokenizer is None:
        raise ValueError(f"{path} holds no tokenizer: it was not written by `tformer train`")
    task = ckpt.run_config.get("task")
    if task not in RUN_CONFIGS:
        raise ValueError(f"{path}: checkpoint of unknown task {task!r} (valid: {', '.join(RUN_CONFIGS)})")
    config = from_dict(RUN_CONFIGS[task], ckpt.run_config, where=f"{path} (stored run config)")
    model = Seq2SeqTransformer(config.model)
    load_model_weights(model, ckpt)
    model.to(resolve_device(device)).eval()
    return TrainedModel(
        config=config, model=model, tokenizers=TokenizerPair.from_json(ckpt.tokenizer), progress=ckpt.progress
    )
