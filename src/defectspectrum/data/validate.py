"""Validation of a DS folder: every file readable, sizes and class indices right, no leaks across splits.

Issue codes (level):
  bad-index-entry (error)         a samples.jsonl line that cannot be used (bad JSON or field type, unsafe
                                  id or path, unknown object, repeated id); it names the line, and the
                                  rest of the folder is still checked (`DSFolder.open(root, lenient=True)`)
  missing-file (error)            image or mask file does not exist
  unreadable (error)              image or mask file cannot be decoded (truncated, damaged, a bad PNG checksum)
  too-large (error)               image or mask above the pixel limit (`--max-pixels`), refused before decoding
  unsupported-image (error)       an image without a meaning in 8/16-bit integers (float, 32-bit beyond 16 bits)
  mask-not-single-channel (error) mask stored as colour / with alpha instead of class indices
  invalid-mask-values (error)     mask values that are not whole numbers 0..255 (e.g. a 16-bit mask above 255)
  size-mismatch (error)           mask size differs from the image size
  index-out-of-map (error)        mask holds an index the object's class map does not have
  empty-mask (warning)            all-background mask on a sample whose defect_type is not "good"
  mask-on-good (warning)          defect pixels on a sample marked "good"
  unknown-split (warning)         split is not train / val / test
  duplicate-across-splits (error) pixel-identical images in two different splits (leakage)
  near-duplicate-across-splits (error)  perceptually near-identical images in two different splits
  duplicate / near-duplicate (warning)  the same within one split (or where a split is unassigned)
  near-duplicates-skipped (warning)     the near-duplicate search was not run: the images look so alike
                                  that it would take long (`near_duplicates="full"` runs it anyway)

Identical images are reported once per copy, against one of them (a training sample where there
is one), not pairwise: n copies give n - 1 issues, not n(n - 1)/2. Near-duplicates are reported once
per group (`near_duplicates.near_groups`: images joined by a chain of near pairs, with their identical
copies), listing the group: one issue for a part photographed n times.

Near-duplicates: a 64-bit perceptual hash (phash) within `hash_distance` bits, confirmed by a 256-bit
phash within 4 x `hash_distance` bits, both from one resize (`perceptual_hashes`). The 64-bit hash
alone calls different, aligned MVTec capsules identical; the confirmation keeps re-encoded / brightened copies
(measured: <= 14 of 256 bits) while distinct real images stay >= 24 bits apart. The pairs are found
by multi-index hashing (`near_duplicates`), exactly, without comparing every pair.

Images and masks are read by the same functions the exports and `data convert --from ds` use
(`defectspectrum.io`), so what validate calls an error in a file is an error there too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from itertools import tee
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from PIL import Image
from rich.console import Group
from rich.table import Table

from defectspectrum.cli_support import markup_text as escape
from defectspectrum.data.dsfolder import SAMPLES_FILE, DSFolder
from defectspectrum.data.near_duplicates import NearDuplicateSearch, runs
from defectspectrum.data.sample import SPLITS, Sample
from defectspectrum.errors import InputError
from defectspectrum.io import (
    SINGLE_CHANNEL_MODES,
    ImageTooLargeError,
    image_view,
    mask_indices,
    open_image,
    pixel_limit,
)
from defectspectrum.progress import track
from defectspectrum.workers import ordered_map

ERROR = "error"
WARNING = "warning"
FINE_HASH_SIZE = 16  # the confirming hash: 16 x 16 = 256 bits
DIGEST_BYTES = 20  # a pixel digest: SHA-1
MAX_HASH_DISTANCE = 32  # half the coarse hash: beyond it every image is a near-duplicate of every other
GROUP_NAMES_SHOWN = 10  # members a near-duplicate message names (the JSON's `group` lists them all)
NEAR_DUPLICATE_MODES = ("auto", "full", "off")
NEAR_DUPLICATE_BUDGET = 6_000_000_000  # candidate pairs `auto` searches: about a minute
SECONDS_PER_CANDIDATE = 1e-8  # measured on look-alike lines (bench_scale.py: 6-8 ns), for the estimate in messages


@dataclass(frozen=True)
class Issue:
    """One finding. `other` names the second sample of a duplicate pair; `line` the samples.jsonl line
    of a bad index entry."""

    level: str
    code: str
    sample: str | None
    file: str | None
    message: str
    other: str | None = None
    line: int | None = None
    group: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"level": self.level, "code": self.code, "sample": self.sample, "file": self.file,
                                "message": self.message}
        if self.other is not None:
            data["other"] = self.other
        if self.line is not None:
            data["line"] = self.line
        if self.group is not None:
            data["group"] = list(self.group)
        return data


@dataclass
class ValidationReport:
    """All issues of one validation run."""

    root: str
    samples: int
    hash_distance: int
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == WARNING]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def counts(self) -> dict[str, int]:
        """Issues per code."""
        return dict(sorted(Counter(i.code for i in self.issues).items()))

    def to_json(self) -> dict[str, Any]:
        """Summary counts plus every issue, JSON-serialisable."""
        return {"root": self.root, "ok": self.ok,
                "summary": {"samples": self.samples, "errors": len(self.errors), "warnings": len(self.warnings),
                            "hash_distance": self.hash_distance, "by_code": self.counts()},
                "issues": [i.to_json() for i in self.issues]}


@dataclass
class _Hashes:
    """Per readable image: its sample (the folder's own object), pixel digest and packed perceptual hashes
    (20 + 8 + 32 bytes, appended to bytearrays: no Python object an image)."""

    samples: list[Sample] = field(default_factory=list)
    digests: bytearray = field(default_factory=bytearray)
    coarse: bytearray = field(default_factory=bytearray)
    fine: bytearray = field(default_factory=bytearray)

    def id(self, index: int) -> str:
        return self.samples[index].id

    def split(self, index: int) -> str | None:
        return self.samples[index].split

    def file(self, index: int) -> str:
        return self.samples[index].image


def identical_groups(digests: bytes | bytearray) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Images with equal `DIGEST_BYTES`-byte digests (concatenated in `digests`): the first image of
    each group, ascending (one per distinct image), and the members of each group of two or more,
    ascending, keyed by its first. Sorted in numpy: no Python object per image."""
    count = len(digests) // DIGEST_BYTES
    words = np.zeros((count, 3), np.uint64)  # a digest padded to three words
    words.view(np.uint8)[:, :DIGEST_BYTES] = np.frombuffer(digests, np.uint8).reshape(count, DIGEST_BYTES)
    order = np.lexsort((words[:, 2], words[:, 1], words[:, 0]))  # stable: a run lists its members ascending
    ordered = words[order]
    del words
    starts, sizes = runs(ordered)
    del ordered
    multiple = {int(order[start]): order[start:start + size].tolist()
                for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist())}
    return np.sort(order[starts]), multiple


