"""`tformer info`: a model from a preset name or a trained checkpoint, summarised."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tformer.checks import check_positive_int
from tformer.models.summary import summarize
from tformer.registry import ModelFamily, family_of, find_model_preset
from tformer.tasks.runs import load_trained


def load_model_for_info(target: str) -> tuple[str, nn.Module, ModelFamily, object]:
    """A preset name or a checkpoint path -> (title, model, family, config)."""
    path = Path(target)
    if path.suffix == ".safetensors" or path.is_file():
        trained = load_trained(path, device="cpu")
        step = trained.progress.get("step", "?")
        family = family_of(trained.config.model)
        return f"{path} ({family.name}, step {step})", trained.model, family, trained.config.model
    family, preset = find_model_preset(target)
    config = family.config_cls(**preset)
    return f"{family.name}.{target.rpartition('.')[2]}", family.build(config), family, config


def describe_model(target: str, *, length: int) -> str:
    """The summary table of a preset or checkpoint, measured on an example batch of `length` tokens."""
    check_positive_int("--length", length)
    title, model, family, config = load_model_for_info(target)
    return summarize(model, family.example_inputs(config, length=length), tokens=length).format(title)
