"""Merkle trees for batch signatures: the tree is RFC 6962's, every audit path leads to
the root, and nothing else does."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import merkle

pytestmark = pytest.mark.unit


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962, section 2.1, written as the RFC does (recursively)."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _rfc6962_root(leaves[:k]) + _rfc6962_root(leaves[k:])).digest()


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(f"record {i}".encode()).digest() for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 31, 33, 512])
def test_root_is_rfc6962s_and_every_path_leads_to_it(n: int) -> None:
    leaves = _leaves(n)
    tree = merkle.MerkleTree(leaves)
    assert tree.root == _rfc6962_root(leaves)
    for i, leaf in enumerate(leaves):
        path = tree.path(i)
        assert len(path) <= max(1, (n - 1).bit_length())
        assert merkle.verify(leaf, i, path, tree.root, n)


def test_a_batch_of_one_is_its_leaf_hash_with_an_empty_path() -> None:
    leaf = _leaves(1)[0]
    tree = merkle.MerkleTree([leaf])
    assert tree.root == merkle.leaf_hash(leaf) and tree.path(0) == []
    assert merkle.verify(leaf, 0, [], tree.root, 1)
    assert not merkle.verify(leaf, 0, [], leaf, 1)  # the leaf itself is not the root: it is hashed with 0x00


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        merkle.MerkleTree([])
    assert not merkle.verify(b"\x00" * 32, 0, [], merkle.leaf_hash(b"\x00" * 32), 0)


def test_a_leaf_cannot_pass_as_an_inner_node() -> None:
    """The classic second preimage: present the concatenation of two child hashes as a leaf."""
    leaves = _leaves(4)
    tree = merkle.MerkleTree(leaves)
    left, right = tree.levels[1]
    fake_leaf = left + right  # hashes to the root if leaves and nodes were hashed alike
    assert not merkle.verify(fake_leaf, 0, [], tree.root, 1)
    assert not merkle.verify(fake_leaf, 0, [right], tree.root, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=70, unique=True), st.data())
def test_a_path_for_one_leaf_never_verifies_another(leaves: list[bytes], data: st.DataObject) -> None:
    tree = merkle.MerkleTree(leaves)
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
    path = tree.path(i)
    assert merkle.verify(leaves[i], i, path, tree.root, n)
    assert not merkle.verify(leaves[j], i, path, tree.root, n)  # another leaf in this leaf's place
    assert not merkle.verify(leaves[j], j, path, tree.root, n)  # another leaf, in its own place, with this path
    assert not merkle.verify(leaves[i], j, path, tree.root, n)  # this leaf claimed at another index


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70, unique=True), st.data())
def test_any_single_byte_change_in_leaf_path_root_or_index_is_refused(leaves: list[bytes], data: st.DataObject) -> None:
    """The tree size is left out here: a path for leaf 0 of 3 is also one for leaf 0 of 4, which is
    why the size is part of what the batch signature covers (tests/unit/test_batch_signing.py)."""
    tree = merkle.MerkleTree(leaves)
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.encode_proof(i, n, tree.path(i))
    mask = data.draw(st.integers(1, 255))

    def flip(b: bytes, at: int) -> bytes:
        out = bytearray(b)
        out[at] ^= mask
        return bytes(out)

    def holds(leaf: bytes, proof_bytes: bytes, root: bytes) -> bool:
        try:
            index, size, path = merkle.decode_proof(proof_bytes)
        except ValueError:
            return False
        return merkle.verify(leaf, index, path, root, size)

    assert holds(leaves[i], proof, tree.root)
    assert not holds(flip(leaves[i], data.draw(st.integers(0, 31))), proof, tree.root)
    assert not holds(leaves[i], proof, flip(tree.root, data.draw(st.integers(0, 31))))
    at = data.draw(st.sampled_from([*range(4), *range(8, len(proof))]))  # index bytes and path hashes
    assert not holds(leaves[i], flip(proof, at), tree.root)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.lists(st.binary(min_size=32, max_size=32), max_size=20))
def test_proof_encoding_round_trips(index: int, size: int, path: list[bytes]) -> None:
    assert merkle.decode_proof(merkle.encode_proof(index, size, path)) == (index, size, tuple(path))


@pytest.mark.parametrize("raw", [b"", b"\x00" * 7, b"\x00" * 9, b"\x00" * 8 + b"\x01" * 31, b"\x00" * (8 + 33 * 32)])
def test_malformed_proofs_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="audit path"):
        merkle.decode_proof(raw)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 5), (-1, 4), (0, merkle.MAX_LEAVES + 1)])
def test_positions_outside_the_tree_never_verify(index: int, size: int) -> None:
    leaf = _leaves(1)[0]
    assert merkle.root_from_path(leaf, index, size, []) is None


def test_a_path_too_short_or_too_long_for_its_size_is_refused() -> None:
    leaves = _leaves(8)
    tree = merkle.MerkleTree(leaves)
    path = tree.path(3)
    assert not merkle.verify(leaves[3], 3, path[:-1], tree.root, 8)
    assert not merkle.verify(leaves[3], 3, [*path, path[0]], tree.root, 8)
    assert not merkle.verify(leaves[3], 3, path, tree.root, 9)
