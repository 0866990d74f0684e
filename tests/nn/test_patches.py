"""Patch embeddings against the patches cut out by hand: an explicit reshape for images, a loop over windows for
series, each followed by the same Linear."""

from __future__ import annotations

import pytest
import torch

from tformer.nn import PatchEmbedding1d, PatchEmbedding2d


def image_patches(images: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, C * ph * pw], patches row by row, each flattened channel-major like a conv weight."""
    b, c, h, w = images.shape
    grid = images.reshape(b, c, h // ph, ph, w // pw, pw)  # [B, C, rows, ph, cols, pw]
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // ph) * (w // pw), c * ph * pw)


@pytest.mark.parametrize(
    "channels, patch, size, shape",
    [(3, 4, 16, (16, 16)), (1, 7, 28, (28, 28)), (2, (2, 3), (4, 9), (4, 9)), (3, 4, 16, (8, 12))],
)
def test_patch_embedding_2d_equals_patches_times_the_conv_weights(channels, patch, size, shape):
    torch.manual_seed(0)
    embed = PatchEmbedding2d(channels, 10, patch, image_size=size)
    images = torch.randn(2, channels, *shape)
    ph, pw = embed.patch_size
    weight, bias = embed.proj.weight.detach(), embed.proj.bias.detach()
    expected = image_patches(images, ph, pw) @ weight.flatten(1).T + bias  # [B, N, D]
    tokens = embed(images)
    assert tokens.shape == (2, embed.n_patches(shape), 10)
    torch.testing.assert_close(tokens, expected, atol=1e-6, rtol=0)


def test_patch_embedding_2d_counts_its_patches():
    embed = PatchEmbedding2d(3, 8, 4, image_size=(16, 24))
    assert embed.grid_size() == (4, 6) and embed.n_patches() == 24
    assert embed.n_patches(32) == 64 and embed.n_patches((8, 4)) == 2


def test_patch_embedding_2d_errors_name_the_values():
    with pytest.raises(
        ValueError, match=r"image size 30x32 \(HxW\) must divide by the patch size 4x4: 30 % 4 = 2"
    ):
        PatchEmbedding2d(3, 8, 4, image_size=(30, 32))
    embed = PatchEmbedding2d(3, 8, 4, image_size=16)
    with pytest.raises(ValueError, match=r"image size 16x18.*18 % 4 = 2"):
        embed(torch.randn(1, 3, 16, 18))
    with pytest.raises(ValueError, match=r"images \[B, C=3, H, W\], got shape \(1, 1, 16, 16\)"):
        embed(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"got shape \(3, 16, 16\)"):
        embed(torch.randn(3, 16, 16))
    with pytest.raises(ValueError, match="patch_size must be an int >= 1, got 0"):
        PatchEmbedding2d(3, 8, 0, image_size=16)
    with pytest.raises(ValueError, match=r"patch_size must be an int >= 1 or a pair.*got \(2, 2, 2\)"):
        PatchEmbedding2d(3, 8, (2, 2, 2), image_size=16)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1, got 0"):
        PatchEmbedding2d(0, 8, 4, image_size=16)


def window_loop(embed: PatchEmbedding1d, series: torch.Tensor) -> torch.Tensor:
    """Windows by hand: the last ends at the last step, each earlier one `stride` steps before."""
    length, p, s = series.shape[1], embed.patch_len, embed.stride
    starts = list(range(length - p, -1, -s))[::-1]
    tokens = [embed.proj(series[:, t : t + p, :].reshape(series.shape[0], -1)) for t in starts]  # [B, D] each
    return torch.stack(tokens, dim=1)  # [B, N, D]


@pytest.mark.parametrize(
    "channels, patch_len, stride, length, n",
    [(1, 4, None, 12, 3), (3, 4, None, 14, 3), (2, 16, 8, 64, 7), (2, 5, 3, 17, 5), (1, 4, 1, 4, 1)],
)
def test_patch_embedding_1d_equals_a_loop_over_windows(channels, patch_len, stride, length, n):
    torch.manual_seed(0)
    embed = PatchEmbedding1d(channels, 6, patch_len, stride=stride)
    series = torch.randn(2, length, channels)
    tokens = embed(series)
    assert embed.n_patches(length) == n and tokens.shape == (2, n, 6)
    torch.testing.assert_close(tokens, window_loop(embed, series), atol=1e-6, rtol=0)


def test_patch_embedding_1d_keeps_the_latest_steps():
    # L=14, P=4: three patches cover steps 2..13; the two oldest steps are the ones left out
    embed = PatchEmbedding1d(1, 6, 4)
    series = torch.randn(1, 14, 1)
    changed = series.clone()
    changed[:, :2] = 100.0
    torch.testing.assert_close(embed(changed), embed(series), atol=0, rtol=0)
    changed[:, -1] = 100.0
    assert not torch.equal(embed(changed)[:, -1], embed(series)[:, -1])


def test_patch_embedding_1d_errors_name_the_values():
    embed = PatchEmbedding1d(2, 6, 8, stride=4)
    with pytest.raises(ValueError, match="series length L=5 is shorter than patch_len=8"):
        embed(torch.randn(1, 5, 2))
    with pytest.raises(ValueError, match="L=3 is shorter than patch_len=8"):
        embed.n_patches(3)
    with pytest.raises(ValueError, match=r"series \[B, L, C=2\], got shape \(1, 16, 3\)"):
        embed(torch.randn(1, 16, 3))
    with pytest.raises(ValueError, match="stride=9 must be <= patch_len=8"):
        PatchEmbedding1d(2, 6, 8, stride=9)
    with pytest.raises(ValueError, match="stride must be an int >= 1 or None, got 0"):
        PatchEmbedding1d(2, 6, 8, stride=0)
    with pytest.raises(ValueError, match="patch_len must be an int >= 1, got 0"):
        PatchEmbedding1d(2, 6, 0)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    embed2d, embed1d = PatchEmbedding2d(3, 8, 4, image_size=8), PatchEmbedding1d(2, 8, 4, stride=2)
    (
        embed2d(torch.randn(2, 3, 8, 8)).square().sum() + embed1d(torch.randn(2, 10, 2)).square().sum()
    ).backward()
    for module in (embed2d, embed1d):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(module).__name__}.{name}"
