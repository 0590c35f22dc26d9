"""File I/O shared by every reader and writer: atomic writes and checked image/mask reads.

Image reads (every reader, validate, show, stats and the exports go through `open_image`):
- Size first: an image's size is read from its header, and one above the pixel limit, or with a
  side longer than `MAX_SIDE` (absurd aspect ratios), is refused before any pixel is decoded
  (decompression bombs). The limit is `max_pixels()`:
  `DEFAULT_MAX_PIXELS`, or the `DEFECTSPECTRUM_MAX_PIXELS` environment variable, or `--max-pixels`
  (`pixel_limit`). Pillow's own bomb check follows the same limit.
- Damage: an image is decoded in full (a truncated file is an error), and a PNG's chunk checksums
  and end chunk are verified, so what validate calls unreadable no export copies.
- Masks (`read_mask_pixels`, `mask_indices`): values are class indices 0..255, taken as stored.
  16-bit, 32-bit and float masks are accepted where every value is a whole number 0..255 (then
  losslessly); any other value is an error naming the mask and the value, never rescaled or
  wrapped. A 1-bit mask reads as 0/1. Alpha is dropped only where it carries nothing (opaque, or
  transparent exactly where the mask is 0); otherwise the mask is refused.
- Images: PNG, JPEG and BMP are stored byte for byte in a DS folder, whatever their bit depth.
  Other formats are re-encoded losslessly as PNG (`to_png_mode`): 8-bit grey/colour as they are,
  16-bit grey as 16-bit PNG, 1-bit as 0/255 grey, palettes expanded to RGB, alpha dropped. Float
  images, 32-bit integer images beyond 0..65535 and TIFFs with more than 8 bits per colour
  channel (which Pillow reduces to 8) have no lossless PNG form and are refused with a fix.
- Views (`read_rgb`, for drawing, hashing and models): 8-bit RGB; 16-bit grey is mapped linearly
  (value >> 8), which is a documented, lossy view of a losslessly stored image.
- Listings (`is_image_file`, `list_images`): an entry named like an image that is not a readable
  file (a folder, a dangling or looping symlink) is a FormatError, never skipped silently.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import json
import os
import re
import shutil
import stat
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from defectspectrum.errors import FormatError, InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PNG_COMPRESS_LEVEL = 1  # zlib level for masks and re-encoded images: fast, and masks compress well anyway
KEEP_AS_IS_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")  # copied byte for byte into a DS folder

# The largest image read without --max-pixels: a 16384 x 16384 line-scan frame (268 megapixels, 768 MiB
# as 8-bit RGB) passes; 30000 x 30000 (900 megapixels, 2.5 GiB decoded, times the worker count) does not.
DEFAULT_MAX_PIXELS = 16384 * 16384
MAX_PIXELS_ENV = "DEFECTSPECTRUM_MAX_PIXELS"
# The longest side read at all (OpenCV's CV_IO_MAX_IMAGE_WIDTH/HEIGHT): a 1 x 10^8 strip is within the
# pixel limit, but Pillow cannot resample it (thumbnails, hashes) and OpenCV-based tools cannot load it.
MAX_SIDE = 1 << 20
SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # masks: one value a pixel
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_INT32_MODES = ("I", "I;32", "I;32B", "I;32L")  # 32-bit integers: their values must be looked at
_ALPHA_MODES = {"LA": 1, "La": 1, "PA": 1, "RGBA": 3, "RGBa": 3}  # mode -> channels before the alpha

Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS  # Pillow's own check; `_open_header` keeps it at `max_pixels()`


def is_image_file(path: Path) -> bool:
    """True for a regular file with an image extension (any case), hidden files excluded.

    An entry that is named like an image but cannot be read as a file (a folder, a dangling or
    looping symlink, a FIFO) is a FormatError naming it: skipping it would quietly turn, say, an
    image's mask into no mask. A path with no entry at all is simply False.
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
        return False
    try:
        mode = path.stat().st_mode  # follows symlinks
    except OSError as exc:
        if exc.errno == errno.ENOENT and not os.path.lexists(path):
            return False  # no entry at all
        if exc.errno == errno.ELOOP:
            what = "a symlink loop"
        elif exc.errno == errno.ENOENT:
            what = f"a dangling symlink (its target {_link_target(path)} is missing)"
        else:
            what = f"unreadable ({exc.strerror})"
        raise FormatError(f"{path}: named like an image but is {what}; fix the link or remove it") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise FormatError(f"{path}: named like an image but is {what}; rename or remove it") from None
    return True


