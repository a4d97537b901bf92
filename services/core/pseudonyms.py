"""Keyed hashes: identifiers never appear in Kafka keys, logs or metrics in clear.

A pseudonym is HMAC-SHA256 under a secret its holder keeps (per namespace for the
fan-out's directive keys, per agency for a subscriber's query log): the same value
always gives the same pseudonym to whoever holds the secret, so compaction, joins and
"who asked about this person" still work, while a national ID cannot be read back
from it, nor found by hashing candidate IDs without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_HEX = 32  # 128 bits: collisions are not a concern at any list's size


def pseudonym(secret: bytes, value: str) -> str:
    if len(secret) < 16:
        raise ValueError("a pseudonym secret must be at least 16 bytes")
    return hmac.digest(secret, value.encode(), hashlib.sha256).hex()[:PSEUDONYM_HEX]
