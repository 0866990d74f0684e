"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

Shape legend: B batch, S source length, T target length, D model width, H heads, V vocabulary.

    src ids --TokenEmbedding*sqrt(D) + positions--> Encoder (N x [self-attn, FFN]) --> memory
    tgt ids --TokenEmbedding*sqrt(D) + positions--> Decoder (N x [causal self-attn, cross-attn(memory), FFN])
            --> Linear(D, V) --> logits

`encode` runs once per sentence; `decode` runs once for teacher forcing or once per step with a KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from tformer.checks import check_fraction, check_positive_ints
from tformer.models.outputs import DecoderOutput, EncoderOutput, Seq2SeqOutput, select_positions
from tformer.nn.attention import AttentionConfig, FullAttention, check_heads
from tformer.nn.blocks import BlockConfig, NormPosition
from tformer.nn.dropout import Dropout
from tformer.nn.embeddings import TokenEmbedding
from tformer.nn.feedforward import FeedForwardKind
from tformer.nn.kv_cache import KVCache
from tformer.nn.masks import key_mask, padding_mask
from tformer.nn.positional import PositionalKind, make_positions, make_rotary
from tformer.nn.stacks import Decoder, Encoder


@dataclass(frozen=True)
class Seq2SeqConfig:
    type: Literal["transformer"] = "transformer"  # a run config's `model.type` picks the model family
    src_vocab_size: int = 37000
    tgt_vocab_size: int = 37000
    d_model: int = 512
    n_heads: int = 8
    n_kv_heads: int | None = None
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.0
    attention: AttentionConfig = FullAttention()  # the self-attention kernel, by its `type` (nn/attention.py)
    feedforward: FeedForwardKind = FeedForwardKind.RELU
    norm_position: NormPosition = NormPosition.POST
    positional: PositionalKind = PositionalKind.SINUSOIDAL
    max_len: int = 1024
    share_embeddings: bool = False  # one embedding for source and target (needs a joint vocabulary)
    tie_output: bool = True  # the output projection reuses the target embedding (section 3.4)
    pad_id: int = 0

    def __post_init__(self) -> None:
        check_positive_ints(
            self,
            "src_vocab_size",
            "tgt_vocab_size",
            "d_model",
            "n_heads",
            "n_encoder_layers",
            "n_decoder_layers",
            "d_ff",
            "max_len",
        )
        check_heads(self.d_model, self.n_heads, self.n_kv_heads)
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        if not 0 <= self.pad_id < vocab:
            raise ValueError(f"pad_id={self.pad_id} must be a token id in [0, {vocab})")
        check_fraction("dropout", self.dropout)
        check_fraction("attention_dropout", self.attention_dropout)
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one joint vocabulary, got "
                f"src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size}"
            )

    @property
    def block(self) -> BlockConfig:
        return BlockConfig.of(self)


PRESETS: dict[str, dict] = {
    # The paper's base model (Table 3): N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1, one shared source/target
    # vocabulary whose embedding is also the output projection (section 3.4).
    "base": dict(share_embeddings=True),
    # A small model for data sets of tens of thousands of sentence pairs (Multi30k-sized).
    "small": dict(d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=3, n_decoder_layers=3, dropout=0.1),
    # For tests and the CPU demo.
    "tiny": dict(
        d_model=64, n_heads=4, d_ff=128, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_len=128
    ),
}


def preset_config(name: str, **overrides) -> Seq2SeqConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown seq2seq preset {name!r} (valid: {', '.join(PRESETS)})")
    return Seq2SeqConfig(**{**PRESETS[name], **overrides})