def _link_target(path: Path) -> str:
    try:
        return repr(os.readlink(path))
    except OSError:
        return "or a folder above it"


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder`, sorted; with `recursive` also in its sub-folders (symlinked folders
    followed once each). Hidden files and folders are skipped; an entry named like an image that is
    not a readable file is a FormatError (see `is_image_file`), never skipped."""
    folder = Path(folder)
    found: list[Path] = []
    pending, seen = [folder], set()
    while pending:
        current = pending.pop()
        try:
            info = current.stat()
            if (info.st_dev, info.st_ino) in seen:  # a symlinked folder seen before: read each once, never loop
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = list(current.iterdir())
        except OSError as exc:
            raise InputError(f"{current}: cannot list the folder ({exc.strerror}); check the path and its "
                             "permissions") from None
        for entry in entries:
            if is_image_file(entry):
                found.append(entry)
            elif recursive and not entry.name.startswith(".") and _is_folder(entry):
                pending.append(entry)
    return sorted(found)


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a looping symlink not named like an image: not a folder to descend into
        return False


_TEMP_NUMBERS = itertools.count()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; on success it replaces `path`
    in one rename, on failure it is removed. The name is unique per process and call (cheaper to
    create than mkstemp's, and created with the usual permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path) and not (path.is_symlink() or path.is_file()):
        kind = "a folder" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise InputError(f"{path}: is {kind}; give the path of a file to write")
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{next(_TEMP_NUMBERS)}.tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def direct_path(path: Path) -> Iterator[Path]:
    """Yield `path` itself, its folder created: for files written inside a private staging folder
    (see `defectspectrum.staging.staged_folder`), where the folder's one rename is the atomic step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    yield path


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """`value` safe for a spreadsheet: text that a spreadsheet would run as a formula (starting with
    =, +, -, @, tab or CR, e.g. a class name from a hostile data set) gets a leading apostrophe;
    numbers, and text that reads as a number, are kept as they are."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document (one header line, `\n` line ends) with every cell made safe by `csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write `csv_text(header, rows)` to `path` atomically."""
    write_text_atomic(path, csv_text(header, rows))


def copy_file_atomic(src: Path, dst: Path) -> None:
    """Copy the bytes of `src` to `dst` atomically (the source is only read)."""
    if not Path(src).is_file():
        raise InputError(f"{src}: file not found; check the path or restore the file")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def save_png(image: np.ndarray | Image.Image, path: Path, compress_level: int = PNG_COMPRESS_LEVEL) -> None:
    """Save an (H, W) or (H, W, 3) uint8 array, or a PIL image, as PNG at `path` (no temp file)."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    image.save(path, format="PNG", compress_level=compress_level)


def save_png_atomic(image: np.ndarray | Image.Image, path: Path, compress_level: int = PNG_COMPRESS_LEVEL) -> None:
    """`save_png` atomically: the file appears complete or not at all."""
    with atomic_path(path) as tmp:
        save_png(image, tmp, compress_level)


class ImageTooLargeError(InputError):
    """An image above the pixel limit (`max_pixels`): refused before decoding, as a possible decompression bomb."""


_max_pixels_override: int | None = None  # set by `pixel_limit` / `set_max_pixels`


@contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """Within the block, refuse images above `limit` pixels (None: keep the current limit).

    The limit is settled on entry: a bad $DEFECTSPECTRUM_MAX_PIXELS is one InputError here, before
    any work, not an error counted against every image read in the block."""
    global _max_pixels_override
    before = _max_pixels_override
    _max_pixels_override = _checked_limit(limit) if limit is not None else max_pixels()
    try:
        yield
    finally:
        _max_pixels_override = before


def set_max_pixels(limit: int | None) -> None:
    """Set the pixel limit of this process (None: back to the environment variable or the default);
    for worker processes, which do not inherit a `pixel_limit` block."""
    global _max_pixels_override
    _max_pixels_override = _checked_limit(limit) if limit is not None else None


def _checked_limit(limit: int) -> int:
    if limit < 1:
        raise InputError(f"--max-pixels {limit}: give a positive number of pixels, e.g. {DEFAULT_MAX_PIXELS}")
    return int(limit)


def max_pixels() -> int:
    """The largest image (width x height) read now: `pixel_limit`, else $DEFECTSPECTRUM_MAX_PIXELS, else
    `DEFAULT_MAX_PIXELS`."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(text.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={text!r}: give a positive whole number of pixels, "
                         f"e.g. {DEFAULT_MAX_PIXELS}")
    return limit


def require_pixels_within_limit(where: str, width: int, height: int) -> None:
    """InputError naming `where` unless a `width` x `height` image is within `max_pixels()` (for sizes
    known before any file is read, e.g. a COCO image entry about to be rasterised)."""
    limit = max_pixels()
    if max(width, height) > MAX_SIDE:
        raise ImageTooLargeError(f"{where}: image is {width}x{height}; a side longer than {MAX_SIDE} pixels is "
                                 "refused, whatever --max-pixels says (OpenCV, and so mmseg, reads no longer side, "
                                 "and resampling it runs out of memory): crop or tile the image")
    if width * height > limit:
        pixels = width * height
        raise ImageTooLargeError(f"{where}: image is {width}x{height} = {pixels} pixels, above the limit of {limit} "
                                 "pixels (a guard against decompression bombs); if it is genuine, pass "
                                 f"--max-pixels {pixels} or set {MAX_PIXELS_ENV}")


def _too_large(path: Path, exc: Exception, limit: int) -> ImageTooLargeError:
    """The error for an image Pillow refused as a bomb: its message holds the pixel count, not the size."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{found.group(1)} pixels" if found else "larger than twice the limit"
    needed = found.group(1) if found else "N"
    return ImageTooLargeError(f"{path}: image has {size}, above the limit of {limit} pixels (a guard against "
                              f"decompression bombs); if it is genuine, pass --max-pixels {needed} or set "
                              f"{MAX_PIXELS_ENV}")


def _unreadable(path: Path, exc: BaseException) -> InputError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"{path}: cannot read image ({reason}); re-export or remove the file")


def _open_header(path: Path) -> Image.Image:
    """Open `path` reading only its header; InputError for a missing or unreadable file and for one
    above the pixel limit, before any pixel is decoded."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        what = "file not found" if exc.errno in (errno.ENOENT, errno.ENOTDIR) else f"cannot read it ({exc.strerror})"
        raise InputError(f"{path}: {what}; check the path") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: is {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}, not an image "
                         "file; check the path")
    limit = max_pixels()
    Image.MAX_IMAGE_PIXELS = limit  # Pillow: a warning above it (checked below, naming the size), an error above 2x
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise _too_large(path, exc, limit) from None
    except Exception as exc:  # Pillow's plugins raise many types on hostile headers
        raise _unreadable(path, exc) from None
    width, height = image.size
    if width * height > limit or max(width, height) > MAX_SIDE:
        image.close()
        require_pixels_within_limit(str(path), width, height)
    return image


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image within the pixel limit, or raise InputError naming the file.

    The size is checked from the header before decoding. A PNG's chunks are checked too
    (`_png_problem`): Pillow decodes a PNG that lost its tail or has a damaged checksum without
    complaint, where libpng (OpenCV, mmseg) refuses it.
    """
    path = Path(path)
    image = _open_header(path)
    if image.format == "PNG":
        problem = _png_problem(path)
        if problem is not None:
            image.close()
            raise _damaged(path, "PNG", problem)
    _decode(path, image, image.load)
    return image


