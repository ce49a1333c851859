"""Sizes as admins write them (`2G`, `512M`, a byte count) and as the hub shows them back."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: object) -> int:
    """Accept `2G`, `512M`, `1.5G` or a byte count, as Docker and Kubernetes users write them."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 2G or 512M")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
        if not match:
            raise ValueError(f"expected a size like 2G or 512M, got {value!r}")
        size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return size


def show_size(size: int) -> str:
    """Bytes as classroom.yaml writes them: the largest unit that divides evenly (3G, 64M)."""
    for unit, factor in sorted(SIZE_UNITS.items(), key=lambda item: -item[1]):
        if factor > 1 and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def format_size(size: int) -> str:
    """1536 -> `1.5K`, 5 * 2**30 -> `5G`: the short form, as classroom.yaml writes sizes."""
    for unit in ("T", "G", "M", "K"):
        if size >= SIZE_UNITS[unit]:
            return f"{size / SIZE_UNITS[unit]:.3g}{unit}"
    return f"{size}B"


ByteSize = Annotated[int, BeforeValidator(parse_size)]
