"""Hostile images: decompression bombs, mask values above 255, 16-bit and float images, damaged files
(what validate flags, no export or conversion copies) and broken entries named like images in source
listings. Every fixture is crafted in tmp_path; bombs are PNG headers that only claim a huge size."""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile
from typer.testing import CliRunner

from defectspectrum import io
from defectspectrum.cli import app
from defectspectrum.data.captions import caption_folder
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.export import export
from defectspectrum.data.show import write_overlays
from defectspectrum.data.stats import compute_stats
from defectspectrum.data.validate import ERROR, validate
from defectspectrum.errors import FormatError, InputError
from defectspectrum.io import ImageTooLargeError

H, W = 12, 16


# -- fixtures --------------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_png(path: Path, width: int, height: int) -> Path:
    """A valid-looking 8-bit grey PNG whose header claims `width` x `height` but whose data is two rows:
    a bomb if anything decodes it (the file is a few kB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (width + 1) * 2)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def save(path: Path, array: np.ndarray, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def blob(value: int = 1) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[2:6, 3:9] = value
    return mask


def ds_folder(root: Path) -> DSFolder:
    """Object `part` (scratch, dent): a (PNG image, train), b (JPEG image, val), g (good, PNG)."""
    folder = DSFolder.create(root, "hostile", {"part": ["scratch", "dent"]})
    folder.add_sample("part", "a", photo(1), blob(1), split="train", defect_type="scratch")
    jpeg = save(root.parent / "b_source.jpg", photo(2), quality=95)
    folder.add_sample("part", "b", jpeg, blob(2), split="val", defect_type="dent")
    folder.add_sample("part", "g", photo(3), np.zeros((H, W), np.uint8), split="train", defect_type="good")
    folder.save()
    return folder


def fail_on_decode(monkeypatch: pytest.MonkeyPatch, largest: int = 10_000) -> None:
    """Make decoding any image above `largest` pixels fail the test: refusals must come from the header."""
    original = ImageFile.ImageFile.load

    def guarded(self: ImageFile.ImageFile) -> object:
        assert self.size[0] * self.size[1] <= largest, f"decoded a {self.size} image"
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", guarded)


def one_error_line(args: list[str], code: int = 2) -> str:
    """Run the CLI; assert the exit code and, for 2, exactly one `error:` line; return the output."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    if code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        return lines[0]
    return result.output


EXPORTS = ("mmseg", "ds-release", "coco")


def export_target(tmp_path: Path, to: str) -> Path:
    return tmp_path / f"out_{to}"


def assert_everything_refuses(folder: DSFolder, tmp_path: Path, needle: str) -> None:
    """Every export and `convert --from ds` raises an InputError containing `needle` and leaves no output."""
    for to in EXPORTS:
        target = export_target(tmp_path, to)
        with pytest.raises(InputError) as caught:
            export(folder, target, to)
        assert needle in str(caught.value) and "\n" not in str(caught.value), (to, caught.value)
        assert not target.exists(), to
    with pytest.raises(InputError, match=needle.replace(".", r"\.")):
        convert(folder.root, tmp_path / "copy", "ds")
    assert not (tmp_path / "copy").exists()


# -- 1. decompression bombs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height", "size_text"), [
    (20000, 20000, "20000x20000 = 400000000 pixels"),  # above the limit: refused by our header check
    (30000, 30000, "900000000 pixels"),  # above twice the limit: Pillow's own bomb error, turned into one line
])
def test_bomb_is_refused_from_its_header_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         width: int, height: int, size_text: str) -> None:
    fail_on_decode(monkeypatch)
    bomb = header_png(tmp_path / "bomb.png", width, height)
    assert bomb.stat().st_size < 100_000
    for read in (io.open_image, io.image_size, io.read_rgb, io.read_mask_pixels, io.check_image):
        with pytest.raises(ImageTooLargeError) as caught:
            read(bomb)
        message = str(caught.value)
        assert message.startswith(f"{bomb}: ") and size_text in message and "\n" not in message
        assert f"--max-pixels {width * height}" in message


