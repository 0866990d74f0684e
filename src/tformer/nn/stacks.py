"""Encoder and Decoder stacks: N identical blocks, a final LayerNorm for pre-norm, and cache threading.

Shape legend: B batch, S source length, T target length, D model width, H heads.

Post-norm blocks already end in a LayerNorm, so (as in the paper) the stack adds none; pre-norm blocks leave the
residual stream un-normalised, so the stack ends with one.
"""

from __future__ import annotations

from torch import Tensor, nn

from tformer.checks import check_positive_int
from tformer.nn.blocks import BlockConfig, DecoderBlock, EncoderBlock, NormPosition
from tformer.nn.kv_cache import KVCache
from tformer.nn.positional import RotaryEmbedding


def _final_norm(config: BlockConfig) -> nn.Module:
    if config.norm_position is NormPosition.PRE:
        return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
    return nn.Identity()


def _check_cache(cache: KVCache | None, layers: nn.ModuleList, stack: str) -> None:
    if cache is not None and len(cache) != len(layers):
        raise ValueError(f"cache has {len(cache)} layers, the {stack} {len(layers)}")


class Encoder(nn.Module):
    """N self-attention blocks.

    The decoder-only model (GPT) is this stack called with causal=True: a GPT block is an encoder block under a
    causal mask, and a KV cache makes generation one position per step.
    """

    def __init__(self, config: BlockConfig, n_layers: int, *, rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        check_positive_int("n_layers", n_layers)
        self.layers = nn.ModuleList(EncoderBlock(config, rotary=rotary) for _ in range(n_layers))
        self.norm = _final_norm(config)

    def forward(
        self, x: Tensor, *, mask: Tensor | None = None, causal: bool = False, cache: KVCache | None = None
    ) -> Tensor:
        """x [B, S, D] -> [B, S, D]; mask Bool broadcastable to [B, H, S, S]; with a cache, x is the new
        positions only."""
        _check_cache(cache, self.layers, "encoder")
        for i, layer in enumerate(self.layers):
            x = layer(x, mask=mask, causal=causal, cache=None if cache is None else cache[i])
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, config: BlockConfig, n_layers: int, *, rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        check_positive_int("n_layers", n_layers)
        self.layers = nn.ModuleList(DecoderBlock(config, rotary=rotary) for _ in range(n_layers))
        self.norm = _final_norm(config)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """x [B, T, D], memory [B, S, D] -> x [B, T, D]."""
        _check_cache(cache, self.layers, "decoder")
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                self_mask=self_mask,
                memory_mask=memory_mask,
                cache=None if cache is None else cache[i],
            )
        return self.norm(x)
