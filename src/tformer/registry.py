"""Explicit name -> builder tables for model families (no import-time magic: add a row to register)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from tformer.models import gpt, rnn, seq2seq
from tformer.models.outputs import LMOutput, Seq2SeqOutput


@dataclass(frozen=True)
class RightPadding:
    """How a family's batches hold rows of different lengths: the `inputs` ([B, L] each) are padded on the
    right with `pad_id(config)`, and the main output ([B, L, ...]) at a row's real positions must not depend
    on the padding after them. The model contract test (tests/test_model_contract.py) checks it."""

    inputs: tuple[str, ...]
    pad_id: Callable[[object], int]


@dataclass(frozen=True)
class ModelFamily:
    """One row of the table. Every family has a "tiny" preset (the contract test builds it), returns
    `output_type` from forward(**example_inputs(config)) with the tensor its loss is computed from in the
    field `main_output`, and says how its batches are padded (None: its inputs have no variable length)."""

    name: str
    config_cls: type
    build: Callable[[object], nn.Module]
    presets: dict[str, dict]
    example_inputs: Callable[..., dict[str, Tensor]]
    output_type: type
    main_output: str
    padding: RightPadding | None


# Encoder-decoder batches pad source and target; the causal decoder never looks past a target row's end.
_SEQ2SEQ_PADDING = RightPadding(inputs=("src_ids", "tgt_ids"), pad_id=lambda c: c.pad_id)
# Language-model windows are packed, never padded; a row's positions must still not see the tokens after them,
# so any id stands in for padding.
_LM_PADDING = RightPadding(inputs=("input_ids",), pad_id=lambda c: 0)

MODEL_FAMILIES: dict[str, ModelFamily] = {
    "seq2seq": ModelFamily(
        name="seq2seq",
        config_cls=seq2seq.Seq2SeqConfig,
        build=seq2seq.Seq2SeqTransformer,
        presets=seq2seq.PRESETS,
        example_inputs=seq2seq.example_inputs,
        output_type=Seq2SeqOutput,
        main_output="logits",
        padding=_SEQ2SEQ_PADDING,
    ),
    "gpt": ModelFamily(
        name="gpt",
        config_cls=gpt.GPTConfig,
        build=gpt.GPT,
        presets=gpt.PRESETS,
        example_inputs=gpt.example_inputs,
        output_type=LMOutput,
        main_output="logits",
        padding=_LM_PADDING,
    ),
    # The recurrent baselines of issue 6; their inputs are those of the Transformer they stand in for.
    "lstm_attention": ModelFamily(
        name="lstm_attention",
        config_cls=rnn.LSTMSeq2SeqConfig,
        build=rnn.LSTMAttentionSeq2Seq,
        presets={"tiny": dict(d_embed=32, d_hidden=64, dropout=0.0)},
        example_inputs=seq2seq.example_inputs,
        output_type=Seq2SeqOutput,
        main_output="logits",
        padding=_SEQ2SEQ_PADDING,
    ),
    "lstm_lm": ModelFamily(
        name="lstm_lm",
        config_cls=rnn.LSTMLMConfig,
        build=rnn.LSTMLanguageModel,
        presets={"tiny": dict(vocab_size=1000, d_embed=32, d_hidden=32, dropout=0.0)},
        example_inputs=gpt.example_inputs,
        output_type=LMOutput,
        main_output="logits",
        padding=_LM_PADDING,
    ),
}


def model_family(name: str) -> ModelFamily:
    if name not in MODEL_FAMILIES:
        raise ValueError(f"unknown model type {name!r} (valid: {', '.join(MODEL_FAMILIES)})")
    return MODEL_FAMILIES[name]


def find_model_preset(name: str) -> tuple[ModelFamily, dict]:
    """'base' or 'seq2seq.base' -> (family, preset overrides); ambiguous or unknown names list the choices."""
    family_name, _, preset = name.rpartition(".")
    families = [model_family(family_name)] if family_name else list(MODEL_FAMILIES.values())
    matches = [f for f in families if preset in f.presets]
    if len(matches) == 1:
        return matches[0], matches[0].presets[preset]
    known = [f"{f.name}.{p}" for f in families for p in f.presets]
    if not matches:
        raise ValueError(f"unknown model preset {name!r} (valid: {', '.join(known)})")
    raise ValueError(
        f"model preset {name!r} is ambiguous: say {' or '.join(f'{f.name}.{preset}' for f in matches)}"
    )


def family_of(config: object) -> ModelFamily:
    """The family whose config class `config` is (a run config's `model.type` chose it)."""
    for family in MODEL_FAMILIES.values():
        if type(config) is family.config_cls:
            return family
    valid = ", ".join(f.config_cls.__name__ for f in MODEL_FAMILIES.values())
    raise TypeError(f"no model family is built from {type(config).__name__} (valid: {valid})")


def build_model(config: object) -> nn.Module:
    """The model a config describes."""
    return family_of(config).build(config)
