"""Near-duplicate search over perceptual hashes: exact, without comparing every pair of images.

A pair (i, j) is near when its coarse hashes (one uint64 each) are within `distance` bits and its fine
hashes (`words` uint64 each) within `fine_distance` bits; `near_pairs` finds exactly the pairs a brute
force comparison finds.

How (multi-index hashing, Norouzi et al., CVPR 2012, by the pigeonhole principle): cut the coarse hash
into `distance + 1` disjoint bands of bits; two hashes within `distance` bits differ in at most
`distance` bands, so they agree exactly on at least one. Likewise the fine hash in `fine_distance + 1`
bands. A near pair therefore shares at least one joint key (coarse band a, fine band b). For each joint
key the hashes are sorted by it; images with equal keys are the candidates, checked on both full hashes
in numpy, and a pair is kept at the first key it shares only, so it is found once.

Cost: one sort of n keys per joint key ((d + 1)(4d + 1) = 85 at the default d = 4), plus the candidates.
Unrelated images rarely share a 28-bit joint key, so on typical data the candidates are few and the
search is near linear: seconds at a million hashes. On a line of near-identical parts (aligned, same
product) many unrelated pairs share keys; the search stays exact and its memory stays bounded (the
candidates are checked in blocks), but its time grows with those candidates.

`near_groups` joins the pairs into groups (connected components: a chain of near pairs is one group), so
a part photographed n times is one finding, not n(n - 1)/2.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

_BLOCK_PAIRS = 1 << 21  # candidate pairs checked at once
_SMALL_RUN = 32  # runs of equal keys up to this size are paired by offsets, bigger ones blockwise
_MIX = np.uint64(0x9E3779B97F4A7C15)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return table[as_bytes].sum(axis=-1, dtype=np.uint8)


def bands(bits: int, count: int) -> list[tuple[int, int]]:
    """`count` disjoint (start, stop) bit ranges covering `bits` bits, as even as possible."""
    count = max(1, min(count, bits))
    edges = np.linspace(0, bits, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(edges)]


def band_values(words: np.ndarray, band: tuple[int, int]) -> np.ndarray:
    """The bits `band` of each row of (n, w) uint64 `words` (bit k of word i is bit 64 i + k), hashed
    to one uint64 per row where the band is wider than 64 bits."""
    start, stop = band
    out = np.zeros(len(words), np.uint64)
    for index in range(start // 64, (stop - 1) // 64 + 1):
        low, high = max(start, 64 * index) - 64 * index, min(stop, 64 * index + 64) - 64 * index
        part = words[:, index] >> np.uint64(low)
        if high - low < 64:
            part = part & np.uint64((1 << (high - low)) - 1)
        out = (out * _MIX) ^ part if stop - start > 64 else out | (part << np.uint64(low + 64 * index - start))
    return out


def _mix(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One uint64 key from two (collisions only add candidates, which are checked)."""
    with np.errstate(over="ignore"):
        key = left * _MIX + right
    return key ^ (key >> np.uint64(29))


