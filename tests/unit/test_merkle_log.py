"""The ledger's Merkle log: RFC 9162 trees, proofs and their verification, and the server's
node storage (complete subtrees appended in batches, proofs assembled from them)."""

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reporting.domain import merkle
from services.reporting.verifier import (
    VerificationError,
    leaf_hash,
    node_hash,
    root_of,
    roots_at,
    verify_consistency,
    verify_inclusion,
)

BIG = 1_000_000


# --- a naive reference, written from RFC 9162 §2.1 as it reads, over synthetic leaves -------


def entry(i: int) -> bytes:
    return b"event %d" % i


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) (the cache only spares repeating work across examples)."""
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entry(lo)).digest()
    k = split(n)
    return hashlib.sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()


def path(m: int, lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*path(m, lo, lo + k), mth(lo + k, hi)]
    return [*path(m - k, lo + k, hi), mth(lo, lo + k)]


def subproof(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if whole else [mth(lo, hi)]
    k = split(n)
    if m <= k:
        return [*subproof(m, lo, lo + k, whole), mth(lo + k, hi)]
    return [*subproof(m - k, lo + k, hi, False), mth(lo, lo + k)]


class NodesOf:
    """The node table of a tree of synthetic leaves: each complete subtree's MTH."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __getitem__(self, ref: tuple[int, int]) -> bytes:
        level, index = ref
        lo, hi = index << level, (index + 1) << level
        assert hi <= self.size, f"{ref} is not a complete subtree of a tree of {self.size}"
        return mth(lo, hi)


def fetched(refs, size):
    nodes = NodesOf(size)
    return {ref: nodes[ref] for ref in refs}


# --- the tree --------------------------------------------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated_sha256():
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


def test_the_empty_tree_has_the_hash_of_nothing_as_root():
    assert root_of([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(65))
def test_root_of_is_the_rfc_9162_tree_hash(size):
    assert root_of([leaf_hash(entry(i)) for i in range(size)]) == mth(0, size)


# --- proofs for every (index, size) up to 64 ------------------------------------------------


@pytest.mark.parametrize("size", range(1, 65))
def test_inclusion_proofs_are_rfc_9162_paths_and_verify(size):
    for index in range(size):
        refs = merkle.inclusion_nodes(index, size)
        proof = merkle.inclusion_proof(index, size, fetched(refs, size))
        assert proof == path(index, 0, size)
        verify_inclusion(leaf_hash(entry(index)), index, size, proof, mth(0, size))


@pytest.mark.parametrize("size", range(1, 65))
def test_consistency_proofs_are_rfc_9162_proofs_and_verify(size):
    for m in range(1, size + 1):
        refs = merkle.consistency_nodes(m, size)
        proof = merkle.consistency_proof(m, size, fetched(refs, size))
        assert proof == subproof(m, 0, size, True)
        verify_consistency(m, size, proof, mth(0, m), mth(0, size))


# --- random ones up to a million leaves ------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, BIG).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_inclusion_proofs_in_big_trees_equal_the_reference(case):
    index, size = case
    refs = merkle.inclusion_nodes(index, size)
    assert len(refs) == len(set(refs))
    proof = merkle.inclusion_proof(index, size, fetched(refs, size))
    assert proof == path(index, 0, size)
    verify_inclusion(leaf_hash(entry(index)), index, size, proof, mth(0, size))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, BIG).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_in_big_trees_equal_the_reference(case):
    m, n = case
    proof = merkle.consistency_proof(m, n, fetched(merkle.consistency_nodes(m, n), n))
    assert proof == subproof(m, 0, n, True)
    verify_consistency(m, n, proof, mth(0, m), mth(0, n))


# --- verification refuses what is wrong ------------------------------------------------------


def flipped(proof, n):
    return [bytes([p[0] ^ 1]) + p[1:] if i == n else p for i, p in enumerate(proof)]


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (5, 6), (6, 7), (12, 33), (63, 64)])
def test_an_inclusion_proof_fails_for_any_other_leaf_index_root_or_path(index, size):
    # (A proof can hold for several tree sizes with one root: the signed checkpoint binds the
    # size to the root, not the proof.)
    proof = path(index, 0, size)
    root = mth(0, size)
    leaf = leaf_hash(entry(index))
    wrong = [
        (leaf_hash(b"other"), index, size, proof, root),
        (leaf, index, size, proof, mth(0, size - 1)),
        (leaf, index + 1, size, proof, root),
        (leaf, index, size, [*proof, root], root),
        *([(leaf, index, size, proof[:-1], root)] if proof else []),
        (leaf, size, size, proof, root),
    ] + [(leaf, index, size, flipped(proof, n), root) for n in range(len(proof))]
    for case in wrong:
        with pytest.raises(VerificationError) as caught:
            verify_inclusion(*case)
        assert caught.value.index == case[1]