class Seq2SeqTransformer(nn.Module):
    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = (
            self.src_embed
            if c.share_embeddings
            else TokenEmbedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        )
        rotary = make_rotary(c.positional, c.d_model // c.n_heads)
        self.src_positions = make_positions(c.positional, c.d_model, max_len=c.max_len)
        self.tgt_positions = make_positions(c.positional, c.d_model, max_len=c.max_len)
        self.dropout = Dropout(c.dropout)  # on embeddings + positions, section 5.4
        self.encoder = Encoder(c.block, c.n_encoder_layers, rotary=rotary)
        self.decoder = Decoder(c.block, c.n_decoder_layers, rotary=rotary)
        self.output_projection = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self._init_weights()
        if c.tie_output:
            self.output_projection.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        # Xavier-uniform for every projection, as the reference implementations of the paper do: it keeps the
        # variance of activations and gradients roughly constant through the stacks.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Embeddings ~ N(0, d_model^-0.5): after the sqrt(d_model) scale the inputs have unit variance, and a
        # tied output projection starts with logits of unit scale.
        for embed in dict.fromkeys((self.src_embed, self.tgt_embed)):  # fixed order; a shared table once
            nn.init.normal_(embed.weight, mean=0.0, std=self.config.d_model**-0.5)
            with torch.no_grad():
                embed.weight[self.config.pad_id].zero_()

    def _embed(self, ids: Tensor, embed: TokenEmbedding, positions: nn.Module, offset: int = 0) -> Tensor:
        return self.dropout(positions(embed(ids), offset=offset))  # [B, L] -> [B, L, D]

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> EncoderOutput:
        """src_ids Long[B, S], src_mask Bool[B, S] (True = token; default: ids != pad_id)."""
        if src_mask is None:
            src_mask = padding_mask(src_ids, self.config.pad_id)
        x = self._embed(src_ids, self.src_embed, self.src_positions)
        return EncoderOutput(memory=self.encoder(x, mask=key_mask(src_mask)), memory_mask=src_mask)

    def decode(
        self,
        tgt_ids: Tensor,
        *,
        memory: Tensor,
        memory_mask: Tensor,
        cache: KVCache | None = None,
    ) -> DecoderOutput:
        """tgt_ids Long[B, T] (only the new tokens when a cache is given); memory [B, S, D].

        Target padding needs no mask: batches are right-padded, so the causal mask already keeps every real
        position away from the padding after it, and the loss ignores padded positions.
        """
        x = self._decoder_states(tgt_ids, memory=memory, memory_mask=memory_mask, cache=cache)
        return DecoderOutput(logits=self.output_projection(x), cache=cache)

    def _decoder_states(
        self,
        tgt_ids: Tensor,
        *,
        memory: Tensor,
        memory_mask: Tensor,
        cache: KVCache | None,
    ) -> Tensor:
        """The decoder's final states [B, T, D], before the output projection."""
        offset = 0 if cache is None else cache.length
        x = self._embed(tgt_ids, self.tgt_embed, self.tgt_positions, offset)
        return self.decoder(x, memory, memory_mask=key_mask(memory_mask), cache=cache)

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        *,
        src_mask: Tensor | None = None,
        tgt_positions: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Teacher forcing: logits [B, T, V] for every target position at once.

        With tgt_positions Long[N] (flat row-major indices into the B*T target positions, the batch's field of
        that name) the logits are [N, V], one row per listed position: the output projection skips padding.
        Attention weights are not returned: viz.capture collects any layer's by hooks.
        """
        enc = self.encode(src_ids, src_mask)
        x = self._decoder_states(tgt_ids, memory=enc.memory, memory_mask=enc.memory_mask, cache=None)
        if tgt_positions is not None:
            x = select_positions(x, tgt_positions)  # [B, T, D] -> [N, D]
        return Seq2SeqOutput(logits=self.output_projection(x), encoder=enc)

    def new_cache(self, *, max_length: int | None = None) -> KVCache:
        return KVCache(self.config.n_decoder_layers, max_length=max_length)


def example_inputs(config: Seq2SeqConfig, *, batch_size: int = 1, length: int = 32) -> dict[str, Tensor]:
    """A batch of random token ids, none of them padding, for summaries and FLOP counts."""
    g = torch.Generator().manual_seed(0)

    def ids(vocab_size: int) -> Tensor:
        drawn = torch.randint(0, vocab_size - 1, (batch_size, length), generator=g)  # one id fewer ...
        return drawn + (drawn >= config.pad_id).long()  # ... and skip pad_id, wherever it sits

    return {"src_ids": ids(config.src_vocab_size), "tgt_ids": ids(config.tgt_vocab_size)}
