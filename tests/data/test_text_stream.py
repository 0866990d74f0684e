from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tformer.data.text_stream import IGNORE_INDEX, LMBatch, TextStream, encode_lines
from tformer.data.tokenizers import EOS_ID, UNK_ID, train_word_tokenizer

I = IGNORE_INDEX


def _stream(n: int) -> TextStream:
    # Token i has value i, so a target's value is its stream position and "next token" is "+1".
    return TextStream(torch.arange(n))


def _random_kwargs(**overrides: int) -> dict[str, int]:
    kwargs = {"batch_size": 3, "block_size": 5, "n_batches": 4, "seed": 7, "epoch": 0}
    return {**kwargs, **overrides}


def test_lm_batch_counts_targets_moves_and_validates() -> None:
    batch = LMBatch(
        input_ids=torch.tensor([[5, 6, 7], [8, 0, 0]]), targets=torch.tensor([[6, 7, 9], [3, I, I]])
    )
    assert len(batch) == 2
    assert batch.n_targets.dim() == 0 and int(batch.n_targets) == 4
    moved = batch.to("cpu")
    assert torch.equal(moved.input_ids, batch.input_ids) and torch.equal(moved.targets, batch.targets)
    with pytest.raises(TypeError, match="targets must be a 2-d torch.long tensor"):
        LMBatch(input_ids=torch.zeros(2, 3, dtype=torch.long), targets=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="input_ids must be a 2-d torch.long tensor"):
        LMBatch(input_ids=torch.zeros(3, dtype=torch.long), targets=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets shape \(2, 4\) != input_ids \(2, 3\)"):
        LMBatch(input_ids=torch.zeros(2, 3, dtype=torch.long), targets=torch.zeros(2, 4, dtype=torch.long))


def test_encode_lines_appends_eos_to_every_line_like_pytorch_examples() -> None:
    lines = ["the cat sat", "", "  the  dog\t", "cat"]
    tok = train_word_tokenizer(lines)
    ids = encode_lines(tok, lines)
    # pytorch/examples word_language_model: words = line.split() + ['<eos>'], each word looked up.
    expected = []
    for line in lines:
        expected += [tok.token_to_id(word) for word in line.split()] + [EOS_ID]
    assert ids.dtype == torch.long and ids.tolist() == expected
    assert (ids == EOS_ID).sum() == len(lines)
    assert encode_lines(tok, ["zebra cat"]).tolist() == [UNK_ID, tok.token_to_id("cat"), EOS_ID]


def test_random_batches_are_contiguous_windows_with_next_token_targets() -> None:
    n, block_size = 40, 6
    stream = TextStream(torch.arange(n) * 3 % 17)  # repeated values: check against positions, not values
    offsets_stream = _stream(n)
    kwargs = _random_kwargs(block_size=block_size, n_batches=5)
    for batch, by_position in zip(
        stream.random_batches(**kwargs), offsets_stream.random_batches(**kwargs), strict=True
    ):
        assert batch.input_ids.shape == batch.targets.shape == (3, block_size)
        starts = by_position.input_ids[:, 0]
        for row, start in enumerate(starts.tolist()):
            assert torch.equal(batch.input_ids[row], stream.tokens[start : start + block_size])
            assert torch.equal(batch.targets[row], stream.tokens[start + 1 : start + block_size + 1])
        assert int(batch.n_targets) == 3 * block_size


def test_random_offsets_cover_exactly_the_valid_range() -> None:
    # nanoGPT: torch.randint(len(data) - block_size, ...): starts 0 .. N - block_size - 1, last target = last token.
    n, block_size = 12, 4
    batches = _stream(n).random_batches(**_random_kwargs(block_size=block_size, batch_size=8, n_batches=100))
    starts = torch.cat([batch.input_ids[:, 0] for batch in batches])
    assert set(starts.tolist()) == set(range(n - block_size))


def test_random_batches_are_deterministic_in_seed_and_epoch() -> None:
    stream = _stream(200)

    def draw(**overrides: int) -> torch.Tensor:
        return torch.stack([b.input_ids for b in stream.random_batches(**_random_kwargs(**overrides))])

    assert torch.equal(draw(), draw())
    assert not torch.equal(draw(), draw(epoch=1))
    assert not torch.equal(draw(), draw(seed=8))
    assert torch.equal(draw(n_batches=2), draw()[:2])  # a shorter run replays the same prefix


def test_ranks_share_one_draw_like_a_single_process_with_the_whole_batch() -> None:
    stream = _stream(500)
    single = list(stream.random_batches(**_random_kwargs(batch_size=6)))
    per_rank = [
        list(stream.random_batches(**_random_kwargs(batch_size=2), rank=rank, world_size=3))
        for rank in range(3)
    ]
    for step, whole in enumerate(single):
        shares = [per_rank[rank][step] for rank in range(3)]
        assert torch.equal(torch.cat([share.input_ids for share in shares]), whole.input_ids)
        assert torch.equal(torch.cat([share.targets for share in shares]), whole.targets)
        starts = [set(share.input_ids[:, 0].tolist()) for share in shares]
        assert starts[0] != starts[1] != starts[2]


def test_sequential_non_overlapping_windows_by_hand() -> None:
    batches = list(_stream(10).sequential_batches(batch_size=2, block_size=4))
    assert [len(b) for b in batches] == [2, 1]
    assert batches[0].input_ids.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert batches[0].targets.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert batches[1].input_ids.tolist() == [[8, 0, 0, 0]]
    assert batches[1].targets.tolist() == [[9, I, I, I]]


def test_sequential_sliding_windows_by_hand() -> None:
    (batch,) = _stream(10).sequential_batches(batch_size=8, block_size=4, stride=2)
    assert batch.input_ids.tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 0]]
    assert batch.targets.tolist() == [[1, 2, 3, 4], [I, I, 5, 6], [I, I, 7, 8], [I, I, 9, I]]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=60),
    block_size=st.integers(min_value=1, max_value=9),
    stride_fraction=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
    batch_size=st.integers(min_value=1, max_value=4),
)
def test_sequential_scores_every_position_once_with_enough_context(
    n: int, block_size: int, stride_fraction: float | None, batch_size: int
) -> None:
    stride = None if stride_fraction is None else max(1, round(stride_fraction * block_size))
    batches = list(_stream(n).sequential_batches(batch_size=batch_size, block_size=block_size, stride=stride))
    scored: list[int] = []
    for batch in batches:
        assert batch.input_ids.shape[1] == block_size and 1 <= len(batch) <= batch_size
        for row in range(len(batch)):
            for t in (batch.targets[row] != I).nonzero().flatten().tolist():
                position = int(batch.targets[row, t])
                # The input up to t is the stream just before the target: real context, no padding.
                assert batch.input_ids[row, : t + 1].tolist() == list(range(position - t - 1, position))
                assert t + 1 >= min(block_size - (stride or block_size), position)
                scored.append(position)
    assert sorted(scored) == list(range(1, n))  # count and identity: each position 1..N-1 exactly once
    assert sum(int(b.n_targets) for b in batches) == n - 1
    assert all(len(b) == batch_size for b in batches[:-1])