@pytest.mark.parametrize(("m", "n"), [(1, 2), (3, 7), (4, 8), (6, 8), (7, 64), (32, 33)])
def test_a_consistency_proof_fails_for_other_first_sizes_roots_or_paths(m, n):
    proof = subproof(m, 0, n, True)
    r1, r2 = mth(0, m), mth(0, n)
    wrong = [
        (m, n, proof, mth(0, m + 1), r2),
        (m, n, proof, r1, mth(0, n + 1)),
        (m + 1, n, proof, r1, r2) if m + 1 < n else (m, n, [], r1, r2),
        (m, n, proof[:-1], r1, r2),
        (m, n, [*proof, r1], r1, r2),
        (n + 1, n, proof, r1, r2),
    ] + [(m, n, flipped(proof, i), r1, r2) for i in range(len(proof))]
    for case in wrong:
        with pytest.raises(VerificationError):
            verify_consistency(*case)


def test_equal_sizes_are_consistent_only_with_equal_roots_and_no_proof():
    verify_consistency(5, 5, [], mth(0, 5), mth(0, 5))
    verify_consistency(0, 5, [], mth(0, 0), mth(0, 5))
    for case in [(5, 5, [], mth(0, 4), mth(0, 5)), (5, 5, [mth(0, 5)], mth(0, 5), mth(0, 5))]:
        with pytest.raises(VerificationError):
            verify_consistency(*case)


# --- appending in batches --------------------------------------------------------------------


def test_the_frontier_of_a_size_is_one_node_per_set_bit_largest_first():
    assert merkle.frontier_nodes(0) == []
    assert merkle.frontier_nodes(13) == [(3, 0), (2, 2), (0, 12)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=12))
def test_appending_in_any_batches_gives_every_node_once_and_the_root(batches):
    nodes: dict[tuple[int, int], bytes] = {}
    frontier: list[bytes] = []
    size = 0
    for batch in batches:
        leaves = [leaf_hash(entry(size + i)) for i in range(batch)]
        completed, frontier = merkle.append(frontier, size, leaves)
        for level, index, digest in completed:
            assert (level, index) not in nodes
            nodes[(level, index)] = digest
        size += batch
        assert merkle.root_of_frontier(frontier, size) == mth(0, size)
        assert frontier == [nodes[ref] for ref in merkle.frontier_nodes(size)]
    complete = {
        (level, index) for level in range(size.bit_length()) for index in range(size >> level)
    }
    assert set(nodes) == complete
    assert all(digest == NodesOf(size)[ref] for ref, digest in nodes.items())


def test_a_frontier_that_does_not_fit_the_size_is_refused():
    with pytest.raises(ValueError):
        merkle.append([b"x" * 32], 3, [])
    with pytest.raises(ValueError):
        merkle.root_of_frontier([], 1)


def test_a_proof_needing_a_node_not_fetched_says_which():
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        merkle.inclusion_proof(0, 2, {})


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(0, 40), st.integers(0, 70))
def test_proofs_of_an_aligned_block_are_the_rfc_9162_paths(height, block, extra):
    width = 1 << height
    start = block * width
    size = start + width + extra
    leaves = [mth(i, i + 1) for i in range(start, start + width)]
    proofs = merkle.block_proofs(
        start, leaves, size, fetched(merkle.inclusion_nodes(start, size), size)
    )
    assert proofs == [path(i, 0, size) for i in range(start, start + width)]


def test_a_block_that_is_not_complete_and_aligned_is_refused():
    leaves = [mth(i, i + 1) for i in range(4)]
    for start, size in ((2, 8), (4, 7)):
        with pytest.raises(ValueError):
            merkle.block_proofs(start, leaves, size, {})


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 70), st.sets(st.integers(0, 80), max_size=6))
def test_roots_at_gives_the_root_of_every_prefix_asked_for_that_exists(count, sizes):
    leaves = [mth(i, i + 1) for i in range(count)]
    assert roots_at(leaves, sizes) == {n: mth(0, n) for n in sizes if n <= count}