def _damaged(path: Path, kind: str, problem: str) -> InputError:
    return InputError(f"{path}: damaged {kind} ({problem}); re-export or remove the file")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_problem(path: Path) -> str | None:
    """What is wrong with a PNG's chunks that Pillow decodes without complaint, or None: a checksum
    mismatch, a chunk cut short, no IEND. Reads the file once; nothing is inflated (a cheap check)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if handle.read(8) != _PNG_SIGNATURE:
            return "no PNG signature"
        while True:
            head = handle.read(8)
            if len(head) < 8:
                return "the file ends before its IEND chunk"
            length, kind = struct.unpack(">I4s", head)
            name = kind.decode("ascii") if kind.isalpha() else repr(kind)
            if handle.tell() + length + 4 > size:  # checked before reading: a hostile length is never allocated
                return f"the file ends inside its {name} chunk"
            crc, left = zlib.crc32(kind), length
            while left:  # in steps: a chunk as large as the file is never held at once
                piece = handle.read(min(left, 1 << 20))
                crc, left = zlib.crc32(piece, crc), left - len(piece)
            if crc != struct.unpack(">I", handle.read(4))[0]:
                return f"checksum mismatch in its {name} chunk"
            if kind == b"IEND":
                return None


def _decode(path: Path, image: Image.Image, step: Callable[[], object]) -> None:
    """Run a decoding step of `image`, turning Pillow's many error types into one InputError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            step()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # frames larger than the header
        image.close()
        raise _too_large(path, exc, max_pixels()) from None
    except Exception as exc:  # truncated or damaged data: OSError, SyntaxError, ValueError, struct.error, ...
        image.close()
        raise _unreadable(path, exc) from None


def _where(image: Image.Image, path: Path | str | None) -> str:
    return str(path if path is not None else getattr(image, "filename", "") or "image")


def check_image_pixels(image: Image.Image, path: Path | str | None = None) -> None:
    """InputError unless a decoded image has a meaning in 8/16-bit integers (float images and 32-bit
    values beyond 0..65535 do not: showing or storing them would change what they say)."""
    where = _where(image, path)
    if image.mode == "F":
        raise InputError(f"{where}: a floating-point image; its values have no fixed 8/16-bit scale, so it "
                         "cannot be shown or stored without changing them: rescale it to 8- or 16-bit "
                         "integers (e.g. a 16-bit PNG) first")
    if image.mode in _INT32_MODES:
        values = np.asarray(image)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise InputError(f"{where}: a 32-bit integer image with values {low}..{high}, outside 16 bits; "
                             "rescale it to 8- or 16-bit integers (e.g. a 16-bit PNG) first")


def check_image(path: Path) -> tuple[int, int]:
    """Decode an image once, within the pixel limit, and check its values (`check_image_pixels`);
    returns its (height, width). Exports call it before copying an image's bytes anywhere."""
    with open_image(path) as image:
        check_image_pixels(image, path)
        return image.height, image.width


_JPEG_TAIL = 1 << 16  # where a JPEG's end marker is looked for: data some cameras append after it stays allowed


def _jpeg_problem(path: Path) -> str | None:
    """What shows a JPEG cut short without decoding it, or None: no end-of-image marker (FF D9) in its
    last 64 KiB. (Damage inside the entropy-coded data is not seen; a full decode mostly passes it too.)"""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - _JPEG_TAIL))
        return None if b"\xff\xd9" in handle.read() else "no end-of-image marker: the file was cut short"


