"""Text in, text out: prompt a trained language model, stream the continuation, stop at stop strings.

Text is released to the stream only when it is final: a tail that could still grow into a stop string, or a
byte-level tail that is not yet a whole UTF-8 character, is held back until the next tokens decide it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tformer.checks import check_positive_int
from tformer.decoding.causal_lm import SamplingConfig, generate_tokens
from tformer.nn.modes import eval_mode
from tformer.tasks.language_model import TextCodec

log = logging.getLogger(__name__)
_INCOMPLETE = "\ufffd"  # what a decoder shows for a byte sequence cut inside a character


@dataclass
class Generation:
    text: str  # the continuation, without the prompt, cut before the first stop string
    tokens: list[int]  # every generated token, including those of the stop string
    stop: str | None  # the stop string that ended it; None when max_new_tokens ran out


class _Continuation:
    """One row's growing text: what is final, what is held back, and whether a stop string ended it."""

    def __init__(self, codec: TextCodec, stops: Sequence[str]) -> None:
        self.codec, self.stops = codec, stops
        self.tokens: list[int] = []
        self.released = 0  # characters of the text already handed to the stream
        self.final_text: str | None = None
        self.stop: str | None = None

    @property
    def done(self) -> bool:
        return self.final_text is not None

    def add(self, token: int) -> str:
        """Append a token; return the newly final text (possibly empty)."""
        self.tokens.append(token)
        text = self.codec.decode(self.tokens)
        hits = [(text.find(s), s) for s in self.stops if s in text]
        if hits:
            cut, self.stop = min(hits)
            self.final_text = text[:cut]
            return self._release(self.final_text, len(self.final_text))
        return self._release(text, len(text) - self._held_back(text))

    def finish(self) -> str:
        """Out of tokens: everything decoded so far is final."""
        if self.final_text is None:
            self.final_text = self.codec.decode(self.tokens)
        return self._release(self.final_text, len(self.final_text))

    def _release(self, text: str, end: int) -> str:
        out = text[self.released : end] if end > self.released else ""
        self.released = max(self.released, end)
        return out

    def _held_back(self, text: str) -> int:
        """Length of the tail that is not final yet."""
        held = len(text) - len(text.rstrip(_INCOMPLETE))
        for stop in self.stops:  # the longest tail that is a proper prefix of a stop string
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    held = max(held, k)
                    break
        return held


def check_stop_strings(stop: Sequence[str]) -> None:
    if any(s == "" for s in stop):
        raise ValueError("stop strings must not be empty")


def generate_text(
    model: nn.Module,
    codec: TextCodec,
    prompt: str,
    *,
    config: SamplingConfig,
    n_samples: int = 1,
    seed: int | None = None,
    stop: Sequence[str] = (),
    on_text: Callable[[str], None] | None = None,
) -> list[Generation]:
    """Continue `prompt` `n_samples` times. `on_text` receives the first sample's text as it becomes final.

    A prompt longer than the model's context window keeps its last tokens (with a warning). With a seed, the
    samples are reproducible on the same device and software.
    """
    check_positive_int("n_samples", n_samples)
    check_stop_strings(stop)
    device = next(model.parameters()).device
    ids = codec.start_ids(prompt)
    window = model.config.context_length
    if len(ids) > window:
        log.warning("prompt of %d tokens exceeds the context window: keeping its last %d", len(ids), window)
        ids = ids[-window:]
    prompt_ids = torch.tensor([ids] * n_samples, dtype=torch.long, device=device)  # Long[N, P]
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # a fresh random seed
    else:
        generator.manual_seed(seed)
    rows = [_Continuation(codec, stop) for _ in range(n_samples)]
    with eval_mode(model):
        for chosen in generate_tokens(model, prompt_ids, config=config, generator=generator):
            for row, token in zip(rows, chosen.tolist(), strict=True):
                if not row.done:
                    text = row.add(token)
                    if on_text is not None and row is rows[0] and text:
                        on_text(text)
            if all(row.done for row in rows):
                break
    tail = rows[0].finish()
    if on_text is not None and tail:
        on_text(tail)
    for row in rows[1:]:
        row.finish()
    return [Generation(text=row.final_text or "", tokens=row.tokens, stop=row.stop) for row in rows]
