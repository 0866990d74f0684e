"""Building models from presets, run configs and checkpoints: the one place configs become modules."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tformer.registry import ModelFamily, find_model_preset


def load_model_for_info(target: str) -> tuple[str, nn.Module, ModelFamily, object]:
    """A preset name or a checkpoint path -> (title, model, family, config)."""
    if Path(target).suffix == ".safetensors" or Path(target).exists():
        raise ValueError(f"checkpoints are not supported yet: {target}")
    family, preset = find_model_preset(target)
    config = family.config_cls(**preset)
    return f"{family.name}.{target.rpartition('.')[2]}", family.build(config), family, config
