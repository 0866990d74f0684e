"""Small helpers shared by the subcommands."""

from __future__ import annotations

import sys

DEVICE_HELP = "device to run on: auto (CUDA if available), cpu, cuda or cuda:N (default: auto)"


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