def check_image_file(path: Path) -> tuple[int, int]:
    """`check_image` without decoding where the format allows a cheap check; returns (height, width).

    PNG: the header within the pixel limit and every chunk's length and checksum (`_png_problem`);
    JPEG: the header and its end marker (`_jpeg_problem`). Float images are refused from the header.
    Other formats, and 32-bit integer images (whose values must be looked at), are decoded (`check_image`).
    For copying a file byte for byte (`data convert`): its size comes from the header."""
    path = Path(path)
    image = _open_header(path)
    with image:
        if image.format not in ("PNG", "JPEG") or image.mode in _INT32_MODES:
            return check_image(path)
        problem = _png_problem(path) if image.format == "PNG" else _jpeg_problem(path)
        if problem is not None:
            raise _damaged(path, image.format, problem)
        check_image_pixels(image, path)  # the mode alone: a float image is refused
        return image.height, image.width


def image_view(image: Image.Image, path: Path | str | None = None) -> Image.Image:
    """A decoded image as 8-bit "L" or "RGB" for viewing: 16-bit grey as value >> 8 (linear, lossy
    view), 1-bit as 0/255, palettes expanded, alpha dropped; InputError where `check_image_pixels` says."""
    check_image_pixels(image, path)
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in (*_SIXTEEN_BIT_MODES, *_INT32_MODES):
        values = np.asarray(image).astype(np.uint32)
        return Image.fromarray((values >> 8).astype(np.uint8))
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    return image.convert("RGB")


def read_rgb(path: Path) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB (see `image_view` for grey, 16-bit and palette images)."""
    view = image_view(open_image(path), path)
    return np.asarray(view if view.mode == "RGB" else view.convert("RGB"))


def mask_indices(image: Image.Image, path: Path | str | None = None) -> np.ndarray:
    """A decoded single-channel mask (a mode in SINGLE_CHANNEL_MODES) as (H, W) uint8 values as stored:
    InputError naming the mask where a value is not a whole number 0..255 (never wrapped or rescaled)."""
    where = _where(image, path)
    if image.mode not in SINGLE_CHANNEL_MODES:
        raise InputError(f"{where}: mask is {image.mode}, not single-channel class indices; save it as an "
                         "8-bit grey index mask")
    values = np.asarray(image)
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            raise InputError(f"{where}: float mask holds {values[~finite][0]}; class indices are whole numbers "
                             "0..255: save the mask as 8-bit class indices")
        fractional = values != np.floor(values)
        if fractional.any():
            raise InputError(f"{where}: float mask holds {_number(values[fractional][0])}, not a whole number; class "
                             "indices are whole numbers 0..255: save the mask as 8-bit class indices")
    low, high = _number(values.min(initial=0)), _number(values.max(initial=0))
    if high > 255:
        raise InputError(f"{where}: mask value {high} is above 255 ({image.mode} mask); class indices are "
                         "0..255 and are never rescaled or wrapped: save the mask with 8-bit class indices")
    if low < 0:
        raise InputError(f"{where}: mask value {low} is negative; class indices are 0..255: save the mask "
                         "with 8-bit class indices")
    return values.astype(np.uint8)


def _number(value: Any) -> int | float:
    """A numpy scalar as a plain int where it is whole (for messages)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if float(value).is_integer() else float(value)


def read_mask_pixels(path: Path) -> np.ndarray:
    """A mask file's pixels as stored: (H, W) uint8 for grey/index/palette masks (palette indices, not
    colours), (H, W, 3) uint8 for colour masks. Alpha is dropped only where it says nothing the values do
    not (opaque, or transparent exactly on 0 pixels); other values are errors (see `mask_indices`)."""
    image = open_image(path)
    if image.mode in SINGLE_CHANNEL_MODES:
        return mask_indices(image, path)
    if image.mode == "RGB":
        return np.asarray(image)
    if image.mode in _ALPHA_MODES:
        channels = _ALPHA_MODES[image.mode]
        pixels = np.asarray(image)
        values, alpha = pixels[..., :channels], pixels[..., channels]
        opaque = alpha == 255
        if not opaque.all() and not (((alpha == 0) | opaque).all() and np.array_equal(opaque, values.any(axis=-1))):
            raise InputError(f"{path}: mask has an alpha channel that carries part of its meaning (transparent "
                             "pixels that are not 0, or opaque 0 pixels beside transparent ones); save it without "
                             "alpha, with the classes in its grey or colour values")
        return np.ascontiguousarray(values[..., 0] if channels == 1 else values)
    raise InputError(f"{path}: mask is {image.mode}; save it as an 8-bit grey/index or RGB PNG")


