"""Token and patch embeddings: what turns raw inputs (token ids, image patches, series windows) into tokens.

Shape legend: B batch, T length, D model width, V vocabulary; for patches C channels, H height, W width, P patch
side (images) or patch length (series), L series length, N patches.

Both patch embeddings say how many tokens an input of a given size becomes (`n_patches`), so a model can size its
position table before it sees data.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from tformer.checks import check_positive_int


class TokenEmbedding(nn.Module):
    """Embedding lookup multiplied by sqrt(d_model), as in section 3.4 of the paper.

    The scale keeps token vectors (initialised with std d_model^-0.5) on the same footing as the positional
    encoding, whose entries are of order 1.
    """

    def __init__(self, vocab_size: int, d_model: int, *, padding_idx: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model)

    @property
    def weight(self):
        return self.embedding.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids) * self.scale  # [B, T] -> [B, T, D]


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    """An int side or an (H, W) pair -> (H, W), each side an int >= 1."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name} must be an int >= 1 or a pair (height, width) of them, got {value!r}")
    for side in pair:
        check_positive_int(name, side)
    return int(pair[0]), int(pair[1])


class PatchEmbedding2d(nn.Module):
    """Images [B, C, H, W] -> tokens [B, N, D], N = (H / P) * (W / P): the ViT patch embedding.

    A Conv2d whose kernel equals its stride is a Linear applied to each non-overlapping P x P patch (flattened
    channel-major, as `conv.weight.flatten(1)` is laid out), computed in one kernel call. Tokens run row by
    row over the patch grid. `image_size` is the size the model is built for (the default of `n_patches`);
    any other size whose sides divide by the patch is embedded too, since resizing position tables is the
    model's business.
    """

    def __init__(
        self,
        in_channels: int,
        d_model: int,
        patch_size: int | tuple[int, int],
        *,
        image_size: int | tuple[int, int],
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("d_model", d_model)
        self.in_channels = in_channels
        self.patch_size = _pair("patch_size", patch_size)
        self.image_size = _pair("image_size", image_size)
        self.grid_size(self.image_size)  # an image size the patches do not tile is a config error: say so now
        self.proj = nn.Conv2d(in_channels, d_model, kernel_size=self.patch_size, stride=self.patch_size)

    def grid_size(self, image_size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """(rows, columns) of the patch grid of an image of `image_size` (default: the configured one)."""
        height, width = self.image_size if image_size is None else _pair("image_size", image_size)
        ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(
                f"image size {height}x{width} (HxW) must divide by the patch size {ph}x{pw}: "
                f"{height} % {ph} = {height % ph}, {width} % {pw} = {width % pw}"
            )
        return height // ph, width // pw

    def n_patches(self, image_size: int | tuple[int, int] | None = None) -> int:
        """N, the number of tokens an image of `image_size` (default: the configured one) becomes."""
        rows, cols = self.grid_size(image_size)
        return rows * cols

    def forward(self, images: Tensor) -> Tensor:
        """images [B, C, H, W] -> tokens [B, N, D]."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"patch embedding needs images [B, C={self.in_channels}, H, W], got shape {tuple(images.shape)}"
            )
        self.grid_size(tuple(images.shape[-2:]))
        return self.proj(images).flatten(2).transpose(1, 2)  # [B, D, H/P, W/P] -> [B, D, N] -> [B, N, D]


class PatchEmbedding1d(nn.Module):
    """Series [B, L, C] -> tokens [B, N, D]: windows of `patch_len` steps every `stride` steps (PatchTST), each
    window of all C channels flattened time-major (the window's rows, [P, C] -> [P * C]) and projected by a
    Linear(P * C, D).

    The windows end at the series' last step, N = (L - P) // stride + 1: when (L - P) is no multiple of the
    stride, the leftover steps are dropped from the start, never the end, because a forecast depends most on
    the latest observations. PatchTST's channel-independent form is n_channels=1 with the channels folded
    into the batch ([B, L, C] -> [B * C, L, 1]); n_channels=C mixes the channels inside each token.
    """

    def __init__(self, n_channels: int, d_model: int, patch_len: int, *, stride: int | None = None) -> None:
        super().__init__()
        check_positive_int("n_channels", n_channels)
        check_positive_int("d_model", d_model)
        check_positive_int("patch_len", patch_len)
        check_positive_int("stride", stride, optional=True)
        stride = patch_len if stride is None else stride
        if stride > patch_len:
            raise ValueError(
                f"stride={stride} must be <= patch_len={patch_len}: a longer stride skips the "
                f"{stride - patch_len} steps between patches"
            )
        self.n_channels, self.patch_len, self.stride = n_channels, patch_len, stride
        self.proj = nn.Linear(patch_len * n_channels, d_model)

    def n_patches(self, length: int) -> int:
        """N, the number of tokens a series of `length` steps becomes."""
        if length < self.patch_len:
            raise ValueError(
                f"series length L={length} is shorter than patch_len={self.patch_len}: "
                f"a series needs at least {self.patch_len} steps to make one patch"
            )
        return (length - self.patch_len) // self.stride + 1

    def forward(self, series: Tensor) -> Tensor:
        """series [B, L, C] -> tokens [B, N, D]."""
        if series.dim() != 3 or series.shape[2] != self.n_channels:
            raise ValueError(
                f"patch embedding needs a series [B, L, C={self.n_channels}], got shape {tuple(series.shape)}"
            )
        batch, length, _ = series.shape
        n = self.n_patches(length)
        start = length - (n - 1) * self.stride - self.patch_len  # the leading steps no window covers
        windows = series[:, start:].unfold(1, self.patch_len, self.stride)  # [B, L', C] -> [B, N, C, P]
        # [B, N, C, P] -> [B, N, P, C] -> [B, N, P * C]
        windows = windows.transpose(2, 3).reshape(batch, n, -1)
        return self.proj(windows)  # [B, N, D]
