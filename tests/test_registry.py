"""The model-family table: every family builds its own model from its config class, and only from that."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tformer.registry import MODEL_FAMILIES, build_model, find_model_preset


@pytest.mark.parametrize("family", list(MODEL_FAMILIES.values()), ids=lambda f: f.name)
def test_build_model_picks_the_family_of_the_config_class(family):
    config = family.config_cls(**family.presets.get("tiny", {}))
    model = build_model(config)
    assert type(model) is type(family.build(config))
    assert model(**family.example_inputs(config, length=4)) is not None  # the family's inputs fit its model


def test_build_model_rejects_a_config_no_family_owns():
    @dataclass
    class Stranger:
        d_model: int = 8

    with pytest.raises(TypeError, match="no model family is built from Stranger"):
        build_model(Stranger())


def test_ambiguous_and_unknown_preset_names_list_the_choices():
    with pytest.raises(ValueError, match="ambiguous"):
        find_model_preset("tiny")
    with pytest.raises(ValueError, match="unknown model preset"):
        find_model_preset("gpt.nonexistent")
    family, _ = find_model_preset("gpt.tiny")
    assert family.name == "gpt"
