"""The decoder-only Transformer language model (GPT-2, Radford et al., 2019), in nanoGPT's layout.

Shape legend: B batch, T length (new positions when a cache is given), L cached length, D model width,
V vocabulary.

    ids --Embedding (unscaled) + positions--> dropout --> Encoder(N x pre-norm [causal self-attn, FFN])
        --> final LayerNorm --> Linear(D, V) (the token embedding, tied) --> logits
                            (or an adaptive softmax's log-probabilities, for large word vocabularies)

A GPT block is an encoder block under a causal mask, so the stack is `nn.stacks.Encoder` called with
causal=True. Generation passes a KV cache and feeds one new token per step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from tformer.checks import check_fraction, check_positive_ints
from tformer.models.outputs import LMOutput
from tformer.nn.attention import AttentionConfig, FullAttention, check_heads
from tformer.nn.blocks import BlockConfig, NormPosition
from tformer.nn.dropout import Dropout
from tformer.nn.feedforward import FeedForwardKind
from tformer.nn.heads import apply_lm_head, check_adaptive_softmax, language_model_head
from tformer.nn.kv_cache import KVCache
from tformer.nn.positional import PositionalKind, make_positions, make_rotary
from tformer.nn.stacks import Encoder


@dataclass(frozen=True)
class GPTConfig:
    type: Literal["gpt"] = "gpt"  # a run config's `model.type` picks the model family
    vocab_size: int = 50257
    context_length: int = 1024  # positions the model can see: the learned table's size, an error beyond it
    d_model: int = 768
    n_heads: int = 12
    n_kv_heads: int | None = None
    n_layers: int = 12
    d_ff: int = 3072
    dropout: float = 0.0  # on the embeddings and every residual branch
    attention_dropout: float = 0.0
    attention: AttentionConfig = FullAttention()  # the self-attention kernel, by its `type` (nn/attention.py)
    feedforward: FeedForwardKind = FeedForwardKind.GELU_TANH
    positional: PositionalKind = PositionalKind.LEARNED
    tie_embeddings: bool = True  # the output layer reuses the token embedding (GPT-2 does)
    bias: bool = True  # biases in the Linear and LayerNorm layers (GPT-2: True; nanoGPT's option: False)
    # () = one softmax over the vocabulary; e.g. (2000, 10000) = an adaptive softmax with those frequency bands
    # (nn.heads.AdaptiveSoftmaxHead), for word vocabularies whose output layer dominates a step on a CPU
    adaptive_softmax_cutoffs: tuple[int, ...] = ()
    adaptive_softmax_div: float = 4.0  # each tail band's projection is this many times narrower than the last

    def __post_init__(self) -> None:
        check_positive_ints(self, "vocab_size", "context_length", "d_model", "n_heads", "n_layers", "d_ff")
        check_heads(self.d_model, self.n_heads, self.n_kv_heads)
        check_fraction("dropout", self.dropout)
        check_fraction("attention_dropout", self.attention_dropout)
        if self.adaptive_softmax_cutoffs:  # checked against vocab_size when the model is built: a preset's
            # config holds a placeholder vocabulary until the task fills in its tokenizer's
            check_adaptive_softmax(
                self.adaptive_softmax_cutoffs,
                self.adaptive_softmax_div,
                d_model=self.d_model,
                tie_embeddings=self.tie_embeddings,
            )

    @property
    def block(self) -> BlockConfig:
        return dataclasses.replace(
            BlockConfig.of(self),
            activation_dropout=0.0,  # GPT-2 (and nanoGPT) drop out the MLP's output only, not its hidden layer
            norm_position=NormPosition.PRE,  # GPT-2 moved LayerNorm to the sub-layer inputs
        )


PRESETS: dict[str, dict] = {
    # For tests and CPU smoke runs.
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, context_length=64),
    # nanoGPT's config/train_shakespeare_char.py (a character-level model that trains in minutes on one GPU),
    # with its dropout and its bias-free layers.
    "small": dict(d_model=384, n_layers=6, n_heads=6, d_ff=1536, context_length=256, dropout=0.2, bias=False),
    # GPT-2 small, 124M parameters: the defaults.
    "gpt2": dict(),
}


def preset_config(name: str, overrides: dict | None = None) -> GPTConfig:
    """A preset with some fields replaced, e.g. preset_config("tiny", {"vocab_size": 65})."""
    if name not in PRESETS:
        raise ValueError(f"unknown gpt preset {name!r} (valid: {', '.join(PRESETS)})")
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise ValueError(
            f"unknown GPTConfig field(s) {', '.join(unknown)} (valid: {', '.join(sorted(fields))})"
        )
    return GPTConfig(**{**PRESETS[name], **(overrides or {})})


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.d_model)  # not scaled by sqrt(D): GPT-2 does not
        self.positions = make_positions(c.positional, c.d_model, max_len=c.context_length)
        self.dropout = Dropout(c.dropout)
        rotary = make_rotary(c.positional, c.d_model // c.n_heads)
        self.blocks = Encoder(c.block, c.n_layers, rotary=rotary)  # pre-norm: ends in the final LayerNorm
        self.lm_head = language_model_head(
            c.d_model,
            c.vocab_size,
            bias=False,
            cutoffs=c.adaptive_softmax_cutoffs,
            div_value=c.adaptive_softmax_div,
        )
        self._init_weights()
        if c.tie_embeddings:  # one matrix maps ids to vectors and back; saves V x D parameters
            self.lm_head.weight = self.token_embedding.weight

    def _init_weights(self) -> None:
        # GPT-2's init: every weight N(0, 0.02) and biases 0 (LayerNorms keep their ones and zeros) ...
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        # ... except the projections that write into the residual stream: 2 per layer add up along the depth,
        # so each is scaled by 1/sqrt(2 N) to keep the stream's variance independent of N.
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks.layers:
            for proj in (block.self_attn.out_proj, block.feedforward.linear2):
                nn.init.normal_(proj.weight, mean=0.0, std=residual_std)

    def forward(
        self,
        input_ids: Tensor,
        *,
        cache: KVCache | None = None,
        last_only: bool = False,
        targets: Tensor | None = None,
    ) -> LMOutput:
        """input_ids Long[B, T] -> logits [B, T, V] ([B, 1, V] with last_only, for generation).

        With a cache, input_ids are only the new tokens: their positions continue from cache.length, and the
        cache (returned in the output) grows by T. With targets Long[B, T] (negative = not scored) and an
        adaptive-softmax head, the output holds log p(target) [B, T] instead of logits (nn.heads.apply_lm_head).
        """
        x = self.hidden_states(input_ids, cache=cache)
        if last_only:  # generation reads one row: skip the V x D matmul for all the others
            x = x[:, -1:]  # [B, T, D] -> [B, 1, D]
        logits, target_log_probs = apply_lm_head(self.lm_head, x, targets)
        return LMOutput(logits=logits, cache=cache, target_log_probs=target_log_probs)

    def hidden_states(self, input_ids: Tensor, *, cache: KVCache | None = None) -> Tensor:
        """input_ids Long[B, T] -> [B, T, D]: the final LayerNorm's output, which lm_head turns into logits
        (the contextual vectors of the tokens). A cache works as in forward."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be Long[B, T], got shape {tuple(input_ids.shape)}")
        offset = 0 if cache is None else cache.length
        end = offset + input_ids.shape[1]
        if end > self.config.context_length:
            raise ValueError(
                f"{offset} cached + {input_ids.shape[1]} new tokens = {end} positions exceed "
                f"context_length={self.config.context_length}; crop the input to the last "
                f"{self.config.context_length} tokens"
            )
        x = self.token_embedding(input_ids)  # [B, T] -> [B, T, D]
        x = self.positions(x, offset=offset)
        return self.blocks(self.dropout(x), causal=True, cache=cache)

    def new_cache(self, *, max_length: int | None = None) -> KVCache:
        return KVCache(self.config.n_layers, max_length=max_length)


def example_inputs(config: GPTConfig, *, batch_size: int = 1, length: int = 32) -> dict[str, Tensor]:
    """A batch of random token ids, for summaries and FLOP counts."""
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, config.vocab_size, (batch_size, length), generator=g)}
