"""A token stream for language modelling: one long 1-D tensor of ids -> (input, next-token target) windows.

Training draws windows at random offsets (nanoGPT's `get_batch`); evaluation walks the stream so that every
token after the first is scored exactly once, with non-overlapping or sliding windows (HF "perplexity of
fixed-length models"). Shapes: B batch, T block size (window length), N stream length.

Training windows are packed by construction: each is a slice of the stream, so no position is padding and every
target is scored. They do cross line and article ends. Tiny Shakespeare marks no documents. WikiText-2 marks its
articles only by "= Title =" heading lines, and the word-level protocol that its published perplexities use
(pytorch/examples, AWD-LSTM) scores one continuous stream across them, so tformer keeps the stream whole to stay
comparable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tformer.data.batching import to_device
from tformer.data.tokenizers import Tokenizer

IGNORE_INDEX = -100  # target value that the loss skips (context-only positions of overlapping eval windows)
# Input id after the end of a short last window: a causal model never reads it for a scored target, so any id
# would do; the stream knows no tokenizer, so it is a fixed one.
FILLER_ID = 0


@dataclass
class LMBatch:
    """input_ids Long[B,T]; targets Long[B,T], targets[:, t] = the token after input_ids[:, t] or IGNORE_INDEX."""

    input_ids: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("input_ids", "targets"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.dtype != torch.long or value.dim() != 2:
                got = (
                    f"{value.dtype} tensor of dim {value.dim()}"
                    if isinstance(value, torch.Tensor)
                    else type(value)
                )
                raise TypeError(f"{name} must be a 2-d torch.long tensor [B, T], got {got}")
        if self.input_ids.shape != self.targets.shape:
            raise ValueError(
                f"targets shape {tuple(self.targets.shape)} != input_ids {tuple(self.input_ids.shape)}"
            )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def n_targets(self) -> torch.Tensor:
        """Number of scored targets as a 0-d tensor on the batch's device (no host sync): the loss normaliser."""
        return (self.targets != IGNORE_INDEX).sum()

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(input_ids=to_device(self.input_ids, device), targets=to_device(self.targets, device))


def encode_lines(tokenizer: Tokenizer, lines: Sequence[str]) -> torch.Tensor:
    """Long[N]: each line's ids followed by EOS, all lines concatenated; an empty line gives just EOS.

    This is the pytorch/examples word_language_model convention (`line.split() + ['<eos>']`), under which
    WikiText-2's published token counts are given.
    """
    encoded = tokenizer.encode_batch(lines)
    flat = [token for ids in encoded for token in (*ids, tokenizer.eos_id)]
    # Through numpy: ten times faster than torch.tensor on a list of millions of ints.
    return torch.from_numpy(np.array(flat, dtype=np.int64))


class TextStream:
    """A language-modelling corpus as one stream of token ids, cut into fixed-length windows on demand."""

    def __init__(self, tokens: torch.Tensor) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
            got = f"a {tokens.dtype} tensor" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise TypeError(f"tokens must be a torch.long tensor of token ids, got {got}")
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-d [N], got shape {tuple(tokens.shape)}")
        if len(tokens) < 2:
            raise ValueError(
                f"a stream needs at least 2 tokens (one input and its target), got {len(tokens)}"
            )
        self.tokens = tokens.contiguous()

    def __len__(self) -> int:
        return len(self.tokens)

    def random_batches(
        self,
        *,
        batch_size: int,
        block_size: int,
        n_batches: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[LMBatch]:
        """`n_batches` batches of windows at uniformly random offsets, deterministic in (seed, epoch).

        Each step draws world_size * batch_size offsets from one (seed, epoch) generator and rank r takes
        the r-th share, so the ranks together see exactly the windows of a single process with
        batch_size * world_size, and no two ranks share a draw.
        """
        for name, value in (("batch_size", batch_size), ("block_size", block_size), ("n_batches", n_batches)):
            _check_int(value, name=name, minimum=1)
        _check_int(seed, name="seed", minimum=0)
        _check_int(epoch, name="epoch", minimum=0)
        _check_int(world_size, name="world_size", minimum=1)
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
        if len(self) < block_size + 1:
            raise ValueError(
                f"the stream has {len(self)} tokens, too few for block_size={block_size} (a window needs "
                f"block_size + 1 = {block_size + 1} tokens); lower block_size"
            )
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        window = torch.arange(block_size + 1)
        share = slice(rank * batch_size, (rank + 1) * batch_size)
        for _ in range(n_batches):
            # high is exclusive, so the last window ends at the last token.
            offsets = torch.randint(len(self) - block_size, (world_size * batch_size,), generator=generator)
            windows = self.tokens[offsets[share, None] + window]  # Long[B, T+1]
            yield LMBatch(input_ids=windows[:, :-1], targets=windows[:, 1:])

    def sequential_batches(
        self, *, batch_size: int, block_size: int, stride: int | None = None
    ) -> Iterator[LMBatch]:
        """Evaluation windows in stream order; every token after the first is a scored target exactly once.

        Windows start every `stride` tokens (None: `block_size`, i.e. non-overlapping). With stride <
        block_size a window's targets already scored by the previous one are IGNORE_INDEX, so each scored
        target sees at least block_size - stride tokens of context (fewer only near the stream start).
        The last window may be shorter: its input is padded with FILLER_ID, its targets with IGNORE_INDEX. The last
        batch may hold fewer than `batch_size` windows.
        """
        _check_int(batch_size, name="batch_size", minimum=1)
        _check_int(block_size, name="block_size", minimum=1)
        stride = block_size if stride is None else stride
        if not isinstance(stride, int) or isinstance(stride, bool) or not 1 <= stride <= block_size:
            raise ValueError(f"stride must be an int in [1, block_size={block_size}] or None, got {stride!r}")
        inputs: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        for input_row, target_row in self._windows(block_size=block_size, stride=stride):
            inputs.append(input_row)
            targets.append(target_row)
            if len(inputs) == batch_size:
                yield LMBatch(input_ids=torch.stack(inputs), targets=torch.stack(targets))
                inputs, targets = [], []
        if inputs:
            yield LMBatch(input_ids=torch.stack(inputs), targets=torch.stack(targets))

    def _windows(self, *, block_size: int, stride: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(input Long[T], target Long[T]) per window, padded to block_size; see sequential_batches."""
        last = len(self) - 1  # index of the last token, the last target
        begin, next_unscored = 0, 1  # next_unscored: the first stream position not yet scored as a target
        while next_unscored <= last:
            end = min(begin + block_size, last)  # inputs tokens[begin:end], targets tokens[begin+1:end+1]
            input_row = torch.full((block_size,), FILLER_ID, dtype=torch.long)
            target_row = torch.full((block_size,), IGNORE_INDEX, dtype=torch.long)
            input_row[: end - begin] = self.tokens[begin:end]
            already_scored = next_unscored - (begin + 1)  # leading targets of this window scored before
            target_row[already_scored : end - begin] = self.tokens[next_unscored : end + 1]
            yield input_row, target_row
            begin, next_unscored = begin + stride, end + 1


def _check_int(value: object, *, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
