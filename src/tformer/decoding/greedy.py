"""Greedy search, and the one-path-per-sentence loop that greedy search and sampling share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tformer.decoding.state import (
    DecoderState,
    Hypothesis,
    check_batch_size,
    check_lengths,
    check_step,
    forbid_token,
)

# Picks one token per row from Float[B, V] logits (EOS already at -inf where forbidden) -> Long[B].
TokenChooser = Callable[[Tensor], Tensor]


@torch.no_grad()
def greedy_search(
    state: DecoderState,
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """Take the most likely token at every step. One hypothesis per sentence, in input order; score = log_prob."""
    return decode_single_path(
        state,
        choose=lambda logits: logits.argmax(dim=-1),
        batch_size=batch_size,
        bos_id=bos_id,
        eos_id=eos_id,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        return_attention=return_attention,
    )


def decode_single_path(
    state: DecoderState,
    *,
    choose: TokenChooser,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    max_new_tokens: int,
    min_new_tokens: int,
    return_attention: bool,
) -> list[Hypothesis]:
    """Extend each sentence by `choose` until EOS or `max_new_tokens`; finished rows leave the state's batch.

    `log_prob` is the model's own log-probability of the chosen tokens (log_softmax of the raw logits), whatever
    `choose` does to the logits and although EOS is masked out before `min_new_tokens`.
    """
    check_batch_size(batch_size)
    check_lengths(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    log_probs = [0.0] * batch_size
    attention: list[list[Tensor]] = [[] for _ in range(batch_size)]
    sentence_of_row = list(range(batch_size))
    last = torch.full((batch_size, 1), bos_id, dtype=torch.long)  # Long[B, 1]
    for step in range(1, max_new_tokens + 1):
        out = state.step(last)
        check_step(out, rows=len(sentence_of_row), eos_id=eos_id, need_attention=return_attention)
        allowed = forbid_token(out.logits, eos_id) if step <= min_new_tokens else out.logits
        chosen = choose(allowed)  # Long[B]
        chosen_log_probs = out.logits.float().log_softmax(dim=-1).gather(1, chosen[:, None]).squeeze(1)  # [B]
        is_eos = chosen == eos_id
        for row, (sentence, token, log_prob, ended) in enumerate(
            zip(sentence_of_row, chosen.tolist(), chosen_log_probs.tolist(), is_eos.tolist(), strict=True)
        ):
            log_probs[sentence] += log_prob
            if not ended:
                tokens[sentence].append(token)
            if return_attention:
                attention[sentence].append(out.attention[row])
        keep = (~is_eos).nonzero().squeeze(1)  # Long[B']: rows still running
        if step == max_new_tokens or keep.numel() == 0:
            break
        if keep.numel() < len(sentence_of_row):
            state.select(keep)
            sentence_of_row = [sentence_of_row[row] for row in keep.tolist()]
        last = chosen[keep].unsqueeze(1)  # Long[B', 1]
    return [
        Hypothesis(
            tokens=tokens[i],
            score=log_probs[i],
            log_prob=log_probs[i],
            attention=torch.stack(attention[i]) if return_attention else None,  # Float[len, S]
        )
        for i in range(batch_size)
    ]