def test_default_limit_passes_16k_line_scans_and_the_option_lifts_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fail_on_decode(monkeypatch)
    assert io.DEFAULT_MAX_PIXELS >= 16384 * 16384 > 0
    assert io.image_size(header_png(tmp_path / "line_scan.png", 16384, 16384)) == (16384, 16384)
    big = header_png(tmp_path / "big.png", 30000, 30000)
    with pytest.raises(ImageTooLargeError):
        io.image_size(big)
    with io.pixel_limit(30000 * 30000):
        assert io.max_pixels() == 900_000_000
        assert io.image_size(big) == (30000, 30000)  # header only: nothing decoded
    assert io.max_pixels() == io.DEFAULT_MAX_PIXELS  # the block's limit ends with it
    small = save(tmp_path / "small.png", photo())
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "100")
    with pytest.raises(ImageTooLargeError, match="16x12 = 192 pixels, above the limit of 100"):
        io.read_rgb(small)
    monkeypatch.setenv(io.MAX_PIXELS_ENV, "lots")
    with pytest.raises(InputError, match=f"{io.MAX_PIXELS_ENV}='lots'"):
        io.read_rgb(small)


def test_bomb_image_or_mask_is_refused_by_every_read_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_on_decode(monkeypatch)
    folder = ds_folder(tmp_path / "ds")
    image = header_png(folder.image_path(folder["part/a"]), 20000, 20000)
    [issue] = [i for i in validate(folder).issues if i.level == ERROR]
    assert (issue.code, issue.sample) == ("too-large", "part/a") and str(image) in issue.message
    assert_everything_refuses(folder, tmp_path, f"{image}: image is 20000x20000")
    with pytest.raises(ImageTooLargeError):
        write_overlays(folder, tmp_path / "show", include_good=True)

    folder = ds_folder(tmp_path / "ds2")
    mask = header_png(folder.mask_path(folder["part/b"]), 20000, 20000)
    assert {(i.code, i.sample) for i in validate(folder).issues if i.level == ERROR} == {("too-large", "part/b")}
    assert compute_stats(folder).unreadable == ["part/b"]
    with pytest.raises(ImageTooLargeError):
        caption_folder(folder)
    assert_everything_refuses(folder, tmp_path, f"{mask}: image is 20000x20000")


def test_bomb_in_a_source_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_on_decode(monkeypatch)
    src = tmp_path / "src"
    save(src / "images" / "a.png", photo())
    save(src / "masks" / "a.png", blob())
    bomb = header_png(src / "images" / "b.png", 30000, 30000)
    line = one_error_line(["data", "convert", "--from", "folder", str(src), str(tmp_path / "ds")])
    assert str(bomb) in line and "900000000 pixels" in line and "--max-pixels" in line
    assert not (tmp_path / "ds").exists()


def test_max_pixels_option_reaches_every_command_and_worker(tmp_path: Path) -> None:
    src = tmp_path / "src"
    save(src / "images" / "a.png", photo(1))
    save(src / "images" / "b.png", photo(2))
    save(src / "masks" / "a.png", blob())
    line = one_error_line(["data", "convert", "--from", "folder", "--max-pixels", "100", str(src), str(tmp_path / "x")])
    assert "16x12 = 192 pixels, above the limit of 100" in line
    with pytest.raises(ImageTooLargeError, match="above the limit of 100"):  # checked in the worker processes
        convert(src, tmp_path / "y", "folder", workers=2, max_pixels=100)
    folder = convert(src, tmp_path / "ds", "folder", max_pixels=192)  # exactly at the limit passes
    ds = str(folder.root)
    output = one_error_line(["data", "validate", "--max-pixels", "100", ds], code=1)
    assert "too-large" in output
    one_error_line(["data", "validate", ds], code=0)
    for args in (["export", ds, str(tmp_path / "m"), "--to", "mmseg"], ["show", ds, str(tmp_path / "s")],
                 ["caption", ds]):
        assert "above the limit of 100" in one_error_line(["data", *args, "--max-pixels", "100"])
    assert "2 mask(s) could not be read" in one_error_line(["data", "stats", ds, "--max-pixels", "100"], code=0)
    assert "could not be read" not in one_error_line(["data", "stats", ds], code=0)


