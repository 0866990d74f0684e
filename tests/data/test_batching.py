from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from tformer.data.batching import (
    Seq2SeqBatch,
    make_seq2seq_batch,
    pad_sequences,
    shard_batches,
    token_budget_batches,
)

PAD, BOS, EOS = 0, 1, 2


def random_lengths(n: int, *, seed: int, low: int = 1, high: int = 50) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(n)]


def test_pad_sequences_pads_right_and_mask_is_true_on_tokens() -> None:
    ids, mask = pad_sequences([[5, 6, 7], [8], []], pad_id=9)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9], [9, 9, 9]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [False, False, False]]


def test_pad_sequences_rejects_an_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_sequences([], pad_id=0)


def test_make_seq2seq_batch_appends_eos_to_source_and_shifts_target() -> None:
    batch = make_seq2seq_batch([[5, 6], [7]], [[10, 11, 12], [13]], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    assert batch.src_ids.tolist() == [[5, 6, EOS], [7, EOS, PAD]]
    assert batch.src_mask.tolist() == [[True, True, True], [True, True, False]]
    assert batch.tgt_in.tolist() == [[BOS, 10, 11, 12], [BOS, 13, PAD, PAD]]
    assert batch.tgt_out.tolist() == [[10, 11, 12, EOS], [13, EOS, PAD, PAD]]
    assert batch.tgt_mask.tolist() == [[True, True, True, True], [True, True, False, False]]
    assert batch.n_tgt_tokens == 6 == int((batch.tgt_out != PAD).sum())
    assert len(batch) == 2


def test_teacher_forcing_shift_holds_on_random_data() -> None:
    rng = random.Random(0)
    tgt = [[rng.randint(3, 99) for _ in range(rng.randint(0, 9))] for _ in range(16)]
    src = [[rng.randint(3, 99) for _ in range(rng.randint(0, 9))] for _ in range(16)]
    batch = make_seq2seq_batch(src, tgt, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    for row, y in enumerate(tgt):
        n = len(y) + 1
        # The decoder input at step t+1 is the target at step t.
        assert batch.tgt_in[row, 1:n].tolist() == batch.tgt_out[row, : n - 1].tolist() == y
        assert batch.tgt_out[row, n - 1] == EOS and batch.tgt_in[row, 0] == BOS
        assert not batch.tgt_mask[row, n:].any() and batch.tgt_mask[row, :n].all()
        assert (batch.tgt_out[row, n:] == PAD).all()
    assert batch.n_tgt_tokens == sum(len(y) + 1 for y in tgt)


def test_make_seq2seq_batch_rejects_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="2 sources and 1 targets"):
        make_seq2seq_batch([[5], [6]], [[7]], pad_id=PAD, bos_id=BOS, eos_id=EOS)


def test_batch_validates_shapes_and_dtypes() -> None:
    good = make_seq2seq_batch([[5, 6]], [[7]], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match="tgt_out shape"):
        Seq2SeqBatch(good.src_ids, good.src_mask, good.tgt_in, good.tgt_out[:, :1], good.tgt_mask)
    with pytest.raises(TypeError, match="src_mask must be a 2-d torch.bool"):
        Seq2SeqBatch(good.src_ids, good.src_mask.long(), good.tgt_in, good.tgt_out, good.tgt_mask)


def test_to_moves_every_field() -> None:
    batch = make_seq2seq_batch([[5, 6]], [[7, 8]], pad_id=PAD, bos_id=BOS, eos_id=EOS)
    moved = batch.to("meta")  # a real device change that works without an accelerator
    assert isinstance(moved, Seq2SeqBatch)
    for name in ("src_ids", "src_mask", "tgt_in", "tgt_out", "tgt_mask", "tgt_positions"):
        assert getattr(moved, name).device.type == "meta"
        assert getattr(moved, name).shape == getattr(batch, name).shape
    same = batch.to("cpu")
    assert torch.equal(same.tgt_out, batch.tgt_out) and torch.equal(same.src_mask, batch.src_mask)


def test_budget_packing_by_hand() -> None:
    # Sorted by length: idx1(1) idx2(2) idx3(2) idx0(3) idx4(5); 3 * 2 = 6 fits, 4 * 3 = 12 does not.
    batches = token_budget_batches([3, 1, 2, 2, 5], max_tokens=6, seed=0, epoch=0, shuffle=False)
    assert batches == [[1, 2, 3], [0], [4]]


@pytest.mark.parametrize("shuffle", [True, False])
def test_budget_holds_and_every_index_appears_once(shuffle: bool) -> None:
    lengths = random_lengths(3000, seed=1)
    batches = token_budget_batches(lengths, max_tokens=200, seed=3, epoch=2, shuffle=shuffle)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert batch and len(batch) * max(lengths[i] for i in batch) <= 200
    # Greedy packing wastes little: a batch could not take one more example of its longest length.
    full = [b for b in batches if (len(b) + 1) * max(lengths[i] for i in b) <= 200]
    assert len(full) <= len(batches) // 10


def test_batches_group_similar_lengths() -> None:
    lengths = random_lengths(3000, seed=2)
    batches = token_budget_batches(lengths, max_tokens=200, seed=0, epoch=0)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert sum(lengths) / padded > 0.9
    # Baseline without sorting: consecutive shuffled examples wastes far more on padding.
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    naive_padded = sum(8 * max(lengths[i] for i in order[k : k + 8]) for k in range(0, len(order), 8))
    assert sum(lengths) / naive_padded < 0.7


def test_one_bucket_gives_non_overlapping_length_ranges() -> None:
    lengths = random_lengths(500, seed=3)
    batches = token_budget_batches(lengths, max_tokens=120, seed=0, epoch=0, bucket_size_multiplier=10**6)
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    for (_, high), (next_low, _) in itertools.pairwise(ranges):
        assert high <= next_low


def test_deterministic_for_seed_and_epoch_and_independent_of_global_rng() -> None:
    lengths = random_lengths(1000, seed=4)

    def run(seed: int, epoch: int) -> list[list[int]]:
        return token_budget_batches(lengths, max_tokens=150, seed=seed, epoch=epoch)

    random.seed(1)
    torch.manual_seed(1)
    first = run(7, 3)
    random.seed(2)
    torch.manual_seed(2)
    assert run(7, 3) == first
    assert run(7, 4) != first
    assert run(8, 3) != first
    assert sorted(map(sorted, run(7, 4))) != sorted(map(sorted, first))  # membership changes, not just order


def test_batch_order_is_shuffled() -> None:
    lengths = random_lengths(1000, seed=5)
    batches = token_budget_batches(lengths, max_tokens=150, seed=0, epoch=0)
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_long_example_is_rejected_by_index_and_length() -> None:
    with pytest.raises(ValueError, match="example 1 has length 10 > max_tokens=8"):
        token_budget_batches([3, 10, 2], max_tokens=8, seed=0, epoch=0)


def test_budget_argument_checks_and_edge_cases() -> None:
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        token_budget_batches([1], max_tokens=0, seed=0, epoch=0)
    with pytest.raises(ValueError, match=r"lengths\[1\] must be a non-negative int"):
        token_budget_batches([1, -2], max_tokens=4, seed=0, epoch=0)
    assert token_budget_batches([], max_tokens=4, seed=0, epoch=0) == []
    # Zero-length examples still count one slot each, so batches stay bounded.
    assert token_budget_batches([0] * 5, max_tokens=2, seed=0, epoch=0, shuffle=False) == [
        [0, 1],
        [2, 3],
        [4],
    ]
    from_numpy = token_budget_batches(np.array([3, 1, 2, 2, 5]), max_tokens=6, seed=0, epoch=0, shuffle=False)
    assert from_numpy == [[1, 2, 3], [0], [4]]


def test_shard_batches_interleaves_and_drops_the_uneven_tail() -> None:
    batches = [[i] for i in range(10)]
    shards = [shard_batches(batches, rank=r, world_size=3) for r in range(3)]
    assert shards == [[[0], [3], [6]], [[1], [4], [7]], [[2], [5], [8]]]
    assert shard_batches(batches, rank=0, world_size=1) == batches


def test_shard_batches_argument_checks() -> None:
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        shard_batches([[0], [1]], rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        shard_batches([[0]], rank=0, world_size=0)
    with pytest.raises(ValueError, match="1 batches cannot give each of 2 ranks one"):
        shard_batches([[0]], rank=0, world_size=2)
