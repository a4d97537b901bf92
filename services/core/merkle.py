"""Merkle trees for batch signatures (the shape of RFC 6962 / RFC 9162, section 2.1).

A batch of records is signed once, over the root of a tree whose leaves are the
records' digests; each record then travels with its leaf index, the tree size and
its audit path, and a verifier recomputes the root from those alone — a few
SHA-256 calls — instead of checking one Ed25519 signature per record.

    leaf hash  = SHA-256(0x00 || leaf)
    node hash  = SHA-256(0x01 || left || right)

The two prefixes keep a leaf from ever passing as an inner node (the second
preimage attack on trees that hash both the same way).  The tree is the one RFC
6962 defines (the left subtree holds the largest power of two below the size);
it is built here level by level, a level's odd last node moving up unchanged,
which gives the same tree.  A tree of one leaf has that leaf's hash as its root and
an empty audit path.  There is no tree of no leaves.

Audit paths travel in a compact binary form (:func:`encode_proof`): the leaf
index and the tree size as two big-endian 32-bit integers, then the sibling
hashes from the leaf upwards, 32 bytes each.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

HASH_LEN = 32
MAX_LEAVES = 1 << 20  # far above any batch cap; bounds the path a proof may claim
_PROOF_HEAD = struct.Struct(">II")

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """Every level of the tree over ``leaves`` (each leaf a record digest), kept for the audit paths."""

    __slots__ = ("levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if len(leaves) > MAX_LEAVES:
            raise ValueError(f"a batch holds at most {MAX_LEAVES} leaves")
        level = [_sha256(b"\x00" + leaf).digest() for leaf in leaves]
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            up = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])  # promoted unchanged
            self.levels.append(up)
            level = up

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def path(self, index: int) -> list[bytes]:
        """The sibling hashes from leaf ``index`` up to the root (none where a node was promoted)."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        out = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index >>= 1
        return out


def root_of(leaves: Sequence[bytes]) -> bytes:
    return MerkleTree(leaves).root


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` leads to from ``leaf`` at ``index`` in a tree of ``size``, or None
    when the path cannot belong to that position (RFC 9162, 2.1.3.2)."""
    if not 0 <= index < size or size > MAX_LEAVES:
        return None
    fn, sn = index, size - 1
    r = _sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0 or len(p) != HASH_LEN:
            return None
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify(leaf: bytes, index: int, path: Sequence[bytes], root: bytes, size: int) -> bool:
    """True when ``path`` proves that ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``."""
    return root_from_path(leaf, index, size, path) == root


def encode_proof(index: int, size: int, path: Sequence[bytes]) -> bytes:
    return _PROOF_HEAD.pack(index, size) + b"".join(path)


def decode_proof(data: bytes) -> tuple[int, int, tuple[bytes, ...]]:
    """``(index, size, path)`` from :func:`encode_proof`'s bytes; ValueError when malformed."""
    if len(data) < _PROOF_HEAD.size or (len(data) - _PROOF_HEAD.size) % HASH_LEN:
        raise ValueError("an audit path is 8 bytes of index and size, then 32-byte hashes")
    index, size = _PROOF_HEAD.unpack_from(data)
    hashes = data[_PROOF_HEAD.size :]
    if len(hashes) > HASH_LEN * 32:
        raise ValueError("audit path longer than any tree this format can hold")
    return index, size, tuple(hashes[i : i + HASH_LEN] for i in range(0, len(hashes), HASH_LEN))