# -- 2. values that would change meaning ---------------------------------------------------------------------


def test_16bit_mask_above_255_is_an_error_everywhere(tmp_path: Path) -> None:
    folder = ds_folder(tmp_path / "ds")
    wide = blob(1).astype(np.uint16)
    wide[7, 10] = 257  # `>> 8` would have made this a valid class 1
    mask = save(folder.mask_path(folder["part/a"]), wide)
    assert Image.open(mask).mode == "I;16"
    with pytest.raises(InputError, match=f"^{mask}: mask value 257 is above 255"):
        folder.load_mask(folder["part/a"])
    [issue] = [i for i in validate(folder).issues if i.level == ERROR]
    assert (issue.code, issue.sample) == ("invalid-mask-values", "part/a") and "257" in issue.message
    assert compute_stats(folder).unreadable == ["part/a"]
    with pytest.raises(InputError, match="mask value 257"):
        write_overlays(folder, tmp_path / "show")
    assert_everything_refuses(folder, tmp_path, f"{mask}: mask value 257 is above 255")


def test_16bit_masks_within_255_stay_lossless(tmp_path: Path) -> None:
    folder = ds_folder(tmp_path / "ds")
    save(folder.mask_path(folder["part/a"]), blob(2).astype(np.uint16))
    assert validate(folder).ok
    np.testing.assert_array_equal(folder.load_mask(folder["part/a"]), blob(2))
    copy = convert(folder.root, tmp_path / "copy", "ds")
    np.testing.assert_array_equal(copy.load_mask(copy["part/a"]), blob(2))


def test_source_masks_are_never_rescaled(tmp_path: Path) -> None:
    """Folder layout: a 16-bit mask above 255 and a fractional float mask are errors naming the mask
    (CLI: exit 2, one line); whole-number 16-bit and float masks convert losslessly."""
    src = tmp_path / "src"
    save(src / "images" / "a.png", photo(1))
    bad = save(src / "masks" / "a.png", blob(1).astype(np.uint16) * 300)
    line = one_error_line(["data", "convert", "--from", "folder", "--classes", "scratch,dent", str(src),
                           str(tmp_path / "x")])
    assert f"{bad}: mask value 300 is above 255" in line
    bad.unlink()
    save(src / "masks" / "a.tif", blob(1).astype(np.float32) / 2)
    with pytest.raises(InputError, match="float mask holds 0.5, not a whole number"):
        convert(src, tmp_path / "y", "folder", classes=["scratch", "dent"])
    (src / "masks" / "a.tif").unlink()
    save(src / "masks" / "a.tif", blob(2).astype(np.float32))
    save(src / "images" / "b.png", photo(2))
    save(src / "masks" / "b.png", blob(1).astype(np.uint16))
    folder = convert(src, tmp_path / "ds", "folder", classes=["scratch", "dent"])
    np.testing.assert_array_equal(folder.load_mask(folder["src/a"]), blob(2))
    np.testing.assert_array_equal(folder.load_mask(folder["src/b"]), blob(1))