def to_png_mode(image: Image.Image, path: Path | str | None = None) -> Image.Image:
    """`image` in a mode a DS folder stores as PNG without loss: 8-bit grey or RGB, or 16-bit grey
    ("I;16"); 1-bit becomes 0/255 grey, palettes RGB, alpha is dropped. InputError for images with no
    lossless PNG form (see the module docstring)."""
    check_image_pixels(image, path)
    bits = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample: Pillow reduces 16-bit colour to 8
    bits = max(bits) if isinstance(bits, tuple) and bits else bits
    if image.mode not in SINGLE_CHANNEL_MODES and isinstance(bits, int) and bits > 8:
        raise InputError(f"{_where(image, path)}: a colour TIFF with {bits} bits per channel, which would be "
                         "stored with 8; save it as a 16-bit PNG (copied as is) or as 8-bit first")
    if image.mode in ("L", "RGB", "I;16"):
        return image
    if image.mode in (*_SIXTEEN_BIT_MODES, *_INT32_MODES):
        return Image.fromarray(np.asarray(image).astype(np.uint16))
    if image.mode in ("1", "LA", "La"):
        return image.convert("L")
    return image.convert("RGB")


def binarize(pixels: np.ndarray) -> np.ndarray:
    """Foreground of a binary mask as bool: 0/1 masks by > 0, 0/255 (also JPEG-damaged) by >= 128."""
    if pixels.ndim == 3:
        pixels = pixels.max(axis=2)
    if pixels.max(initial=0) <= 1:
        return pixels > 0
    return pixels >= 128


def read_binary_mask(path: Path) -> np.ndarray:
    """A binary (0/255, 0/1 or JPEG-damaged) mask file as a bool (H, W) array."""
    return binarize(read_mask_pixels(path))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) read from the file header (nothing decoded), or InputError; images above the
    pixel limit are refused here too."""
    with _open_header(path) as image:
        width, height = image.size
    return height, width


@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for reading bytes, where it is a regular file; before a byte is read, InputError
    where it is a pipe, a device or a socket (a pipe would block forever, a device never end) and
    IsADirectoryError for a folder (as `open` raises). Other OSErrors (missing, permission) as they are."""
    path = Path(path)
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: is not a regular file (a pipe, device or socket); give a regular file")
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        yield handle


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents, or InputError naming the file (missing, not a regular file, not UTF-8)."""
    path = Path(path)
    try:
        with open_regular(path) as handle:
            return handle.read().decode("utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found; check the path") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc


def read_json(path: Path) -> Any:
    """Parse a JSON file, or raise InputError naming the file, line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
                         "fix the file") from exc
    except RecursionError:
        raise InputError(f"{path}: invalid JSON (nested too deeply); fix the file") from None
    except ValueError:  # an integer too long to convert
        raise InputError(f"{path}: invalid JSON (a number with too many digits); fix the file") from None


def yaml_error(path: Path, exc: Exception) -> InputError:
    """The InputError for a YAML syntax error in `path`, naming its line and column."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InputError(f"{path}: invalid YAML{where}: {problem}; fix the file")


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, or raise InputError naming the file and line."""
    import yaml

    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise InputError(f"{path}: invalid YAML (nested too deeply); fix the file") from None
    except ValueError:  # an integer too long to convert
        raise InputError(f"{path}: invalid YAML (a number with too many digits); fix the file") from None
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from exc
