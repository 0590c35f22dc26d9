"""`data convert` streams: samples are converted as the reader lists them, each index line is written
as its sample is done, and what stays in memory is a few small strings a sample; the index written is
the one `DSFolder.save` writes, and ids that differ in case only are still refused."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from defectspectrum.data import convert as convert_module
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import convert, convert_counted
from defectspectrum.data.dsfolder import DATASET_FILE, SAMPLES_FILE, DSFolder
from defectspectrum.data.formats.base import IndexMask, Reader, SourceSample
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import save_png


class CountingReader(Reader):
    """`count` samples of one tiny image (the odd ones with a defect pixel), listed lazily; before it
    lists sample k it notes how many index lines the conversion has written so far."""

    name = "counting"
    summary = "test reader"

    def __init__(self, root: Path, count: int, dst: Path, objects: tuple[str, ...] = ("part",),
                 fail_at: int | None = None, watch: bool = True) -> None:
        super().__init__(root)
        self.count, self.dst, self.objects, self.fail_at, self.watch = count, dst, objects, fail_at, watch
        self.lines_seen: list[int] = []

    def class_maps(self) -> dict[str, ClassMap]:
        return {name: ClassMap.from_defects(["scratch"]) for name in self.objects}

    def samples(self) -> Iterator[SourceSample]:
        for index in range(self.count):
            if index == self.fail_at:
                raise FormatError(f"{self.root}: listing failed at {index}")
            if self.watch:
                self.lines_seen.append(self._lines_written())
            mask = IndexMask(self.root / ("defect.png" if index % 2 else "clean.png"))
            yield SourceSample(self.objects[index % len(self.objects)], "a" if len(self.objects) > 1 else f"s{index}",
                               self.root / "tiny.png", mask, "scratch" if index % 2 else "good",
                               split="train", caption=f"näht {index}")

    def _lines_written(self) -> int:
        written = list(self.dst.parent.glob(f".*.partial/{self.dst.name}/{SAMPLES_FILE}"))
        return sum(1 for _ in written[0].open(encoding="utf-8")) if written else -1


def _source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    save_png(np.full((4, 4, 3), 90, np.uint8), root / "tiny.png")
    save_png(np.zeros((4, 4), np.uint8), root / "clean.png")
    defect = np.zeros((4, 4), np.uint8)
    defect[1, 2] = 1
    save_png(defect, root / "defect.png")
    return root


def _use(monkeypatch: pytest.MonkeyPatch, reader: Reader) -> None:
    monkeypatch.setattr(convert_module, "open_reader", lambda fmt, root, **options: reader)


def test_each_index_line_is_written_before_the_next_sample_is_listed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "ds"
    reader = CountingReader(_source(tmp_path), 50, dst)
    _use(monkeypatch, reader)
    result = convert_counted(reader.root, dst)
    # one process: the first two samples are listed before anything is written (the empty-source check
    # and the worker decision look ahead), every later one once all before it have their line
    assert reader.lines_seen == [-1, 0, *range(2, 50)]
    assert (result.samples, result.objects, result.with_defects, result.defect_free) == (50, 1, 25, 25)
    assert result.root == dst and len(result.open()) == 50


def test_with_workers_the_source_is_read_a_bounded_window_ahead(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "ds"
    reader = CountingReader(_source(tmp_path), 600, dst)
    _use(monkeypatch, reader)
    one = tmp_path / "one"
    assert convert_counted(reader.root, dst, workers=2).samples == 600
    ahead = [index - lines for index, lines in enumerate(reader.lines_seen) if lines >= 0]
    # never more than the window ahead of the index: 2 * workers chunks pending, one being read, one being
    # handed out, each of at most 64 samples
    assert ahead and max(ahead) <= (2 * 2 + 2) * 64
    assert reader.lines_seen[-1] >= 600 - (2 * 2 + 2) * 64  # the last sample is listed long after the first lines
    _use(monkeypatch, CountingReader(reader.root, 600, one))
    convert_counted(reader.root, one, workers=1)
    for file in (SAMPLES_FILE, DATASET_FILE):
        assert (dst / file).read_bytes() == (one / file).read_bytes().replace(b'"one"', b'"ds"')


def test_the_index_written_is_what_save_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a DS folder source: fields this version does not know, data-set fields and non-ASCII text travel
    source = tmp_path / "old"
    with DSFolder.create(source, "old", {"part": ["scratch", "dent"], "Gear": ["dent"]}) as old:
        old.meta.update({"line": "Ü4", "source": {"format": "x"}, "z": [1, 2]})
        for index in range(12):
            sample = old.add_sample("part" if index % 3 else "Gear", f"Ä{index}", np.full((5, 6, 3), index, np.uint8),
                                    np.eye(5, 6, dtype=np.uint8) * (index % 3), split="val", caption="✓ naht",
                                    defect_type="dent" if index % 3 == 2 else None)
            old.update([sample.replace(extra={"operator": "Jürgen", "shift": index})])
    dst = tmp_path / "new"
    folder = convert(source, dst, "ds")
    written = {file: (dst / file).read_bytes() for file in (DATASET_FILE, SAMPLES_FILE)}
    assert written[SAMPLES_FILE].count(b"\n") == 12 and "Jürgen".encode() in written[SAMPLES_FILE]
    assert json.loads(written[DATASET_FILE])["source"]["format"] == "ds"
    again = tmp_path / "again"
    DSFolder(again, folder.name, folder.objects, list(folder), meta=folder.meta).save()
    assert {file: (again / file).read_bytes() for file in written} == written


@pytest.mark.parametrize("workers", [1, 2])
def test_ids_differing_in_case_only_are_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      workers: int) -> None:
    dst = tmp_path / "ds"
    _use(monkeypatch, CountingReader(_source(tmp_path), 6, dst, objects=("Pill", "pill")))
    with pytest.raises(InputError, match=r"sample Pill/a already exists \(ids may not differ in case only: 'pill/a'\)"):
        convert_counted(tmp_path / "source", dst, workers=workers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # no DS folder, no staging folder left


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_in_the_listing_leaves_nothing_and_comes_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   workers: int) -> None:
    dst = tmp_path / "ds"
    _use(monkeypatch, CountingReader(_source(tmp_path), 300, dst, fail_at=250))
    with pytest.raises(FormatError, match="listing failed at 250"):
        convert_counted(tmp_path / "source", dst, workers=workers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_convert_holds_little_memory_a_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source(tmp_path)
    _use(monkeypatch, CountingReader(source, 20, tmp_path / "warm-up", watch=False))
    convert_counted(source, tmp_path / "warm-up")  # first-time imports and caches are not the samples'
    peaks = []
    for count in (100, 1100):
        dst = tmp_path / f"ds{count}"
        _use(monkeypatch, CountingReader(source, count, dst, watch=False))
        tracemalloc.start()
        try:
            convert_counted(source, dst)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    per_sample = (peaks[1] - peaks[0]) / 1000
    assert per_sample < 512, f"{per_sample:.0f} bytes a sample"  # holding the samples took ~2.3 KiB