def perceptual_hashes(grey: Image.Image) -> tuple[bytes, bytes]:
    """The coarse (64-bit) and fine (256-bit) perceptual hashes of an 8-bit grey image, packed, from one
    resize and one DCT: the image at 64 x 64 (Lanczos), its 2-D DCT-II, and the signs against the median
    of the lowest 8 x 8 and 16 x 16 frequencies. The fine hash is `imagehash.phash(grey, hash_size=16)`
    bit for bit; the coarse one reads the same low frequencies as `imagehash.phash(grey)` from the
    finer resize (measured on 342 real images: 0.9 bits apart on average)."""
    pixels = np.asarray(grey.resize((64, 64), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = scipy.fft.dct(scipy.fft.dct(pixels, axis=0), axis=1)
    coarse, fine = dct[:8, :8], dct[:FINE_HASH_SIZE, :FINE_HASH_SIZE]
    return (np.packbits((coarse > np.median(coarse)).ravel()).tobytes(),
            np.packbits((fine > np.median(fine)).ravel()).tobytes())


def _hash_view(image: Image.Image, path: Path) -> Image.Image:
    """8-bit grey for the perceptual hashes: the display view (`io.image_view`), except that images of
    more than 8 bits are stretched over their own range first (8-bit data in a 16-bit file would view
    as near-black, and every such image would hash alike)."""
    view = image_view(image, path)  # checks the values too
    if image.mode not in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        return view.convert("L")
    values = np.asarray(image).astype(np.float64)
    if not values.size:
        return view.convert("L")
    low, span = float(values.min()), float(np.ptp(values))
    return Image.fromarray(((values - low) * (255.0 / max(span, 1.0))).astype(np.uint8))


class _Checker:
    def __init__(self, folder: DSFolder) -> None:
        self.folder = folder
        self.issues: list[Issue] = []
        self.hashes = _Hashes()

    def add(self, level: str, code: str, sample: Sample, file: str | None, message: str,
            other: str | None = None) -> None:
        self.issues.append(Issue(level, code, sample.id, file, message, other))

    def _open(self, sample: Sample, rel: str, what: str) -> Image.Image | None:
        try:  # the folder's own path check: a sample added in Python is held to the index rules too
            path = self.folder.image_path(sample) if what == "image" else self.folder.mask_path(sample)
        except InputError as exc:
            self.add(ERROR, "bad-index-entry", sample, rel, str(exc))
            return None
        if not path.is_file():
            self.add(ERROR, "missing-file", sample, rel,
                     f"{path}: {what} file not found; restore it or remove the sample")
            return None
        try:
            return open_image(path)
        except ImageTooLargeError as exc:
            self.add(ERROR, "too-large", sample, rel, str(exc))
        except InputError as exc:
            self.add(ERROR, "unreadable", sample, rel, str(exc))
        return None

    def check(self, sample: Sample) -> None:
        if sample.split is not None and sample.split not in SPLITS:
            self.add(WARNING, "unknown-split", sample, None,
                     f"{sample.id}: split {sample.split!r} is not one of {', '.join(SPLITS)}; "
                     "run `data split` or fix it")
        image = self._open(sample, sample.image, "image")
        mask = self._open(sample, sample.mask, "mask")
        if image is not None:
            self._hash(sample, image)
        if mask is None:
            return
        mask_path = self.folder.root / sample.mask
        if mask.mode not in SINGLE_CHANNEL_MODES:
            self.add(ERROR, "mask-not-single-channel", sample, sample.mask,
                     f"{mask_path}: mask is {mask.mode}, not single-channel class indices; "
                     "convert it to an 8-bit grey index mask (colour masks are for viewing only)")
            return
        if image is not None and image.size != mask.size:
            self.add(ERROR, "size-mismatch", sample, sample.mask,
                     f"{mask_path}: mask is {mask.width}x{mask.height} but image {sample.image} is "
                     f"{image.width}x{image.height}; re-create the mask at the image size")
        try:
            pixels = mask_indices(mask, mask_path)
        except InputError as exc:
            self.add(ERROR, "invalid-mask-values", sample, sample.mask, str(exc))
            return
        class_map = self.folder.objects[sample.object]
        bad = np.unique(pixels[pixels >= len(class_map)])
        if bad.size:
            self.add(ERROR, "index-out-of-map", sample, sample.mask,
                     f"{mask_path}: mask index {', '.join(str(int(v)) for v in bad)} is outside the class map "
                     f"{list(class_map.names)}; fix the mask or add the class to the object's class map")
        defect = bool(np.any(pixels))
        if not defect and not sample.is_good:
            self.add(WARNING, "empty-mask", sample, sample.mask,
                     f"{mask_path}: mask is empty but defect_type is {sample.defect_type!r}; "
                     "annotate the defect or mark the sample 'good'")
        if defect and sample.is_good:
            self.add(WARNING, "mask-on-good", sample, sample.mask,
                     f"{mask_path}: sample is marked 'good' but its mask has defect pixels; "
                     "fix the mask or the defect_type")

    def _hash(self, sample: Sample, image: Image.Image) -> None:
        try:
            grey = _hash_view(image, self.folder.image_path(sample))
        except InputError as exc:
            self.add(ERROR, "unsupported-image", sample, sample.image, str(exc))
            return
        digest = hashlib.sha1(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
        self.add_hashes(sample, (digest.digest(), *perceptual_hashes(grey)))

    def add_hashes(self, sample: Sample, hashes: tuple[bytes, bytes, bytes]) -> None:
        """Keep a readable image's (pixel digest, coarse hash, fine hash) for the duplicate search."""
        h = self.hashes
        h.samples.append(sample)
        h.digests += hashes[0]
        h.coarse += hashes[1]
        h.fine += hashes[2]

    def duplicates(self, distance: int, mode: str = "auto", workers: int = 1) -> None:
        h = self.hashes
        if len(h.samples) < 2:
            return
        firsts, multiple = identical_groups(h.digests)  # groups in the order of their first image
        reps = {first: self._representative(multiple[first]) for first in sorted(multiple)}
        for first, rep in reps.items():  # each copy once, against its group's representative
            for j in multiple[first]:
                if j != rep:
                    self._pair(rep, j)
        if mode == "off":
            return
        chosen = firsts
        if reps:
            chosen = firsts.copy()
            chosen[np.searchsorted(firsts, list(reps))] = list(reps.values())
        coarse = np.frombuffer(h.coarse, np.uint64)
        fine = np.frombuffer(h.fine, np.uint64).reshape(-1, FINE_HASH_SIZE**2 // 64)
        if len(chosen) < len(coarse):
            coarse, fine = coarse[chosen], fine[chosen]
        search = NearDuplicateSearch(coarse, fine, distance)  # distinct images only
        if mode == "auto" and search.estimated_candidates > NEAR_DUPLICATE_BUDGET * workers:
            minutes = search.estimated_candidates * SECONDS_PER_CANDIDATE / 60 / workers
            self.issues.append(Issue(
                WARNING, "near-duplicates-skipped", None, None,
                f"near-duplicate search skipped: the {len(firsts)} distinct images look alike (one product, one "
                f"view), so it would check ~{search.estimated_candidates:.1e} candidate pairs (~{minutes:.0f} min); "
                "exact duplicates were checked. Run with --near-duplicates full to search anyway (-j N: "
                "N processes)"))
            return
        keys = len(search.keys)
        for near in search.groups(lambda blocks: track(blocks, "near-duplicates", total=keys), workers):
            self._near_group(sorted(j for index in firsts[near].tolist() for j in multiple.get(index, (index,))))

    def _representative(self, group: list[int]) -> int:
        """The member of a group of identical images that the others are reported against: a training
        sample if there is one, else one with a split, so that every copy in another split is an error."""
        split = self.hashes.split
        return next((i for i in group if split(i) == "train"),
                    next((i for i in group if split(i) is not None), group[0]))

    def _across(self, i: int, j: int) -> bool:
        split = self.hashes.split
        return split(i) is not None and split(j) is not None and split(i) != split(j)

    def _pair(self, i: int, j: int) -> None:
        """Image j is pixel-identical to image i."""
        h = self.hashes
        if self._across(i, j):
            if h.split(j) == "train":  # name the non-training sample: it is the leaked one
                i, j = j, i
            message = (f"{h.id(j)} ({h.split(j)}) is pixel-identical to {h.id(i)} ({h.split(i)}): "
                       "the same image in two splits leaks; keep one or move both into one split")
            self.issues.append(Issue(ERROR, "duplicate-across-splits", h.id(j), h.file(j), message, h.id(i)))
        else:
            message = (f"{h.id(j)} is pixel-identical to {h.id(i)} (split {h.split(j) or 'unassigned'} / "
                       f"{h.split(i) or 'unassigned'}); remove one if it is an accidental copy")
            self.issues.append(Issue(WARNING, "duplicate", h.id(j), h.file(j), message, h.id(i)))

    def _near_group(self, members: list[int]) -> None:
        """One issue for images joined by near pairs: named by a member outside the representative's split
        (the leaked one) where the group spans splits, else by the first member after the representative."""
        h = self.hashes
        rep = self._representative(members)
        leaked = next((j for j in members if self._across(rep, j)), None)
        named = leaked if leaked is not None else next(j for j in members if j != rep)
        shown = ", ".join(f"{h.id(j)} ({h.split(j) or 'unassigned'})" for j in members[:GROUP_NAMES_SHOWN])
        if len(members) > GROUP_NAMES_SHOWN:
            shown += f" and {len(members) - GROUP_NAMES_SHOWN} more (all in --json)"
        group = tuple(h.id(j) for j in members)
        if leaked is not None:
            spread = ", ".join(sorted({split for split in (h.split(j) for j in members) if split is not None}))
            message = (f"{len(members)} near-duplicate images (perceptual hash) span splits {spread}: {shown}; "
                       "the same image in two splits leaks; keep one or move them into one split")
            self.issues.append(Issue(ERROR, "near-duplicate-across-splits", h.id(named), h.file(named), message,
                                     h.id(rep), group=group))
        else:
            message = (f"{len(members)} images are near-duplicates (perceptual hash): {shown}; "
                       "remove the accidental copies")
            self.issues.append(Issue(WARNING, "near-duplicate", h.id(named), h.file(named), message, h.id(rep),
                                     group=group))


SampleResult = tuple[list[Issue], tuple[bytes, bytes, bytes] | None]


def _check_sample(context: DSFolder, sample: Sample) -> SampleResult:
    """One sample's file issues and image hashes (in a worker process: `context` is the folder's files
    view)."""
    checker = _Checker(context)
    checker.check(sample)
    h = checker.hashes
    return checker.issues, (bytes(h.digests), bytes(h.coarse), bytes(h.fine)) if h.samples else None


def validate(folder: DSFolder, hash_distance: int = 4, max_pixels: int | None = None,
             near_duplicates: str = "auto", workers: int = 1) -> ValidationReport:
    """Check every sample's files and look for duplicate images; one pass over the data. Lines a
    lenient open left out (`folder.problems`) are reported as `bad-index-entry` errors. Images above
    `max_pixels` (default `io.max_pixels()`) are reported as too large without being decoded.
    `near_duplicates`: `auto` searches unless the images look so alike that the search would take
    more than about a minute (then a `near-duplicates-skipped` warning says so), `full` always, `off` never.
    `workers` processes read and hash the files and search the near-duplicates (the report is the same
    whatever their number)."""
    if near_duplicates not in NEAR_DUPLICATE_MODES:
        raise InputError(f"--near-duplicates {near_duplicates!r}: choose one of {', '.join(NEAR_DUPLICATE_MODES)}")
    if not 0 <= hash_distance <= MAX_HASH_DISTANCE:
        raise InputError(f"hash distance {hash_distance}: must be 0..{MAX_HASH_DISTANCE} bits (4 is the default)")
    checker = _Checker(folder)
    checker.issues.extend(Issue(ERROR, "bad-index-entry", problem.sample, SAMPLES_FILE, problem.message,
                                line=problem.line) for problem in folder.problems)
    listed, checked = tee(folder)  # the samples streamed, a bounded window apart: never a list of them
    with pixel_limit(max_pixels):
        results = ordered_map(_check_sample, checked, workers, folder.files_view())
        for sample, (issues, hashes) in zip(listed, track(results, "validate", total=len(folder))):
            checker.issues.extend(issues)
            if hashes is not None:
                checker.add_hashes(sample, hashes)
    checker.duplicates(hash_distance, near_duplicates, workers)
    return ValidationReport(root=str(folder.root), samples=len(folder), hash_distance=hash_distance,
                            issues=checker.issues)


def validation_table(report: ValidationReport, limit: int = 50) -> Group:
    """A summary line, counts per code and the first `limit` issues (errors first)."""
    style = "green" if report.ok else "red"
    verdict = "OK" if report.ok else "FAILED"
    head = (f"[bold {style}]{verdict}[/]: {report.samples} samples, {len(report.errors)} error(s), "
            f"{len(report.warnings)} warning(s)")
    parts: list[Any] = [head]
    if report.issues:
        counts = Table(title="issues by code", title_justify="left")
        counts.add_column("code")
        counts.add_column("level")
        counts.add_column("count", justify="right")
        levels = {i.code: i.level for i in report.issues}
        for code, count in report.counts().items():
            counts.add_row(code, levels[code], str(count))
        parts.append(counts)
        issues = Table(title=f"issues (first {min(limit, len(report.issues))} of {len(report.issues)})",
                       title_justify="left")
        for column in ("level", "code", "sample", "message"):
            issues.add_column(column, overflow="fold")
        ordered = sorted(report.issues, key=lambda i: (i.level != ERROR, i.code, i.sample or ""))
        for issue in ordered[:limit]:
            level = f"[red]{issue.level}[/]" if issue.level == ERROR else f"[yellow]{issue.level}[/]"
            issues.add_row(level, issue.code, escape(issue.sample or "-"), escape(issue.message))
        parts.append(issues)
        if len(report.issues) > limit:
            parts.append(f"... and {len(report.issues) - limit} more; write them all with --json")
    return Group(*parts)
