"""Padding, masks, the teacher-forcing shift, and token-budget batching.

Shapes: B batch, S source length, T target length. Masks are bool, True = real token (may be attended).
"""

from __future__ import annotations

import numbers
import random
from dataclasses import dataclass, fields

import torch


@dataclass
class Seq2SeqBatch:
    """One padded encoder-decoder batch.

    src_ids Long[B,S] (source + EOS), src_mask Bool[B,S]; tgt_in Long[B,T] = BOS + target (decoder input),
    tgt_out Long[B,T] = target + EOS (what the decoder must predict), tgt_mask Bool[B,T] marks the real
    positions of both (they have the same length per row).

    tgt_positions Long[N] lists the same N real positions as flat row-major indices into the B*T positions
    (`tgt_mask.flatten().nonzero()`), so the model can compute its output layer at those rows only. It is
    derived here, on the host where batches are built, because N depends on the data: finding it on a GPU
    (nonzero, boolean indexing) would make the host wait for the device at every step, while index_select
    with these indices does not.
    """

    src_ids: torch.Tensor
    src_mask: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    tgt_mask: torch.Tensor
    tgt_positions: torch.Tensor | None = None  # derived from tgt_mask when not given; never None after init

    def __post_init__(self) -> None:
        for name, dtype in (("src_ids", torch.long), ("tgt_in", torch.long), ("tgt_out", torch.long)):
            _check_tensor(getattr(self, name), name=name, dtype=dtype)
        _check_tensor(self.src_mask, name="src_mask", dtype=torch.bool)
        _check_tensor(self.tgt_mask, name="tgt_mask", dtype=torch.bool)
        if self.src_mask.shape != self.src_ids.shape:
            raise ValueError(
                f"src_mask shape {tuple(self.src_mask.shape)} != src_ids {tuple(self.src_ids.shape)}"
            )
        for name in ("tgt_out", "tgt_mask"):
            shape = tuple(getattr(self, name).shape)
            if shape != tuple(self.tgt_in.shape):
                raise ValueError(f"{name} shape {shape} != tgt_in {tuple(self.tgt_in.shape)}")
        if self.tgt_in.shape[0] != self.src_ids.shape[0]:
            raise ValueError(f"batch sizes differ: src {self.src_ids.shape[0]} vs tgt {self.tgt_in.shape[0]}")
        if self.tgt_positions is None:
            self.tgt_positions = self.tgt_mask.flatten().nonzero().squeeze(1)  # [B*T] -> [N]
        _check_positions(self.tgt_positions, self.tgt_mask)

    def __len__(self) -> int:
        return self.src_ids.shape[0]

    @property
    def n_tgt_tokens(self) -> int:
        """Number of predicted (non-pad) target tokens, EOS included: the loss normaliser."""
        return int(self.tgt_mask.sum())

    def to(self, device: torch.device | str) -> Seq2SeqBatch:
        return Seq2SeqBatch(**{f.name: to_device(getattr(self, f.name), device) for f in fields(self)})