def test_mask_alpha_is_dropped_only_where_it_says_nothing(tmp_path: Path) -> None:
    values = np.repeat(blob(255)[..., None], 3, axis=2)
    transparent_background = np.dstack([values, blob(255)])  # transparent exactly where the mask is 0
    path = save(tmp_path / "ok.png", transparent_background)
    np.testing.assert_array_equal(io.read_mask_pixels(path), values)
    alpha_only = np.dstack([np.zeros_like(values), blob(255)])  # the defect lives in the alpha channel only
    path = save(tmp_path / "alpha_only.png", alpha_only)
    with pytest.raises(InputError, match=f"^{path}: mask has an alpha channel that carries part of its meaning"):
        io.read_mask_pixels(path)
    hidden = np.dstack([np.full_like(values, 7), np.full((H, W), 0, np.uint8)])  # values under full transparency
    with pytest.raises(InputError, match="alpha channel"):
        io.read_mask_pixels(save(tmp_path / "hidden.png", hidden))


def test_16bit_images_are_stored_losslessly_and_viewed_linearly(tmp_path: Path) -> None:
    src = tmp_path / "src"
    grey = ((np.arange(H * W, dtype=np.uint32).reshape(H, W) * 331) % 65536).astype(np.uint16)
    save(src / "images" / "a.tif", grey)
    save(src / "masks" / "a.png", blob())
    png16 = save(src / "images" / "b.png", grey[::-1].copy())
    save(src / "masks" / "b.png", blob())
    folder = convert(src, tmp_path / "ds", "folder")
    stored = folder.image_path(folder["src/a"])
    assert stored.suffix == ".png" and Image.open(stored).mode == "I;16"
    np.testing.assert_array_equal(np.asarray(Image.open(stored)), grey)  # TIFF re-encoded without loss
    assert folder.image_path(folder["src/b"]).read_bytes() == png16.read_bytes()  # PNG copied as is
    view = folder.load_image(folder["src/a"])
    assert view.dtype == np.uint8 and view.shape == (H, W, 3)
    np.testing.assert_array_equal(view[..., 0], (grey >> 8).astype(np.uint8))
    assert validate(folder).ok


def test_distinct_16bit_images_of_8bit_range_are_not_near_duplicates(tmp_path: Path) -> None:
    """Viewed as value >> 8 they are all black; validate's hashes stretch them over their own range."""
    folder = DSFolder.create(tmp_path / "ds", "x", {"part": ["scratch"]})
    for seed, split in enumerate(("train", "val", "val")):
        noise = cv2.GaussianBlur(np.random.default_rng(seed).random((64, 64)).astype(np.float32), (0, 0), 3)
        grey = ((noise - noise.min()) / np.ptp(noise) * 200).astype(np.uint16)
        source = save(tmp_path / f"{seed}.png", grey)
        folder.add_sample("part", f"s{seed}", source, np.zeros((64, 64), np.uint8), split=split, defect_type="good")
    assert not folder.load_image(folder["part/s0"]).any()  # the documented display view of such data
    assert validate(folder).issues == []


@pytest.mark.parametrize(("make", "needle"), [
    (lambda p: save(p, np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)), "a floating-point image"),
    (lambda p: save(p, np.full((H, W), 70000, np.int32)), "a 32-bit integer image with values 70000..70000"),
    (lambda p: cv2.imwrite(str(p), np.full((H, W, 3), 40000, np.uint16)), "a colour TIFF with 16 bits per channel"),
])
def test_images_without_a_lossless_form_are_refused(tmp_path: Path, make: Callable[[Path], object],
                                                    needle: str) -> None:
    src = tmp_path / "src"
    image = src / "images" / "a.tif"
    image.parent.mkdir(parents=True)
    make(image)
    save(src / "masks" / "a.png", blob())
    line = one_error_line(["data", "convert", "--from", "folder", str(src), str(tmp_path / "ds")])
    assert f"{image}: {needle}" in line
    assert not (tmp_path / "ds").exists()


