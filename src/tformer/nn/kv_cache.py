"""Key/value cache for incremental decoding.

Shape legend: B batch (rows, beams included), H key/value heads, L cached length, K head width.

The cache is an object the caller owns and passes into the decoder, which returns it: modules never keep
decoding state, so one model can decode many batches at once and a beam reorder is one call here.

Each decoder layer has a `LayerKV` slot holding
- self-attention keys/values, which grow by the new positions at every step, and
- cross-attention keys/values, projected from the encoder memory once and reused at every step.

With `max_length` the self-attention buffers are allocated once at full size and filled in place (a static
shape, friendlier to CUDA graphs and the allocator); without it they grow by concatenation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.checks import check_positive_int


class LayerKV:
    """Cached keys/values of one decoder layer."""

    def __init__(self, *, max_length: int | None = None) -> None:
        self.max_length = max_length
        self.length = 0
        self._k: Tensor | None = None  # [B, H, L or max_length, K]
        self._v: Tensor | None = None
        self.cross_k: Tensor | None = None  # [B, H, S, K]
        self.cross_v: Tensor | None = None

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the keys/values of new positions ([B, H, T, K]); return all cached ones ([B, H, L + T, K])."""
        new_len = self.length + k.shape[2]
        if self.max_length is None:
            self._k = k if self._k is None else torch.cat([self._k, k], dim=2)
            self._v = v if self._v is None else torch.cat([self._v, v], dim=2)
        else:
            if new_len > self.max_length:
                raise ValueError(
                    f"KV cache is full: {new_len} positions requested, max_length={self.max_length}"
                )
            if self._k is None:
                b, h, _, d = k.shape
                self._k = k.new_zeros(b, h, self.max_length, d)
                self._v = v.new_zeros(b, h, self.max_length, d)
            self._k[:, :, self.length : new_len] = k
            self._v[:, :, self.length : new_len] = v
        self.length = new_len
        return self._k[:, :, :new_len], self._v[:, :, :new_len]

    def gather_self(self, indices: Tensor) -> None:
        if self._k is not None:
            self._k = self._k.index_select(0, indices)
            self._v = self._v.index_select(0, indices)

    def gather_cross(self, indices: Tensor) -> None:
        if self.cross_k is not None:
            self.cross_k = self.cross_k.index_select(0, indices)
            self.cross_v = self.cross_v.index_select(0, indices)

    def crop(self, length: int) -> None:
        if self._k is not None and self.max_length is None:
            self._k = self._k[:, :, :length]
            self._v = self._v[:, :, :length]
        self.length = length  # a static buffer keeps its size; positions past `length` are simply stale


class KVCache:
    """The decoder's cache: one `LayerKV` per layer plus the operations a search algorithm needs."""

    def __init__(self, n_layers: int, *, max_length: int | None = None) -> None:
        check_positive_int("n_layers", n_layers)
        check_positive_int("max_length", max_length, optional=True)
        self.layers = [LayerKV(max_length=max_length) for _ in range(n_layers)]

    def __getitem__(self, layer: int) -> LayerKV:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def length(self) -> int:
        """Number of target positions cached (the position of the next token)."""
        return self.layers[0].length

    def reorder(self, beam_indices: Tensor) -> None:
        """Beam reorder: row i of the self-attention cache becomes old row `beam_indices[i]`.

        Cross-attention keys/values are left alone: the beams of one sentence share the same memory, and beam
        indices never leave their sentence, so those rows are already right.
        """
        for layer in self.layers:
            layer.gather_self(beam_indices)

    def select(self, batch_indices: Tensor) -> None:
        """Gather rows of everything (expand a batch to beams, or drop finished sentences)."""
        for layer in self.layers:
            layer.gather_self(batch_indices)
            layer.gather_cross(batch_indices)

    def crop(self, length: int) -> None:
        """Forget positions from `length` on (e.g. to roll back speculative tokens)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"crop length must be in [0, {self.length}], got {length}")
        for layer in self.layers:
            layer.crop(length)
