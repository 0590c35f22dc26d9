"""Near-duplicate search over perceptual hashes: exact, without comparing every pair of images.

A pair (i, j) is near when its coarse hashes (one uint64 each) are within `distance` bits and its fine
hashes (`words` uint64 each) within `fine_distance` bits; `near_pairs` finds exactly the pairs a brute
force comparison finds.

How (multi-index hashing, Norouzi et al., CVPR 2012, by the pigeonhole principle): cut the coarse hash
into `distance + 1` disjoint bands of bits; two hashes within `distance` bits differ in at most
`distance` bands, so they agree exactly on at least one. Likewise the fine hash in `fine_distance + 1`
bands. So every near pair shares a key of each of three exact key sets: a coarse band, a fine band, or
the two joined. For each key of the chosen set the hashes are sorted by it; images with equal keys are
the candidates. Each run of equal keys is compared with itself in place, a block of cells at a time
(xor and bit count of both hashes, kept in the cache), so only near pairs become index arrays; a pair
is kept at the first key it shares only, so it is found once.

Cost: one sort of n hashes per key, plus the candidates (about 10 ns each, measured). `NearDuplicateSearch`
plans which set costs least from a sample of the hashes (`estimated_candidates`). Unrelated, varied
images rarely share a key and the search is near linear; on a line of look-alike parts (same product,
same view) unrelated images share bands often and the candidates grow with the square of the line
(measured in `benchmarks/bench_scale.py`). The search stays exact and its memory bounded (blocks)
whatever their number.

`near_groups` joins the pairs into groups (connected components: a chain of near pairs is one group), so
a part photographed n times is one finding, not n(n - 1)/2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain, pairwise
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from defectspectrum.workers import ordered_map

_BLOCK_PAIRS = 1 << 20  # candidate pairs checked at once
_RUN_BLOCK = 1 << 16  # cells (pairs of hashes) compared at once: few enough for the cache (measured)
_SHORT_RUN = 256  # runs of equal keys up to this size (_RUN_BLOCK cells) are stacked, longer ones go alone
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SORT_COST = 20.0  # one row of one key's pass (sort, gathers), in candidate checks: measured ~0.2 us and ~10 ns


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


def band_table(words: np.ndarray, band_list: list[tuple[int, int]]) -> np.ndarray:
    """(n, len(band_list)) band values of (n, w) uint64 `words`: uint32 where every band fits 32 bits."""
    narrow = all(stop - start <= 32 for start, stop in band_list)
    table = np.empty((len(words), len(band_list)), np.uint32 if narrow else np.uint64)
    for column, band in enumerate(band_list):
        table[:, column] = band_values(words, band)
    return table


def joint_keys(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One sortable key per row from two band values: exact where both fit 32 bits, else mixed (a
    collision of mixed keys only adds candidates, which are checked)."""
    if left.dtype == right.dtype == np.uint32:
        return (left.astype(np.uint64) << np.uint64(32)) | right
    key = left.astype(np.uint64) * _MIX + right.astype(np.uint64)
    return key ^ (key >> np.uint64(29))


def runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, sizes) of the runs of equal values in sorted `sorted_keys` (equal rows where it is 2-d)."""
    changed = sorted_keys[1:] != sorted_keys[:-1]
    if changed.ndim > 1:
        changed = changed.any(axis=1)
    starts = np.flatnonzero(np.r_[True, changed])
    return starts, np.diff(np.r_[starts, len(sorted_keys)])


def near_cells(coarse_left: np.ndarray, coarse_right: np.ndarray, fine_left: np.ndarray, fine_right: np.ndarray,
               distance: int, fine_distance: int) -> np.ndarray:
    """Which cells of the broadcast of the `left` hashes against the `right` ones are within `distance`
    coarse bits and, as far as an 8-bit sum tells, `fine_distance` fine bits (the fine hashes a word a
    row: (w, ...)). A sum of 256 or more bits may wrap and pass; none that is near fails. `fine_near`
    confirms."""
    bits = coarse_left ^ coarse_right
    near = popcount(bits) <= distance
    total = np.zeros(bits.shape, np.uint8)
    for left, right in zip(fine_left, fine_right):
        np.bitwise_xor(left, right, out=bits)
        total += popcount(bits)
    near &= total <= fine_distance
    return near


def short_runs_near(coarse: np.ndarray, fine: np.ndarray, starts: np.ndarray, sizes: np.ndarray, distance: int,
                    fine_distance: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Like `long_run_near` for many short runs (`starts`, `sizes`) at once: the runs of one size are
    stacked and each compared with itself, a block of runs at a time."""
    order = np.argsort(sizes, kind="stable")
    run_sizes, cuts = np.unique(sizes[order], return_index=True)
    for size, firsts in zip(run_sizes.tolist(), np.split(starts[order], cuts[1:])):
        count = max(1, _RUN_BLOCK // (size * size))
        for top in range(0, len(firsts), count):
            rows = firsts[top:top + count, None] + np.arange(size)
            hashes, words = coarse[rows], fine[:, rows]
            near = near_cells(hashes[:, :, None], hashes[:, None, :], words[..., None], words[:, :, None, :],
                              distance, fine_distance)
            run, r, c = np.nonzero(near)
            keep = c > r
            yield rows[run[keep], r[keep]], rows[run[keep], c[keep]]


def long_run_near(coarse: np.ndarray, fine: np.ndarray, start: int, size: int, distance: int,
                  fine_distance: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(p, q) positions (p < q) of the pairs inside the run `start:start + size` of sorted `coarse` (n,) and
    `fine` (w, n) hashes that are near (`near_cells`). A block of rows is compared with the rest of the
    run at once (`_RUN_BLOCK` cells, which stay in the cache), so no candidate becomes a position until
    it is near."""
    run, words = coarse[start:start + size], fine[:, start:start + size]
    rows = max(1, _RUN_BLOCK // size)
    for top in range(0, size - 1, rows):
        near = near_cells(run[top:top + rows, None], run[None, top:], words[:, top:top + rows, None],
                          words[:, None, top:], distance, fine_distance)
        r, c = np.nonzero(near)
        keep = c > r
        yield start + top + r[keep], start + top + c[keep]


def fine_near(words: np.ndarray, p: np.ndarray, q: np.ndarray, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (p, q) whose fine hashes, `words` (w, n) uint64 (a row a word), are within `distance` bits.
    The bits are summed a word at a time, and the pairs already too far after half the words are dropped
    before the rest are read (on a look-alike line most candidates are)."""
    total = np.zeros(len(p), np.uint16)
    for index, row in enumerate(words):
        total += popcount(row[p] ^ row[q])
        if index + 1 == len(words) // 2:
            keep = total <= distance
            p, q, total = p[keep], q[keep], total[keep]
    keep = total <= distance
    return p[keep], q[keep]


def batched_pairs(blocks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (p, q) `blocks` joined into blocks of at least `_BLOCK_PAIRS` pairs (the last may be smaller)."""
    waiting: list[tuple[np.ndarray, np.ndarray]] = []
    size = 0
    for block in blocks:
        waiting.append(block)
        size += len(block[0])
        if size >= _BLOCK_PAIRS:
            yield np.concatenate([p for p, _ in waiting]), np.concatenate([q for _, q in waiting])
            waiting, size = [], 0
    if size:
        yield np.concatenate([p for p, _ in waiting]), np.concatenate([q for _, q in waiting])


Key = tuple[int | None, int | None]  # (coarse band, fine band); None: that hash takes no part


def schemes(coarse_bands: int, fine_bands: int) -> dict[str, list[Key]]:
    """The three exact key sets: a coarse band, a fine band, or both (every near pair shares a key of each)."""
    return {"coarse": [(a, None) for a in range(coarse_bands)],
            "fine": [(None, b) for b in range(fine_bands)],
            "joint": [(a, b) for a in range(coarse_bands) for b in range(fine_bands)]}


def run_pair_count(keys: np.ndarray) -> int:
    """The number of pairs of rows with equal `keys` (the candidates a key gives)."""
    _, counts = np.unique(keys, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


class NearDuplicateSearch:
    """The search over n images' hashes: `coarse` (n,) and `fine` (n, w) uint64, near within `distance` and
    `fine_distance` (default 4 x `distance`) bits. Building it plans the search (`keys`,
    `estimated_candidates`, a second or so); `pair_blocks` runs it."""

    def __init__(self, coarse: np.ndarray, fine: np.ndarray, distance: int, fine_distance: int | None = None,
                 sample: int = 4096) -> None:
        self.coarse = np.ascontiguousarray(coarse, np.uint64).reshape(-1)
        self.fine = np.ascontiguousarray(fine, np.uint64).reshape(len(self.coarse), -1)
        self.distance = distance
        self.fine_distance = 4 * distance if fine_distance is None else fine_distance
        n, fine_bits = len(self.coarse), 64 * self.fine.shape[1]
        # a distance that reaches the hash's length rules nothing out: one band of no bits, always equal
        self.coarse_table = band_table(self.coarse[:, None], bands(64, distance + 1)) if distance < 64 \
            else np.zeros((n, 1), np.uint32)
        self.fine_table = band_table(self.fine, bands(fine_bits, self.fine_distance + 1)) \
            if self.fine_distance < fine_bits else np.zeros((n, 1), np.uint32)
        self.keys, self.estimated_candidates = self._plan(sample) if n > 1 else ([], 0)

    def key_values(self, key: Key, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The values of `key` for `rows` (every hash by default): what the hashes are sorted by."""
        a, b = key
        if b is None:
            assert a is not None
            return self.coarse_table[rows, a]
        if a is None:
            return self.fine_table[rows, b]
        return joint_keys(self.coarse_table[rows, a], self.fine_table[rows, b])

    def _plan(self, sample: int) -> tuple[list[Key], int]:
        """The key set that costs least: keys x n sorts plus the candidates they give, estimated on a
        random sample of rows (scaled by (n / sample)^2). Every set is exact; the choice is only speed."""
        n = len(self.coarse)
        rows = np.sort(np.random.default_rng(0).choice(n, min(n, sample), replace=False))
        scale = n * (n - 1) / max(len(rows) * (len(rows) - 1), 1)
        best: tuple[float, list[Key], int] | None = None
        for keys in schemes(self.coarse_table.shape[1], self.fine_table.shape[1]).values():
            candidates = round(scale * sum(run_pair_count(self.key_values(key, rows)) for key in keys))
            cost = len(keys) * n * _SORT_COST + candidates
            if best is None or cost < best[0]:
                best = (cost, keys, candidates)
        assert best is not None
        return best[1], best[2]

    def _confirm(self, key: Key, order: np.ndarray, sorted_fine: np.ndarray, p: np.ndarray, q: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The pairs (positions in `order`) within both distances that share `key` as the first key of the
        set they share, as index pairs: the fine distance exactly (`fine_near`), and the first key."""
        p, q = fine_near(sorted_fine, p, q, self.fine_distance)
        i, j = order[p], order[q]
        for table, column in ((self.coarse_table, key[0]), (self.fine_table, key[1])):
            if column is not None:
                same = table[i, :column + 1] == table[j, :column + 1]
                keep = same[:, column] & ~same[:, :column].any(axis=1)
                i, j = i[keep], j[keep]
        return np.minimum(i, j), np.maximum(i, j)

    def pair_blocks(self, progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None, workers: int = 1
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every near pair once, as blocks of (i, j) int64 arrays (i < j); `progress` wraps the keys. With
        `workers` > 1 the keys are searched in worker processes (one block a key comes back)."""
        if workers > 1 and len(self.keys) > 1:
            results = ordered_map(_pairs_of_key, self.keys, workers, self)
            yield from (progress(results) if progress else results)
            return
        for key in progress(self.keys) if progress else self.keys:
            yield from self.key_pair_blocks(key)

    def key_pair_blocks(self, key: Key) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The near pairs whose first shared key of the plan is `key`, in blocks. The hashes are sorted by
        the key; each run of equal keys is compared with itself in place (`short_runs_near`,
        `long_run_near`), and the near pairs are confirmed (`_confirm`)."""
        keys = self.key_values(key)
        order = np.argsort(keys)
        sorted_coarse, sorted_fine = self.coarse[order], np.ascontiguousarray(self.fine[order].T)
        starts, sizes = runs(keys[order])
        short, long = (sizes > 1) & (sizes <= _SHORT_RUN), sizes > _SHORT_RUN
        limits = self.distance, self.fine_distance
        near = chain(short_runs_near(sorted_coarse, sorted_fine, starts[short], sizes[short], *limits),
                     (block for start, size in zip(starts[long].tolist(), sizes[long].tolist())
                      for block in long_run_near(sorted_coarse, sorted_fine, start, size, *limits)))
        for p, q in batched_pairs(near):
            yield self._confirm(key, order, sorted_fine, p, q)

    def groups(self, progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
               workers: int = 1) -> list[np.ndarray]:
        """The near-duplicate groups (`near_groups` of every near pair)."""
        return near_groups(len(self.coarse), self.pair_blocks(progress, workers))


def _pairs_of_key(search: NearDuplicateSearch, key: Key) -> tuple[np.ndarray, np.ndarray]:
    """One key's near pairs in one block (in a worker process)."""
    blocks = list(search.key_pair_blocks(key))
    if not blocks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([i for i, _ in blocks]), np.concatenate([j for _, j in blocks])


def near_pairs(coarse: np.ndarray, fine: np.ndarray, distance: int,
               fine_distance: int | None = None) -> Iterator[tuple[int, int]]:
    """Each index pair (i < j) within `distance` bits on `coarse` (n uint64) and `fine_distance` (default
    4 x `distance`) on `fine` ((n, w) uint64), once; see the module's rule."""
    for first, second in NearDuplicateSearch(coarse, fine, distance, fine_distance).pair_blocks():
        yield from zip(first.tolist(), second.tolist())


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
