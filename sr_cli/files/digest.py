"""The one sha256 helper and the one "what must this file hash to" type.

`ExpectedSha256` is either the full digest or a published prefix of it (torchvision and the EDSR
authors publish only the first 8 hex digits). It is validated when it is made: an empty, short or
non-hex value cannot exist, so no download can be "verified" against nothing.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK = 1 << 20  # 1 MiB reads: fast, flat memory
MIN_PREFIX_DIGITS = 8  # what torchvision publishes; anything shorter identifies nothing
_HEX = re.compile(r"[0-9a-f]+")
FULL_DIGITS = 64


@dataclass(frozen=True)
class ExpectedSha256:
    """The sha256 a file must have: all 64 hex digits, or (`is_prefix`) the published first ones."""

    hex: str
    is_prefix: bool = False

    def __post_init__(self) -> None:
        if not _HEX.fullmatch(self.hex):
            raise ValueError(f"sha256 {self.hex!r}: expected lowercase hex digits")
        if self.is_prefix and not MIN_PREFIX_DIGITS <= len(self.hex) < FULL_DIGITS:
            raise ValueError(f"sha256 prefix {self.hex!r}: needs {MIN_PREFIX_DIGITS} to {FULL_DIGITS - 1} hex digits")
        if not self.is_prefix and len(self.hex) != FULL_DIGITS:
            raise ValueError(f"sha256 {self.hex!r}: needs {FULL_DIGITS} hex digits (or mark it as a published prefix)")

    @classmethod
    def full(cls, hex_digest: str) -> ExpectedSha256:
        return cls(hex_digest, is_prefix=False)

    @classmethod
    def prefix(cls, hex_prefix: str) -> ExpectedSha256:
        return cls(hex_prefix, is_prefix=True)

    def matches(self, sha256_hex: str) -> bool:
        return sha256_hex.startswith(self.hex) if self.is_prefix else sha256_hex == self.hex

    def short(self) -> str:
        """For messages: the first 16 digits, with `...` where more exist or are unknown."""
        return self.hex[:16] + "..."


def sha256_of(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; `progress(done, total)` after each."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


__all__ = ["HASH_CHUNK", "ExpectedSha256", "sha256_of"]
