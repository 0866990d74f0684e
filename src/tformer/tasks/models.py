"""Models for `tformer info`: from a preset name or from a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tformer.registry import ModelFamily, find_model_preset, model_family
from tformer.tasks.runs import load_trained


def load_model_for_info(target: str) -> tuple[str, nn.Module, ModelFamily, object]:
    """A preset name or a checkpoint path -> (title, model, family, config)."""
    path = Path(target)
    if path.suffix == ".safetensors" or path.is_file():
        trained = load_trained(path, device="cpu")
        step = trained.progress.get("step", "?")
        return f"{path} (seq2seq, step {step})", trained.model, model_family("seq2seq"), trained.config.model
    family, preset = find_model_preset(target)
    config = family.config_cls(**preset)
    return f"{family.name}.{target.rpartition('.')[2]}", family.build(config), family, config
