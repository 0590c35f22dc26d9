"""`workers.ordered_map` over a stream: results in order, the stream read a bounded window ahead, and an
error of the stream itself raised where it stands, after the results of the items before it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from defectspectrum.workers import ordered_map


def _double(context: int, item: int) -> int:
    if item < 0:
        raise ValueError(f"item {item}")
    return context * item


def _stream(count: int, fail_at: int | None = None, bad: int | None = None) -> Iterator[int]:
    for item in range(count):
        if item == fail_at:
            raise KeyError("stream")
        yield -1 if item == bad else item


@pytest.mark.parametrize("workers", [1, 3])
def test_ordered_map_takes_a_stream_and_keeps_errors_in_order(workers: int) -> None:
    assert list(ordered_map(_double, _stream(1000), workers, 2)) == [2 * n for n in range(1000)]
    assert list(ordered_map(_double, _stream(1), workers, 2)) == [0]
    assert list(ordered_map(_double, iter(()), workers, 2)) == []
    with pytest.raises(ValueError, match="item -1"):  # item 40's own error comes before the stream's later one
        list(ordered_map(_double, _stream(500, fail_at=300, bad=40), workers, 2))
    done: list[int] = []
    with pytest.raises(KeyError, match="stream"):
        done.extend(ordered_map(_double, _stream(100, fail_at=70), workers, 1))
    assert done == list(range(70))  # every item before the stream's error, in order


@pytest.mark.parametrize("workers", [1, 3])
def test_ordered_map_reads_a_stream_a_bounded_window_ahead(workers: int) -> None:
    pulled = [0]

    def stream() -> Iterator[int]:
        for item in range(3000):
            pulled[0] += 1
            yield item

    ahead = []
    for index, result in enumerate(ordered_map(_double, stream(), workers, 1)):
        assert result == index
        ahead.append(pulled[0] - index)
    # one process: the first two items are looked at to choose; then one at a time. Workers: at most
    # 2 * workers chunks pending, one being handed out, each of at most 64 items
    assert (max(ahead) == 2) if workers == 1 else (64 < max(ahead) <= (2 * workers + 1) * 64)
