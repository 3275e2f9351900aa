"""The ledger's Merkle log on the server side, stored as the hashes of complete subtrees.

A node (level L, index i) is the hash of the complete subtree over leaves [i * 2^L, (i+1) *
2^L); level 0 holds the leaf hashes. Nodes never change once complete, so the log is an
append-only table of them; the right frontier (one node per set bit of the size) is all that
appending needs, and every proof is a handful of nodes fetched in one query, with an
incomplete right-edge subtree folded from its complete parts. The hashing itself is defined
once, in `services.reporting.verifier`, the file auditors run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.reporting.verifier import (
    complete_subtrees,
    consistency_ranges,
    fold,
    inclusion_ranges,
    node_hash,
)

NodeRef = tuple[int, int]  # (level, index)


def frontier_nodes(size: int) -> list[NodeRef]:
    """The nodes of the right frontier of a tree of `size` leaves, largest first."""
    return complete_subtrees(0, size)


def _check_frontier(frontier: Sequence[bytes], size: int) -> None:
    if size < 0 or len(frontier) != size.bit_count():
        raise ValueError(
            f"a tree of {size} leaves has {max(size, 0).bit_count()} frontier nodes,"
            f" not {len(frontier)}"
        )


def append(
    frontier: Sequence[bytes], size: int, leaf_hashes: Sequence[bytes]
) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Append leaves to a tree given its frontier: the nodes completed, as (level, index,
    hash) with the leaves themselves at level 0, and the new frontier."""
    _check_frontier(frontier, size)
    levels = [level for level, _ in frontier_nodes(size)]
    hashes = list(frontier)
    completed: list[tuple[int, int, bytes]] = []
    for leaf in leaf_hashes:
        completed.append((0, size, leaf))
        level, current = 0, leaf
        # Each trailing one bit of the old size is a subtree the new leaf completes.
        while levels and levels[-1] == level:
            levels.pop()
            current = node_hash(hashes.pop(), current)
            level += 1
            completed.append((level, ((size + 1) >> level) - 1, current))
        levels.append(level)
        hashes.append(current)
        size += 1
    return completed, hashes


def root_of_frontier(frontier: Sequence[bytes], size: int) -> bytes:
    """MTH of the whole tree from its frontier."""
    _check_frontier(frontier, size)
    return fold(frontier)


def _nodes_of(ranges: Sequence[tuple[int, int]]) -> list[NodeRef]:
    return [node for lo, hi in ranges for node in complete_subtrees(lo, hi)]


def _proof(ranges: Sequence[tuple[int, int]], nodes: Mapping[NodeRef, bytes]) -> list[bytes]:
    try:
        return [fold([nodes[ref] for ref in complete_subtrees(lo, hi)]) for lo, hi in ranges]
    except KeyError as exc:
        raise ValueError(f"the node {exc.args[0]} is missing") from None


def inclusion_nodes(index: int, size: int) -> list[NodeRef]:
    """The nodes an inclusion proof of leaf `index` in a tree of `size` is made of."""
    return _nodes_of(inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeRef, bytes]) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 from the nodes `inclusion_nodes` names."""
    return _proof(inclusion_ranges(index, size), nodes)


def consistency_nodes(m: int, n: int) -> list[NodeRef]:
    """The nodes a consistency proof from size m to size n is made of."""
    return _nodes_of(consistency_ranges(m, n))


def consistency_proof(m: int, n: int, nodes: Mapping[NodeRef, bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 from the nodes `consistency_nodes` names."""
    return _proof(consistency_ranges(m, n), nodes)


def block_proofs(
    start: int, leaves: Sequence[bytes], size: int, nodes: Mapping[NodeRef, bytes]
) -> list[list[bytes]]:
    """PATH(i, D[size]) of every leaf of a complete, aligned block: `leaves` are leaves
    [start, start + 2^k) (start a multiple of 2^k, start + 2^k <= size), `nodes` those
    `inclusion_nodes(start, size)` names.

    RFC 9162's recursion splits at powers of two, so it reaches such a block as one subtree:
    each leaf's path is its siblings inside the block (computed here, one hash per leaf) and
    then the block's own path, the same for all (the tail of the first leaf's path)."""
    height = len(leaves).bit_length() - 1
    if len(leaves) != 1 << height or start % len(leaves) or start + len(leaves) > size:
        raise ValueError(f"[{start}, {start + len(leaves)}) is no complete aligned block of {size}")
    levels = [list(leaves)]
    for _ in range(height):
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)])
    above = inclusion_proof(start, size, nodes)[height:]
    return [
        [levels[level][(offset >> level) ^ 1] for level in range(height)] + above
        for offset in range(len(leaves))
    ]