@pytest.mark.parametrize("stride", [None, 4, 2, 1])
def test_sequential_windows_over_repeated_ids_hold_the_stream_tokens(stride: int | None) -> None:
    # Same layout as a position stream of the same length, so positions tell where each value must come from.
    tokens = torch.tensor([4, 9, 4, 4, 7, 2, 9, 9, 5, 4, 7])
    kwargs = {"batch_size": 3, "block_size": 4, "stride": stride}
    valued = list(TextStream(tokens).sequential_batches(**kwargs))
    by_position = list(_stream(len(tokens)).sequential_batches(**kwargs))
    for batch, positions in zip(valued, by_position, strict=True):
        scored = positions.targets != I
        assert torch.equal(batch.targets[scored], tokens[positions.targets[scored]])
        assert torch.equal(batch.targets[~scored], positions.targets[~scored])
        # Where a target is scored, the input is the token just before it.
        assert torch.equal(batch.input_ids[scored], tokens[positions.targets[scored] - 1])


def test_bad_streams_and_sizes_are_rejected() -> None:
    with pytest.raises(TypeError, match="torch.long tensor of token ids, got a torch.float32 tensor"):
        TextStream(torch.zeros(5))
    with pytest.raises(TypeError, match="got list"):
        TextStream([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1-d \[N\], got shape \(2, 3\)"):
        TextStream(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        TextStream(torch.tensor([3]))
    stream = _stream(10)
    with pytest.raises(ValueError, match="10 tokens, too few for block_size=10"):
        next(stream.random_batches(**_random_kwargs(block_size=10)))
    next(stream.random_batches(**_random_kwargs(block_size=9)))  # 9 + 1 tokens is exactly enough
    for name in ("batch_size", "block_size", "n_batches"):
        with pytest.raises(ValueError, match=f"{name} must be an int >= 1, got 0"):
            next(stream.random_batches(**_random_kwargs(**{name: 0})))
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        next(stream.random_batches(**_random_kwargs(seed=-1)))
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        next(stream.random_batches(**_random_kwargs(), rank=2, world_size=2))
    with pytest.raises(ValueError, match=r"stride must be an int in \[1, block_size=4\] or None, got 5"):
        next(stream.sequential_batches(batch_size=2, block_size=4, stride=5))
    with pytest.raises(ValueError, match="stride must be .* got 0"):
        next(stream.sequential_batches(batch_size=2, block_size=4, stride=0))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        next(stream.sequential_batches(batch_size=0, block_size=4))


def test_training_windows_are_packed_every_position_is_a_scored_real_token() -> None:
    # A stream of real tokens only (ids >= 4, no padding): every training window is a slice of it, so nothing in a
    # batch is padding and every target is scored, whatever the line lengths (the windows cross line ends).
    lines = ["a b c", "", "d e f g h", "i"] * 40
    tokenizer = train_word_tokenizer(lines)
    stream = TextStream(encode_lines(tokenizer, lines))
    for batch in stream.random_batches(**_random_kwargs(block_size=16, batch_size=8, n_batches=20)):
        assert int(batch.n_targets) == batch.targets.numel()
        assert bool((batch.input_ids != tokenizer.pad_id).all())
