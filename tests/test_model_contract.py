"""The contract every registered model family meets (timm-style): parametrised over the registry, so a new
family is checked by adding its row. Each family is built from its "tiny" preset with dropout switched on
where the config has it, so that train and eval modes really differ."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tformer.registry import MODEL_FAMILIES, ModelFamily
from tformer.training.checkpoint import load_model_weights, save_checkpoint

FAMILIES = list(MODEL_FAMILIES.values())
LENGTH = 7
ROW_LENGTHS = (LENGTH, 4, 1, 0)  # the last row is nothing but padding


def contract_config(family: ModelFamily) -> object:
    assert "tiny" in family.presets, f"family {family.name} needs a 'tiny' preset for the contract test"
    config = family.config_cls(**family.presets["tiny"])
    fields = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, dropout=0.2) if "dropout" in fields else config


def build(family: ModelFamily, config: object, *, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return family.build(config)


def tensors_of(output: object) -> dict[str, torch.Tensor]:
    """Every tensor field of an output dataclass, nested dataclasses included (Seq2SeqOutput.encoder)."""
    found = {}
    for field in dataclasses.fields(output):
        value = getattr(output, field.name)
        if isinstance(value, torch.Tensor):
            found[field.name] = value
        elif dataclasses.is_dataclass(value):
            found |= {f"{field.name}.{k}": v for k, v in tensors_of(value).items()}
    return found


def padded_batch(family: ModelFamily, config: object) -> dict[str, torch.Tensor]:
    """The example batch with row b's padded inputs cut to ROW_LENGTHS[b] real positions."""
    inputs = family.example_inputs(config, batch_size=len(ROW_LENGTHS), length=LENGTH)
    padding = family.padding
    if padding is None:
        return inputs
    real = torch.arange(LENGTH) < torch.tensor(ROW_LENGTHS).unsqueeze(1)  # [B, L]
    for name in padding.inputs:
        inputs[name] = inputs[name].masked_fill(~real, padding.pad_id(config))
    return inputs


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_forward_returns_the_family_output_type(family):
    config = contract_config(family)
    model = build(family, config).eval()
    output = model(**family.example_inputs(config, batch_size=2, length=LENGTH))
    assert type(output) is family.output_type
    assert all(torch.isfinite(t).all() for t in tensors_of(output).values())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_parameter_gets_a_gradient(family):
    config = contract_config(family)
    model = build(family, config).train()
    output = model(**family.example_inputs(config, batch_size=2, length=LENGTH))
    main = getattr(output, family.main_output)
    # A random weighting, so that no parameter's gradient cancels by symmetry (a plain sum would make the
    # output bias the only thing that matters to the last layer's softmax-free sum, say).
    weights = torch.randn(main.shape, generator=torch.Generator().manual_seed(1))
    (main * weights).sum().backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not without, f"{family.name}: no gradient reaches {without}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_eval_mode_is_deterministic(family):
    config = contract_config(family)
    model = build(family, config).eval()
    inputs = family.example_inputs(config, batch_size=2, length=LENGTH)
    first, second = tensors_of(model(**inputs)), tensors_of(model(**inputs))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), f"{family.name}: {name} differs between two eval runs"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_a_checkpoint_round_trip_gives_the_same_outputs(family, tmp_path):
    config = contract_config(family)
    model = build(family, config, seed=0).eval()
    path = save_checkpoint(tmp_path / "model.safetensors", model=model, progress={}, run_config={})
    reloaded = build(family, config, seed=1).eval()  # other initial weights, all replaced by the file's
    load_model_weights(reloaded, path)
    inputs = family.example_inputs(config, batch_size=2, length=LENGTH)
    expected, actual = tensors_of(model(**inputs)), tensors_of(reloaded(**inputs))
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"{family.name}: {name} changed after a round trip"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_a_padded_row_equals_the_same_example_alone(family):
    config = contract_config(family)
    model = build(family, config).eval()
    batch = padded_batch(family, config)
    batched = getattr(model(**batch), family.main_output)
    for row, length in enumerate(ROW_LENGTHS):
        if length == 0:
            continue
        alone_inputs = {name: value[row : row + 1] for name, value in batch.items()}
        if family.padding is not None:
            for name in family.padding.inputs:
                alone_inputs[name] = alone_inputs[name][:, :length]
        alone = getattr(model(**alone_inputs), family.main_output)
        kept = slice(None) if family.padding is None else slice(0, length)
        torch.testing.assert_close(batched[row, kept], alone[0, kept], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_a_fully_padded_row_stays_finite(family):
    config = contract_config(family)
    model = build(family, config).train()
    output = model(**padded_batch(family, config))
    for name, value in tensors_of(output).items():
        assert torch.isfinite(value).all(), f"{family.name}: {name} has NaN or inf with a fully padded row"
    main = getattr(output, family.main_output)
    main.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
