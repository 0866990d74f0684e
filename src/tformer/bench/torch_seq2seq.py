"""The encoder-decoder peer built from stock PyTorch, proven to compute the same function as tformer's model.

Shape legend: B batch, S source length, T target length, D model width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from tformer.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from tformer.nn.masks import causal_mask
from tformer.nn.positional import sinusoidal_table

# float32 logits of two implementations of the same function differ by rounding only.
LOGIT_TOLERANCE = 1e-4
# Real sentences in a batch have different lengths: each row keeps between this fraction and all of the
# padded length, so about (1 - MIN_KEEP) / 2 = 10% of the positions are padding.
MIN_KEEP = 0.8


class TorchSeq2Seq(nn.Module):
    """The baseline: stock nn.Transformer with the paper's embeddings, sinusoidal positions and tied output.

    nn.Transformer always ends its encoder and decoder stacks with a LayerNorm, even in post-norm mode where
    every block already ends in one; tformer's post-norm stacks, like the paper, do not. That is the only
    architectural difference: 2 x 2 x d_model parameters and two cheap LayerNorms per step.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = config
        self.d_model = c.d_model
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = (
            self.src_embed
            if c.share_embeddings
            else nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        )
        self.register_buffer("positions", sinusoidal_table(c.max_len, c.d_model), persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.transformer = nn.Transformer(
            d_model=c.d_model,
            nhead=c.n_heads,
            num_encoder_layers=c.n_encoder_layers,
            num_decoder_layers=c.n_decoder_layers,
            dim_feedforward=c.d_ff,
            dropout=c.dropout,
            batch_first=True,
        )
        self.output_projection = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self.output_projection.weight = self.tgt_embed.weight

    def _embed(self, ids: Tensor, embed: nn.Embedding) -> Tensor:
        x = embed(ids) * math.sqrt(self.d_model)  # [B, L] -> [B, L, D]
        return self.dropout(x + self.positions[: ids.shape[1]])

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, *, src_mask: Tensor) -> Tensor:
        """src_ids [B, S], tgt_ids [B, T], src_mask Bool[B, S] (True = token) -> logits [B, T, V].

        The same masks as tformer: source padding in encoder self-attention and cross-attention, causal in
        decoder self-attention, no target padding mask (right padding is already behind the causal mask).
        nn.Transformer's masks use the opposite polarity (True = ignore), hence the `~`.
        """
        t = tgt_ids.shape[1]
        x = self.transformer(
            self._embed(src_ids, self.src_embed),
            self._embed(tgt_ids, self.tgt_embed),
            tgt_mask=~causal_mask(t, device=tgt_ids.device),
            src_key_padding_mask=~src_mask,
            memory_key_padding_mask=~src_mask,
            tgt_is_causal=True,
        )
        return self.output_projection(x)


def torch_state_from_tformer(model: Seq2SeqTransformer) -> dict[str, Tensor]:
    """tformer's weights under TorchSeq2Seq's parameter names (final LayerNorms excluded, see TorchSeq2Seq).

    Both fuse Q, K and V of self-attention into one [3D, D] projection in the same order; tformer's
    cross-attention keeps Q apart from the fused K/V, so the two are concatenated.
    """
    state = {
        "src_embed.weight": model.src_embed.weight,
        "tgt_embed.weight": model.tgt_embed.weight,  # the same tensor as src_embed's when shared
        "output_projection.weight": model.output_projection.weight,  # tied: the target embedding in both
    }

    def copy(prefix: str, module: nn.Module) -> None:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = module.weight, module.bias

    def copy_self_attention(prefix: str, attn: nn.Module) -> None:
        state[f"{prefix}.in_proj_weight"], state[f"{prefix}.in_proj_bias"] = (
            attn.qkv_proj.weight,
            attn.qkv_proj.bias,
        )
        copy(f"{prefix}.out_proj", attn.out_proj)

    for i, block in enumerate(model.encoder.layers):
        p = f"transformer.encoder.layers.{i}"
        copy_self_attention(f"{p}.self_attn", block.self_attn)
        copy(f"{p}.linear1", block.feedforward.linear1)
        copy(f"{p}.linear2", block.feedforward.linear2)
        copy(f"{p}.norm1", block.attn_residual.norm)
        copy(f"{p}.norm2", block.ff_residual.norm)
    for i, block in enumerate(model.decoder.layers):
        p = f"transformer.decoder.layers.{i}"
        copy_self_attention(f"{p}.self_attn", block.self_attn)
        cross = block.cross_attn
        state[f"{p}.multihead_attn.in_proj_weight"] = torch.cat([cross.q_proj.weight, cross.kv_proj.weight])
        state[f"{p}.multihead_attn.in_proj_bias"] = torch.cat([cross.q_proj.bias, cross.kv_proj.bias])
        copy(f"{p}.multihead_attn.out_proj", cross.out_proj)
        copy(f"{p}.linear1", block.feedforward.linear1)
        copy(f"{p}.linear2", block.feedforward.linear2)
        copy(f"{p}.norm1", block.self_residual.norm)
        copy(f"{p}.norm2", block.cross_residual.norm)
        copy(f"{p}.norm3", block.ff_residual.norm)
    return state


