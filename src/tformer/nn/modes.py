"""Running a module in eval mode for a while and giving it back as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Switch `module` to eval mode (no dropout) inside the block and restore its training flag afterwards,
    also when the block raises: decoding or scoring in the middle of training must not leave the model in
    eval mode, and must not train it either."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
