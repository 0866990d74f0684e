"""Ancestral sampling with temperature, top-k and top-p (nucleus) filtering."""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.checks import check_positive_int
from tformer.decoding.greedy import decode_single_path
from tformer.decoding.state import DecoderState, Hypothesis


@torch.no_grad()
def sample(
    state: DecoderState,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> list[Hypothesis]:
    """Draw one continuation per sentence from softmax(filter(logits / temperature)).

    `log_prob` (and `score`) is the model's log-probability of the drawn tokens at temperature 1, unfiltered,
    so samples can be ranked against each other and against greedy or beam output. `generator` must live on
    the model's device.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    check_filters(top_k=top_k, top_p=top_p)

    def draw(logits: Tensor) -> Tensor:
        filtered = filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p)  # Float[B, V]
        return torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(1)  # Long[B]

    return decode_single_path(
        state,
        choose=draw,
        batch_size=batch_size,
        bos_id=bos_id,
        eos_id=eos_id,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
    )


def filter_logits(logits: Tensor, *, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf all Float[..., V] logits outside the top-k, then outside the top-p nucleus of what is left.

    Top-k keeps exactly k tokens (ties broken by `torch.topk`). Top-p keeps the smallest set of most likely
    tokens whose probability sums to at least `top_p`, and always at least the most likely token.
    """
    check_filters(top_k=top_k, top_p=top_p)
    if top_k is not None and top_k < logits.size(-1):
        kept = logits.topk(top_k, dim=-1).indices  # Long[..., k]
        logits = torch.full_like(logits, float("-inf")).scatter(-1, kept, logits.gather(-1, kept))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # both [..., V]
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of all more likely tokens
        drop_sorted = mass_before >= top_p  # the nucleus is already complete without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def apply_repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty (Keskar et al., 2019): make every token already seen less likely.

    logits Float[B, V], seen Bool[B, V]. A seen token's logit is divided by `penalty` when positive and multiplied
    by it when negative, so with penalty > 1 it always moves down; 1.0 changes nothing.
    """
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty!r}")
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def check_filters(*, top_k: int | None, top_p: float | None) -> None:
    check_positive_int("top_k", top_k, optional=True)
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
