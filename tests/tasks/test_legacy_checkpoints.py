"""Checkpoints written by an earlier tformer (tests/fixtures/legacy/README.md) still load and compute what
they computed then: the same special ids, the same token ids, the same outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tformer.tasks.runs import load_trained
from tformer.tasks.translation import translate

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))


def special_ids(tokenizer) -> list[int]:
    return [tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id]


def test_a_legacy_translation_checkpoint_translates_as_before():
    expected = EXPECTED["dates_translation"]
    trained = load_trained(LEGACY / "dates_translation.safetensors", device="cpu", task="translation")
    target = trained.state.target
    assert special_ids(target) == expected["specials"] == [0, 1, 2, 3]
    assert target.vocab_size == expected["vocab_size"]
    assert target.encode(expected["text"]) == expected["ids"]
    outputs = translate(trained.model, trained.state, expected["sources"], config=trained.config.decode)
    assert [o.text for o in outputs] == expected["hypotheses"]


def test_a_legacy_language_model_checkpoint_scores_as_before():
    expected = EXPECTED["char_lm"]
    trained = load_trained(LEGACY / "char_lm.safetensors", device="cpu", task="language_model")
    tokenizer = trained.state
    assert special_ids(tokenizer) == expected["specials"] == [0, 1, 2, 3]
    ids = tokenizer.encode(expected["text"])
    assert ids == expected["ids"]
    with torch.no_grad():
        logits = trained.model(torch.tensor([ids])).logits
    assert float(logits.double().sum()) == pytest.approx(expected["logits_sum"], rel=1e-6)
    assert logits.argmax(-1)[0].tolist() == expected["argmax"]
