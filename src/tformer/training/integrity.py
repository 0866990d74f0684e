"""Is a checkpoint file what it claims? A checksum over its contents, and the types of what its JSON part holds.

The checksum is a CRC-32 over every metadata entry and every tensor's name, dtype, shape and bytes. CRC-32
catches every change of up to 32 consecutive bits, so any single damaged byte, for certain. It guards against
accidents (a bad copy, a failing disk), not attackers, who can recompute it: what keeps a crafted file harmless
is that loading runs no code (safetensors and JSON only) and checks the structure it reads.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

CHECKSUM_KEY = "tformer.crc32"  # metadata entry holding the checksum
CHECKSUM_KIND = "crc32"  # also named in the JSON header, so that losing either the entry or the name shows


def checksum(tensors: dict[str, Tensor], metadata: dict[str, str]) -> str:
    """CRC-32 of the metadata entries (all but the checksum's own) and of each tensor, in sorted key order."""
    crc = 0

    def feed(data: Any) -> None:
        nonlocal crc
        # each piece's length first, so that ("ab", "c") and ("a", "bc") differ
        crc = zlib.crc32(memoryview(data).nbytes.to_bytes(8, "little"), crc)
        crc = zlib.crc32(data, crc)

    for key in sorted(metadata.keys() - {CHECKSUM_KEY}):
        feed(key.encode())
        feed(metadata[key].encode())
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        feed(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        feed(tensor.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, whatever the dtype (bf16 too)
    return f"{crc:08x}"


def verify(path: Path, metadata: dict[str, str], tensors: dict[str, Tensor]) -> None:
    """Raise ValueError if the file has a checksum and its contents no longer match it."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is None:
        return
    actual = checksum(tensors, metadata)
    if stored != actual:
        raise ValueError(
            f"{path} is damaged: its {CHECKSUM_KIND} checksum is {stored}, but its contents give {actual}; "
            f"the file changed after it was written (a bad copy or disk). {_RECOVER}"
        )


def check_declared(path: Path, metadata: dict[str, str], *, declared: bool) -> None:
    """A header that declares a checksum needs the checksum entry (which damage to its name would remove);
    files that declare none were written before checksums existed and load unchecked."""
    if declared and CHECKSUM_KEY not in metadata:
        raise ValueError(
            f"{path} is damaged: its header declares a checksum, but the file has none. {_RECOVER}"
        )


_RECOVER = "Copy it again, or use another checkpoint of the run (step-*.safetensors)"


def check_parts(path: Path, parts: Any, *, required: set[str], optional: set[str], expected: str) -> None:
    """Every part is present with the type the rest of tformer relies on: 'model' maps names to tensors, the
    others are mappings (the `optional` ones may be None). A crafted file may hold anything at all."""
    if not isinstance(parts, dict):
        raise ValueError(f"{path}: the checkpoint tree must be a mapping; {expected}")
    missing = required - parts.keys()
    if missing:
        raise ValueError(f"{path} lacks the checkpoint parts {sorted(missing)}; {expected}")
    model = parts["model"]
    if not isinstance(model, dict) or not all(isinstance(t, Tensor) for t in model.values()):
        raise ValueError(f"{path}: 'model' must map parameter names to tensors; {expected}")
    for name in sorted(required - {"model"}):
        value = parts[name]
        if not (isinstance(value, dict) or (value is None and name in optional)):
            kind = "a mapping or null" if name in optional else "a mapping"
            raise ValueError(f"{path}: {name!r} must be {kind}, found {type(value).__name__}; {expected}")
