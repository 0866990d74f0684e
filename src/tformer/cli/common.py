"""Small helpers shared by the subcommands."""

from __future__ import annotations

import sys

DEVICE_HELP = "device to run on: auto (CUDA if available), cpu, cuda or cuda:N (default: auto)"


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def decode_utf8(data: bytes, *, source: str) -> str:
    """Bytes from a file or stdin as text; invalid UTF-8 is an error naming the source and line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{source} line {line}: not valid UTF-8 ({error.reason})") from None
