"""The gateway's token estimate: bytes / 4, rounded up (sessions calibrate it per model)."""

from __future__ import annotations

__all__ = ["estimate_tokens"]


def estimate_tokens(text: str) -> int:
    return (len(text.encode()) + 3) // 4
