"""Reading Redis replies: bytes from a client made without ``decode_responses``, or str from
one made with it (an app may hand the producers either). Shared by the producers and the
worker, so every reader decodes the same way."""

from __future__ import annotations


def reply_text(value: bytes | str) -> str:
    """``value`` as text: bytes decoded as UTF-8, str as it is."""
    return value.decode() if isinstance(value, bytes) else value
