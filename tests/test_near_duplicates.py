"""The multi-index near-duplicate search finds exactly brute force's pairs, once each; groups join chains."""

from __future__ import annotations

import numpy as np
import pytest

from defectspectrum.data import near_duplicates
from defectspectrum.data.near_duplicates import (
    NearDuplicateSearch,
    band_values,
    bands,
    near_groups,
    near_pairs,
    popcount,
    schemes,
)


def brute_force(coarse: np.ndarray, fine: np.ndarray, distance: int, fine_distance: int) -> set[tuple[int, int]]:
    found = set()
    for i in range(len(coarse)):
        close = (popcount(coarse[i] ^ coarse[i + 1:]) <= distance) & \
            (popcount(fine[i] ^ fine[i + 1:]).sum(axis=1) <= fine_distance)
        found.update((i, i + 1 + int(k)) for k in np.flatnonzero(close))
    return found


def flip_bits(rng: np.random.Generator, words: np.ndarray, count: int) -> np.ndarray:
    """`words` ((w,) uint64) with exactly `count` distinct bits flipped."""
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")
    chosen = rng.choice(bits.size, count, replace=False)
    bits[chosen] ^= 1
    return np.packbits(bits, bitorder="little").view(np.uint64)


def clustered(seed: int, n: int = 600, centres: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Hashes around a few centres (a product line), so many pairs are close on one or both hashes."""
    rng = np.random.default_rng(seed)
    coarse_centres = rng.integers(0, 2**64, centres, dtype=np.uint64)
    fine_centres = rng.integers(0, 2**64, (centres, 4), dtype=np.uint64)
    labels = rng.integers(0, centres, n)
    coarse = np.array([flip_bits(rng, coarse_centres[k:k + 1], int(rng.integers(0, 4)))[0] for k in labels])
    fine = np.stack([flip_bits(rng, fine_centres[k], int(rng.integers(0, 12))) for k in labels])
    return coarse, fine


def at_the_limit(distance: int, fine_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes plus pairs exactly at both limits and one bit beyond either."""
    rng = np.random.default_rng(distance)
    coarse = rng.integers(0, 2**64, 200, dtype=np.uint64)
    fine = rng.integers(0, 2**64, (200, 4), dtype=np.uint64)
    for index, (extra_coarse, extra_fine) in enumerate([(0, 0), (1, 0), (0, 1), (0, 0)]):
        base = 10 * index
        coarse[base + 1] = flip_bits(rng, coarse[base:base + 1], min(distance + extra_coarse, 64))[0]
        fine[base + 1] = flip_bits(rng, fine[base], fine_distance + extra_fine)
    return coarse, fine


@pytest.mark.parametrize("distance", [0, 1, 4, 7])
def test_pairs_at_the_limit_are_found_and_one_bit_more_is_not(distance: int) -> None:
    coarse, fine = at_the_limit(distance, 4 * distance)
    found = set(near_pairs(coarse, fine, distance))
    assert found == brute_force(coarse, fine, distance, 4 * distance)
    assert {(0, 1), (30, 31)} <= found
    assert not {(10, 11), (20, 21)} & found


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("distance", [0, 2, 4])
def test_clustered_hashes_match_brute_force_once_each(seed: int, distance: int) -> None:
    coarse, fine = clustered(seed)
    listed = list(near_pairs(coarse, fine, distance))
    assert len(listed) == len(set(listed))
    assert set(listed) == brute_force(coarse, fine, distance, 4 * distance)
    if distance == 4:
        assert len(listed) > 100  # the case is not vacuous


def test_big_runs_and_small_blocks_give_the_same_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    coarse, fine = clustered(2, n=400, centres=2)
    expected = brute_force(coarse, fine, 4, 16)
    monkeypatch.setattr(near_duplicates, "_SHORT_RUN", 2)  # nearly every run takes the blockwise path
    monkeypatch.setattr(near_duplicates, "_BLOCK_PAIRS", 64)
    monkeypatch.setattr(near_duplicates, "_RUN_BLOCK", 64)  # a long run is compared a few rows at a time
    assert set(near_pairs(coarse, fine, 4)) == expected


@pytest.mark.parametrize("fine_distance", [16, 254, 255, 256])
def test_a_long_run_keeps_only_near_pairs_when_the_fine_bit_sum_wraps(fine_distance: int) -> None:
    """In a long run the fine bits are summed in 8 bits: 256 differing bits wrap to 0. The pairs that
    far apart are not near, and pairs up to the limit are all found."""
    rng = np.random.default_rng(3)
    n = 80  # one long run: every coarse hash equal
    fine = rng.integers(0, 2**64, (n, 4), dtype=np.uint64)
    fine[n // 2:] = ~fine[: n // 2]  # each of these is 256 bits from its partner
    coarse = np.zeros(n, np.uint64)
    found = set(near_pairs(coarse, fine, 4, fine_distance))
    assert found == brute_force(coarse, fine, 4, fine_distance)
    assert ((0, n // 2) in found) == (fine_distance >= 256)


@pytest.mark.parametrize("scheme", ["coarse", "fine", "joint"])
def test_every_key_set_is_exact(scheme: str) -> None:
    coarse, fine = clustered(5, n=500, centres=4)
    search = NearDuplicateSearch(coarse, fine, 4)
    search.keys = schemes(5, 17)[scheme]
    listed = [pair for i, j in search.pair_blocks() for pair in zip(i.tolist(), j.tolist())]
    assert len(listed) == len(set(listed))
    assert set(listed) == brute_force(coarse, fine, 4, 16)


def test_the_plan_takes_the_hash_that_tells_images_apart() -> None:
    rng = np.random.default_rng(6)
    alike = np.full(3000, 12345, np.uint64)  # one product: every coarse hash equal
    scattered = rng.integers(0, 2**64, (3000, 4), dtype=np.uint64)
    assert NearDuplicateSearch(alike, scattered, 4).keys == schemes(5, 17)["fine"]
    assert NearDuplicateSearch(scattered[:, 0], np.zeros((3000, 4), np.uint64), 4).keys == schemes(5, 17)["coarse"]


def test_the_candidate_estimate_is_near_the_count() -> None:
    coarse, fine = clustered(7, n=6000, centres=3)
    search = NearDuplicateSearch(coarse, fine, 4, sample=2000)
    counted = sum(near_duplicates.run_pair_count(search.key_values(key)) for key in search.keys)
    assert 0.7 * counted <= search.estimated_candidates <= 1.3 * counted


def test_without_numpy_bitwise_count(monkeypatch: pytest.MonkeyPatch) -> None:
    coarse, fine = clustered(3, n=300)
    expected = brute_force(coarse, fine, 4, 16)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert set(near_pairs(coarse, fine, 4)) == expected


def test_the_fine_hash_must_agree_too() -> None:
    coarse = np.array([5, 5, 7], dtype=np.uint64)
    fine = np.zeros((3, 4), np.uint64)
    fine[1] = np.uint64(2**40 - 1)  # 40 bits per word away from item 0
    assert set(near_pairs(coarse, fine, 4)) == {(0, 2)}


def test_bands_cover_every_bit_once_and_read_them() -> None:
    assert bands(64, 5) == [(0, 13), (13, 26), (26, 38), (38, 51), (51, 64)]
    assert bands(8, 20) == [(k, k + 1) for k in range(8)]  # never an empty band
    words = np.array([[0xF0, 0b101]], dtype=np.uint64)  # bit 64 and 66 set in the second word
    assert band_values(words, (4, 8))[0] == 0xF
    assert band_values(words, (60, 68))[0] == 0b1010000  # spans the two words
    wide = band_values(words, (0, 128))  # wider than one word: hashed, equal rows equal
    assert wide[0] == band_values(words.copy(), (0, 128))[0] != band_values(words[:, ::-1].copy(), (0, 128))[0]


def test_groups_join_chains_and_folding_in_blocks_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [(np.array([0, 3]), np.array([1, 4])), (np.array([1]), np.array([2])), (np.array([7]), np.array([4]))]
    expected = [[0, 1, 2], [3, 4, 7]]
    assert [g.tolist() for g in near_groups(9, iter(blocks))] == expected
    monkeypatch.setattr(near_duplicates, "_BLOCK_PAIRS", 1)  # fold after every block
    assert [g.tolist() for g in near_groups(9, iter(blocks))] == expected
    assert near_groups(5, iter([])) == []


def test_groups_of_clustered_hashes_are_the_components_of_brute_force() -> None:
    coarse, fine = clustered(4, n=300, centres=30)
    pairs = brute_force(coarse, fine, 4, 16)
    parent = list(range(len(coarse)))

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for i, j in sorted(pairs):
        parent[root(j)] = root(i)
    components: dict[int, list[int]] = {}
    for k in range(len(coarse)):
        components.setdefault(root(k), []).append(k)
    expected = sorted(sorted(c) for c in components.values() if len(c) > 1)
    assert [g.tolist() for g in NearDuplicateSearch(coarse, fine, 4).groups()] == expected
    assert len(expected) > 3


def test_the_hashes_are_imagehash_phash_from_one_resize() -> None:
    import imagehash
    from PIL import Image

    from defectspectrum.data.validate import perceptual_hashes

    rng = np.random.default_rng(8)
    close = []
    for seed in range(12):
        grey = Image.fromarray(cv2_smooth(rng, seed))
        coarse, fine = perceptual_hashes(grey)
        assert fine == np.packbits(imagehash.phash(grey, hash_size=16).hash.ravel()).tobytes()
        reference = np.packbits(imagehash.phash(grey).hash.ravel())
        close.append(int(popcount(np.frombuffer(coarse, np.uint64) ^ reference.view(np.uint64))[0]))
    assert max(close) <= 4 and np.mean(close) <= 2


def cv2_smooth(rng: np.random.Generator, seed: int) -> np.ndarray:
    """A smooth random grey image of an odd size (structure at several scales)."""
    import cv2

    size = (97 + 13 * seed, 131 + 7 * seed)
    noise = rng.random(size).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2 + seed % 5)
    return ((smooth - smooth.min()) / (np.ptp(smooth) + 1e-9) * 255).astype(np.uint8)


def test_worker_processes_find_the_same_pairs() -> None:
    coarse, fine = clustered(9, n=800, centres=5)
    search = NearDuplicateSearch(coarse, fine, 4)
    alone = {pair for i, j in search.pair_blocks() for pair in zip(i.tolist(), j.tolist())}
    shared = [pair for i, j in search.pair_blocks(workers=2) for pair in zip(i.tolist(), j.tolist())]
    assert len(shared) == len(set(shared)) and set(shared) == alone == brute_force(coarse, fine, 4, 16)
    assert [g.tolist() for g in search.groups(workers=2)] == [g.tolist() for g in search.groups()]