def test_float_image_in_a_ds_folder_is_an_error_for_validate_and_every_export(tmp_path: Path) -> None:
    folder = ds_folder(tmp_path / "ds")
    tif = save(folder.root / "part" / "images" / "a.tif", np.ones((H, W), np.float32))
    (folder.root / folder["part/a"].image).unlink()
    folder.update([dataclasses.replace(folder["part/a"], image="part/images/a.tif")])
    folder.save()
    folder = DSFolder.open(folder.root)
    [issue] = [i for i in validate(folder).issues if i.level == ERROR]
    assert (issue.code, issue.sample) == ("unsupported-image", "part/a")
    assert_everything_refuses(folder, tmp_path, f"{tif}: a floating-point image")


# -- 3. damaged files: what validate flags, nothing exports ------------------------------------------------------


def _cut_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _cut_end_chunk(data: bytes) -> bytes:
    return data[:-12]  # the IEND chunk: Pillow decodes the pixels without complaint


def _huge_chunk_before_end(data: bytes) -> bytes:
    return data[:-12] + struct.pack(">I", 0x7FFFFFF0) + b"tEXt" + b"claims 2 GiB" + data[-12:]


def _flip_data_byte(data: bytes) -> bytes:
    at = data.index(b"IDAT") + 20
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1:]


@pytest.mark.parametrize(("sample_id", "damage", "needle"), [
    ("part/a", _cut_half, "damaged PNG (the file ends inside its IDAT chunk)"),
    ("part/b", _cut_half, "cannot read image"),  # the JPEG
    ("part/a", _cut_end_chunk, "the file ends before its IEND chunk"),
    ("part/a", _flip_data_byte, "checksum mismatch in its IDAT chunk"),
    ("part/a", _huge_chunk_before_end, "the file ends inside its tEXt chunk"),  # checked before any read
])
def test_damaged_image_is_flagged_by_validate_and_refused_by_every_export(
        tmp_path: Path, sample_id: str, damage: Callable[[bytes], bytes], needle: str) -> None:
    folder = ds_folder(tmp_path / "ds")
    image = folder.image_path(folder[sample_id])
    image.write_bytes(damage(image.read_bytes()))
    errors = [i for i in validate(folder).issues if i.level == ERROR]
    assert [(i.code, i.sample) for i in errors] == [("unreadable", sample_id)] and needle in errors[0].message
    assert_everything_refuses(folder, tmp_path, f"{image}: ")
    line = one_error_line(["data", "export", str(folder.root), str(tmp_path / "cli"), "--to", "ds-release"])
    assert str(image) in line and needle in line


def test_damaged_mask_is_flagged_by_validate_and_refused_by_every_export(tmp_path: Path) -> None:
    folder = ds_folder(tmp_path / "ds")
    mask = folder.mask_path(folder["part/g"])
    mask.write_bytes(_cut_end_chunk(mask.read_bytes()))
    assert [(i.code, i.sample) for i in validate(folder).issues if i.level == ERROR] == [("unreadable", "part/g")]
    assert_everything_refuses(folder, tmp_path, f"{mask}: damaged PNG")


def test_damaged_source_image_is_not_copied_by_add_sample(tmp_path: Path) -> None:
    source = save(tmp_path / "a.png", photo())
    source.write_bytes(_cut_end_chunk(source.read_bytes()))
    folder = DSFolder.create(tmp_path / "ds", "x", {"part": ["scratch"]})
    with pytest.raises(InputError, match=f"^{source}: damaged PNG"):
        folder.add_sample("part", "a", source, blob())
    assert not any((tmp_path / "ds" / "part" / "images").glob("*"))


# -- 4. broken entries named like images are never skipped ---------------------------------------------------------