@dataclasses.dataclass(frozen=True)
class Batch:
    src_ids: Tensor  # Long[B, S], right-padded with pad_id
    src_mask: Tensor  # Bool[B, S], True = real token
    tgt_in: Tensor  # Long[B, T], decoder input (teacher forcing)
    labels: Tensor  # Long[B, T], next tokens; pad_id where padded (ignored by the loss)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in dataclasses.astuple(self)))


def _padded_ids(batch: int, length: int, vocab: int, pad_id: int, g: torch.Generator) -> Tensor:
    """Long[B, L] random real tokens (never pad_id), each row right-padded after a length in [MIN_KEEP * L, L]."""
    drawn = torch.randint(0, vocab - 1, (batch, length), generator=g)  # one id fewer ...
    ids = drawn + (drawn >= pad_id).long()  # ... and skip pad_id
    lengths = torch.randint(math.ceil(MIN_KEEP * length), length + 1, (batch,), generator=g)
    lengths[0] = length  # the longest sentence sets the padded length, as in a real batch
    return ids.masked_fill(torch.arange(length) >= lengths[:, None], pad_id)  # [B, L]


def make_batch(*, batch: int, src_len: int, tgt_len: int, vocab: int, seed: int, pad_id: int = 0) -> Batch:
    """A seeded batch of random sentence pairs with about 10% right padding on each side."""
    g = torch.Generator().manual_seed(seed)
    src = _padded_ids(batch, src_len, vocab, pad_id, g)
    tgt = _padded_ids(batch, tgt_len + 1, vocab, pad_id, g)  # [B, T + 1]: shifted into input and labels
    return Batch(src_ids=src, src_mask=src != pad_id, tgt_in=tgt[:, :-1], labels=tgt[:, 1:])


def check_same_function(config: Seq2SeqConfig, batch: Batch, *, seed: int) -> float:
    """Max |logit difference| between tformer and a TorchSeq2Seq holding its weights, dropout off (CPU, fp32).

    Raises RuntimeError beyond LOGIT_TOLERANCE: a benchmark would then compare different models.
    """
    torch.manual_seed(seed)
    ours = Seq2SeqTransformer(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # Fresh LayerNorms (1, 0) and biases (0) all look alike, so a mixed-up mapping would go unnoticed.
        for p in ours.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    theirs = TorchSeq2Seq(config).eval()
    theirs.transformer.encoder.norm = None  # nn.TransformerEncoder/Decoder skip a final norm of None
    theirs.transformer.decoder.norm = None
    theirs.load_state_dict(torch_state_from_tformer(ours), strict=True)
    # Gradients stay enabled: under no_grad nn.Transformer switches to its inference fast path, and the check
    # is about the code that is timed.
    ours_logits = ours(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).logits.detach()
    theirs_logits = theirs(batch.src_ids, batch.tgt_in, src_mask=batch.src_mask).detach()
    diff = (ours_logits - theirs_logits).abs().max().item()
    if not diff <= LOGIT_TOLERANCE:
        raise RuntimeError(
            f"tformer and the torch baseline disagree (max |logit diff| {diff:.2e} > {LOGIT_TOLERANCE:.0e}): "
            "the benchmark would compare different models"
        )
    return diff