def _run_pairs(order: np.ndarray, keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(i, j) index arrays of every pair of rows with equal `keys`, `order` being their argsort; in blocks."""
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    small = (sizes > 1) & (sizes <= _SMALL_RUN)
    if small.any():  # each position paired with the next t positions of its run, t = 1, 2, ...
        ends = np.repeat(starts + sizes, sizes)
        active = np.flatnonzero(np.repeat(small, sizes) & (np.arange(len(keys)) + 1 < ends))
        offset = 1
        while active.size:
            yield order[active], order[active + offset]
            offset += 1
            active = active[active + offset < ends[active]]
    for start, size in zip(starts[sizes > _SMALL_RUN], sizes[sizes > _SMALL_RUN]):
        members = order[start:start + size]
        rows = max(1, _BLOCK_PAIRS // int(size))
        for top in range(0, int(size) - 1, rows):
            left = np.arange(top, min(top + rows, int(size)))
            i, j = np.nonzero(left[:, None] < np.arange(int(size))[None, :])
            yield members[left[i]], members[j]


def near_pairs(coarse: np.ndarray, fine: np.ndarray, distance: int,
               fine_distance: int | None = None) -> Iterator[tuple[int, int]]:
    """Each index pair (i < j) within `distance` bits on `coarse` (n uint64) and `fine_distance` (default
    4 x `distance`) on `fine` ((n, w) uint64), once; see the module's rule."""
    for first, second in near_pair_blocks(coarse, fine, distance, fine_distance):
        yield from zip(first.tolist(), second.tolist())


def near_pair_blocks(coarse: np.ndarray, fine: np.ndarray, distance: int,
                     fine_distance: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`near_pairs` as blocks of (i, j) int64 arrays, for callers that keep them in numpy."""
    coarse = np.ascontiguousarray(coarse, np.uint64).reshape(-1, 1)
    fine = np.ascontiguousarray(fine, np.uint64).reshape(len(coarse), -1)
    fine_distance = 4 * distance if fine_distance is None else fine_distance
    if len(coarse) < 2:
        return
    coarse_bands = bands(64, distance + 1) if distance < 64 else [(0, 0)]
    fine_bands = bands(64 * fine.shape[1], fine_distance + 1) if fine_distance < 64 * fine.shape[1] else [(0, 0)]

    def values(words: np.ndarray, band: tuple[int, int]) -> np.ndarray:
        return np.zeros(len(words), np.uint64) if band == (0, 0) else band_values(words, band)

    def earlier_band_agrees(words: np.ndarray, found: list[tuple[int, int]], before: int,
                            i: np.ndarray, j: np.ndarray) -> np.ndarray:
        agree = np.zeros(len(i), bool)
        for band in found[:before]:
            agree |= values(words[i], band) == values(words[j], band)
        return agree

    for a, coarse_band in enumerate(coarse_bands):
        coarse_key = values(coarse, coarse_band)
        for b, fine_band in enumerate(fine_bands):
            keys = _mix(coarse_key, values(fine, fine_band))
            for i, j in _run_pairs(np.argsort(keys, kind="stable"), keys):
                close = popcount(coarse[i, 0] ^ coarse[j, 0]) <= distance
                i, j = i[close], j[close]
                close = popcount(fine[i] ^ fine[j]).sum(axis=1, dtype=np.int64) <= fine_distance
                i, j = i[close], j[close]
                # the joint key (a, b) really shared (not a mixing collision), and no earlier one
                first = ((values(coarse[i], coarse_band) == values(coarse[j], coarse_band))
                         & (values(fine[i], fine_band) == values(fine[j], fine_band))
                         & ~earlier_band_agrees(coarse, coarse_bands, a, i, j)
                         & ~earlier_band_agrees(fine, fine_bands, b, i, j))
                if first.any():
                    i, j = i[first], j[first]
                    yield np.minimum(i, j), np.maximum(i, j)


def near_groups(count: int, pair_blocks: Iterator[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """The groups (sorted index arrays, two or more members, ordered by first member) that the pairs join
    among `count` items. Memory stays O(count + a block): the pairs are folded into a spanning forest
    (each member linked to its group's smallest) whenever `_BLOCK_PAIRS` of them have come."""
    forest: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    waiting: list[tuple[np.ndarray, np.ndarray]] = []

    def fold() -> tuple[np.ndarray, np.ndarray]:
        i = np.concatenate([forest[0], *(block[0] for block in waiting)])
        j = np.concatenate([forest[1], *(block[1] for block in waiting)])
        waiting.clear()
        graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(count, count))
        _, labels = connected_components(graph, directed=False)
        roots = np.full(labels.max() + 1, count, np.int64)
        np.minimum.at(roots, labels, np.arange(count))
        linked = np.flatnonzero(roots[labels] != np.arange(count))
        return roots[labels[linked]], linked

    for block in pair_blocks:
        waiting.append(block)
        if sum(len(i) for i, _ in waiting) >= _BLOCK_PAIRS:
            forest = fold()
    if waiting:
        forest = fold()
    roots, members = forest
    if not len(members):
        return []
    order = np.lexsort((members, roots))
    roots, members = roots[order], members[order]
    cuts = np.flatnonzero(np.diff(roots)) + 1
    return [np.r_[group_roots[0], group] for group_roots, group in zip(np.split(roots, cuts), np.split(members, cuts))]