def _broken(kind: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dangling":
        os.symlink(path.parent / "no_such_file.png", path)
    elif kind == "loop":
        os.symlink(path.name, path)
    else:
        path.mkdir()
    return path


def _folder_layout(root: Path, kind: str) -> Path:
    save(root / "images" / "a.png", photo(1))
    save(root / "masks" / "a.png", blob(255))
    save(root / "images" / "b.png", photo(2))
    return _broken(kind, root / "masks" / "b.png")  # was skipped: b became defect-free


def _release_layout(root: Path, kind: str) -> Path:
    unit = root / "DS-MVTec" / "bottle"
    save(unit / "image" / "broken_large" / "000.png", photo(1))
    save(unit / "mask" / "broken_large" / "000_mask.png", blob(1))
    save(unit / "image" / "good" / "001.png", photo(2))
    return _broken(kind, unit / "mask" / "good" / "001_mask.png")  # was skipped: 001 silently defect-free


def _mmseg_layout(root: Path, kind: str) -> Path:
    save(root / "img_dir" / "train" / "a.png", photo(1))
    save(root / "ann_dir" / "train" / "a.png", blob(1))
    save(root / "img_dir" / "train" / "b.png", photo(2))
    return _broken(kind, root / "ann_dir" / "train" / "b.png")


def _magnetic_tile_layout(root: Path, kind: str) -> Path:
    save(root / "MT_Blowhole" / "Imgs" / "exp1.jpg", photo(1))
    save(root / "MT_Blowhole" / "Imgs" / "exp1.png", blob(255))
    save(root / "MT_Blowhole" / "Imgs" / "exp2.jpg", photo(2))
    return _broken(kind, root / "MT_Blowhole" / "Imgs" / "exp2.png")


LAYOUTS = {"folder": _folder_layout, "ds-release": _release_layout, "mmseg": _mmseg_layout,
           "magnetic-tile": _magnetic_tile_layout}


@pytest.mark.parametrize("kind", ["dangling", "loop", "folder"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_broken_mask_entry_is_an_error_not_a_defect_free_image(tmp_path: Path, layout: str, kind: str) -> None:
    src = tmp_path / "src"
    broken = LAYOUTS[layout](src, kind)
    what = {"dangling": "a dangling symlink", "loop": "a symlink loop", "folder": "a folder"}[kind]
    with pytest.raises(FormatError, match=f"^{broken}: named like an image but is {what}"):
        convert(src, tmp_path / "ds", layout)
    assert not (tmp_path / "ds").exists()


def test_broken_mask_entry_through_the_cli(tmp_path: Path) -> None:
    src = tmp_path / "src"
    broken = _folder_layout(src, "dangling")
    line = one_error_line(["data", "convert", str(src), str(tmp_path / "ds")])  # --from auto finds it too
    assert line.startswith(f"error: {broken}: named like an image but is a dangling symlink")


def test_listing_skips_hidden_and_unrelated_entries_and_follows_symlinked_folders_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = save(root / "a.png", photo())
    b = save(root / "sub" / "b.JPG", photo(), quality=90)
    _broken("dangling", root / ".hidden.png")  # hidden: not an image of the data set
    _broken("dangling", root / "notes.txt")  # not named like an image
    _broken("loop", root / "loop")
    os.symlink(root, root / "sub" / "back")  # a cycle: read once
    os.symlink(root / "sub", root / "alias")  # a second way in: read once
    hidden_dir = root / ".cache"
    _broken("dangling", hidden_dir / "x.png")
    assert io.list_images(root) == [a]
    listed = io.list_images(root, recursive=True)
    assert a in listed and len(listed) == 2 and {p.name for p in listed} == {"a.png", "b.JPG"}
    assert b in listed or (root / "alias" / "b.JPG") in listed
    assert io.is_image_file(tmp_path / "missing.png") is False


def test_atomic_writes_never_replace_a_folder_or_a_device(tmp_path: Path) -> None:
    from defectspectrum.io import write_text_atomic

    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a folder; give the path of a file"):
        write_text_atomic(tmp_path / "d", "x")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        write_text_atomic(fifo, "x")
    assert fifo.exists() and not fifo.is_file()
    write_text_atomic(tmp_path / "f.txt", "a")
    write_text_atomic(tmp_path / "f.txt", "b")  # a plain file is replaced as before
    assert (tmp_path / "f.txt").read_text() == "b"
