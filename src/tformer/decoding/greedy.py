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
) -> list[Hypothesis]:
    """Extend each sentence by `choose` until EOS or `max_new_tokens`; finished rows leave the state's batch.

    `log_prob` is the model's own log-probability of the chosen tokens (log_softmax of the raw logits), whatever
    `choose` does to the logits and although EOS is masked out before `min_new_tokens`.
    """
    check_batch_size(batch_size)
    check_lengths(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
    tokens: list[list[int]] = [[] for _ in range(batch_size)]
    log_probs = [0.0] * batch_size
    sentence_of_row = list(range(batch_size))
    last = torch.full((batch_size, 1), bos_id, dtype=torch.long)  # Long[B, 1]
    for step in range(1, max_new_tokens + 1):
        out = state.step(last)
        check_step(out, rows=len(sentence_of_row), eos_id=eos_id)
        allowed = forbid_token(out.logits, eos_id) if step <= min_new_tokens else out.logits
        chosen = choose(allowed)  # Long[B]
        chosen_log_probs = out.logits.float().log_softmax(dim=-1).gather(1, chosen[:, None]).squeeze(1)  # [B]
        # One read from the device per step (on a GPU each read waits for it): the tokens and their
        # log-probabilities; which rows ended follows from the tokens. Ids are exact in float64.
        step_tokens, step_log_probs = torch.stack([chosen.double(), chosen_log_probs.double()]).tolist()
        running: list[int] = []  # rows that did not choose EOS
        for row, (sentence, token, log_prob) in enumerate(
            zip(sentence_of_row, map(int, step_tokens), step_log_probs, strict=True)
        ):
            log_probs[sentence] += log_prob
            if token != eos_id:
                tokens[sentence].append(token)
                running.append(row)
        if step == max_new_tokens or not running:
            break
        if len(running) < len(sentence_of_row):
            keep = torch.tensor(running, device=chosen.device)  # Long[B']
            state.select(keep)
            sentence_of_row = [sentence_of_row[row] for row in running]
            chosen = chosen.index_select(0, keep)
        last = chosen.unsqueeze(1)  # Long[B', 1]
    return [
        Hypothesis(tokens=tokens[i], score=log_probs[i], log_prob=log_probs[i]) for i in range(batch_size)
    ]