def pad_sequences(seqs: list[list[int]], *, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad `seqs` to the longest: (ids Long[B,L], mask Bool[B,L], True = real token)."""
    if len(seqs) == 0:
        raise ValueError("pad_sequences needs at least one sequence, got an empty list")
    max_len = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), max_len), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = True
    return ids, mask


def make_seq2seq_batch(
    src: list[list[int]], tgt: list[list[int]], *, pad_id: int, bos_id: int, eos_id: int
) -> Seq2SeqBatch:
    """Pad paired id lists into a batch: src + [EOS]; tgt_in = [BOS] + y; tgt_out = y + [EOS]."""
    if len(src) != len(tgt):
        raise ValueError(f"src and tgt must pair up, got {len(src)} sources and {len(tgt)} targets")
    src_ids, src_mask = pad_sequences([[*s, eos_id] for s in src], pad_id=pad_id)
    tgt_in, tgt_mask = pad_sequences([[bos_id, *y] for y in tgt], pad_id=pad_id)
    tgt_out, _ = pad_sequences([[*y, eos_id] for y in tgt], pad_id=pad_id)
    return Seq2SeqBatch(src_ids=src_ids, src_mask=src_mask, tgt_in=tgt_in, tgt_out=tgt_out, tgt_mask=tgt_mask)


def token_budget_batches(
    lengths: list[int],
    *,
    max_tokens: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    bucket_size_multiplier: int = 100,
) -> list[list[int]]:
    """Group example indices into batches whose padded size (n * longest) stays within `max_tokens`.

    fairseq "max tokens" batching: with `shuffle`, indices are shuffled, cut into buckets of about
    `bucket_size_multiplier` typical batches, sorted by length inside each bucket (so a batch holds similar
    lengths) and packed greedily; the finished batches are then shuffled. The order depends only on
    (seed, epoch), through a local RNG, so a resumed run replays the same epoch. Without `shuffle` the
    whole set is sorted by length (least padding; for evaluation) and seed/epoch are unused.

    `lengths[i]` is the size example i occupies, e.g. max(source, target) + 1 for a special token. A length
    of 0 is counted as 1 so every batch stays bounded. Every index appears in exactly one batch.
    """
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    if not isinstance(bucket_size_multiplier, int) or bucket_size_multiplier < 1:
        raise ValueError(f"bucket_size_multiplier must be a positive int, got {bucket_size_multiplier!r}")
    sizes = [max(1, _checked_length(length, index, max_tokens)) for index, length in enumerate(lengths)]
    if not sizes:
        return []
    if not shuffle:
        return _pack(sorted(range(len(sizes)), key=sizes.__getitem__), sizes, max_tokens)

    rng = random.Random(seed * 1000003 + epoch)
    order = list(range(len(sizes)))
    rng.shuffle(order)
    typical_batch = max(1, max_tokens * len(sizes) // sum(sizes))  # examples per batch at the mean length
    bucket_size = bucket_size_multiplier * typical_batch
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket_size):
        # sorted() is stable, so equal lengths keep their shuffled order.
        bucket = sorted(order[start : start + bucket_size], key=sizes.__getitem__)
        batches.extend(_pack(bucket, sizes, max_tokens))
    rng.shuffle(batches)
    return batches


def shard_batches(batches: list[list[int]], *, rank: int, world_size: int) -> list[list[int]]:
    """Batches for one rank of `world_size`: every world_size-th batch, starting at `rank`. The tail that
    cannot be shared evenly is dropped, so all ranks run the same number of steps (else DDP would hang)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if len(batches) < world_size:
        raise ValueError(
            f"{len(batches)} batches cannot give each of {world_size} ranks one; "
            "lower max_tokens or world_size"
        )
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


def _pack(sorted_indices: list[int], sizes: list[int], max_tokens: int) -> list[list[int]]:
    """Greedy packing of length-sorted (ascending) indices: the newest example is always the longest."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted_indices:
        if current and (len(current) + 1) * sizes[index] > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def _checked_length(length: object, index: int, max_tokens: int) -> int:
    # numbers.Integral also admits numpy integers, which length arrays often hold.
    if not isinstance(length, numbers.Integral) or isinstance(length, bool) or length < 0:
        raise ValueError(f"lengths[{index}] must be a non-negative int, got {length!r}")
    length = int(length)
    if length > max_tokens:
        raise ValueError(
            f"example {index} has length {length} > max_tokens={max_tokens}; "
            "raise max_tokens or filter it out"
        )
    return length


def _check_tensor(value: object, *, name: str, dtype: torch.dtype) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.dim() != 2:
        got = f"{value.dtype} tensor of dim {value.dim()}" if isinstance(value, torch.Tensor) else type(value)
        raise TypeError(f"{name} must be a 2-d {dtype} tensor [B, L], got {got}")


def _check_positions(positions: object, mask: torch.Tensor) -> None:
    # Only metadata is checked: comparing the values with the mask would read them back from a GPU.
    if not isinstance(positions, torch.Tensor) or positions.dtype != torch.long or positions.dim() != 1:
        got = (
            f"{positions.dtype} tensor of dim {positions.dim()}"
            if isinstance(positions, torch.Tensor)
            else type(positions)
        )
        raise TypeError(f"tgt_positions must be a 1-d torch.int64 tensor [N], got {got}")
    if positions.numel() > mask.numel() or positions.device != mask.device:
        raise ValueError(
            f"tgt_positions ({positions.numel()} indices on {positions.device}) must index the "
            f"{mask.numel()} target positions of tgt_mask (on {mask.device})"
        )


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device`; a copy from the CPU to a GPU does not make the host wait for the GPU.

    A plain `.to("cuda")` waits until the GPU has finished all queued work (then the GPU idles while the host
    prepares the next batch). A non_blocking copy from ordinary (pageable) memory may wait too: CUDA documents
    that the driver "may synchronize with the stream" to stage it through pinned memory ("API synchronization
    behavior"). So the batch is pinned first, a memcpy of kilobytes, and then copied asynchronously; torch's
    pinned-memory allocator keeps the pinned copy alive until the transfer ends.
    """
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
