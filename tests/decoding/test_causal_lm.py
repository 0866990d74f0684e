"""Generation from a decoder-only model: the KV cache changes nothing, the window slides, sampling is seeded."""

from __future__ import annotations

import pytest
import torch

from tformer.decoding.causal_lm import CausalLMState, SamplingConfig, generate_tokens
from tformer.decoding.sampling import apply_repetition_penalty
from tformer.models.gpt import GPT, GPTConfig
from tformer.nn.positional import PositionalKind

VOCAB = 37


def _model(*, positional: PositionalKind = PositionalKind.LEARNED, context: int = 64) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=VOCAB,
        context_length=context,
        d_model=32,
        n_heads=4,
        n_layers=2,
        d_ff=64,
        positional=positional,
    )
    return GPT(config).eval()


def _uncached_greedy(model: GPT, prompt: torch.Tensor, steps: int) -> list[list[int]]:
    ids = prompt
    for _ in range(steps):
        with torch.no_grad():
            next_ids = model(ids).logits[:, -1].argmax(dim=-1, keepdim=True)  # Long[B, 1]
        ids = torch.cat([ids, next_ids], dim=1)
    return ids[:, prompt.size(1) :].tolist()


@pytest.mark.parametrize("positional", [PositionalKind.LEARNED, PositionalKind.ROTARY])
def test_cached_generation_equals_uncached_token_for_token(positional):
    model = _model(positional=positional)
    prompt = torch.randint(4, VOCAB, (3, 7), generator=torch.Generator().manual_seed(1))
    config = SamplingConfig(max_new_tokens=20, temperature=0.0)
    cached = torch.stack(list(generate_tokens(model, prompt, config=config)), dim=1).tolist()  # [B, 20]
    assert cached == _uncached_greedy(model, prompt, 20)


def test_state_logits_match_a_full_forward_of_its_history_past_the_window():
    """Past the context window the cache is rebuilt from the last half; what the state scores must still be
    exactly what the model gives for the tokens the state says it holds."""
    model = _model(context=16)
    state = CausalLMState(model, torch.randint(4, VOCAB, (2, 5), generator=torch.Generator().manual_seed(2)))
    token = torch.full((2, 1), 5)
    for step in range(40):
        out = state.step(token)
        assert state.history.size(1) <= 16
        with torch.no_grad():
            expected = model(state.history).logits[:, -1]
        torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=1e-5, msg=f"step {step}")
        token = out.logits.argmax(dim=-1, keepdim=True)


def test_prompt_longer_than_the_window_is_refused():
    model = _model(context=8)
    with pytest.raises(ValueError, match="longer than the context window"):
        CausalLMState(model, torch.ones(1, 9, dtype=torch.long))


def _sample(model: GPT, seed: int, **options) -> list[list[int]]:
    prompt = torch.full((4, 1), 5)
    config = SamplingConfig(max_new_tokens=15, **options)
    generator = torch.Generator().manual_seed(seed)
    return torch.stack(list(generate_tokens(model, prompt, config=config, generator=generator)), 1).tolist()


def test_sampling_with_a_seed_is_reproducible_and_seeds_differ():
    model = _model()
    assert _sample(model, 7, temperature=1.0, top_p=0.95) == _sample(model, 7, temperature=1.0, top_p=0.95)
    assert _sample(model, 7, temperature=1.0) != _sample(model, 8, temperature=1.0)


def test_top_k_one_is_greedy():
    model = _model()
    assert _sample(model, 3, temperature=0.7, top_k=1) == _sample(model, 4, temperature=0.0)


def test_repetition_penalty_formula():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0]]
    assert apply_repetition_penalty(logits, seen, 1.0) is logits


def test_a_huge_repetition_penalty_never_repeats_a_token():
    model = _model()
    tokens = _sample(model, 0, temperature=0.0, repetition_penalty=1e9)
    prompt_token = 5
    for row in tokens:
        assert len(set(row)) == len(row) and prompt_token not in row


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=1.5), "top_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
    ],
)
def test_sampling_config_rejects_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**options)
