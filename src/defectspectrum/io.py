"""File I/O shared by every reader and writer: atomic writes and checked image/mask reads."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from defectspectrum.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PNG_COMPRESS_LEVEL = 1  # zlib level for masks and re-encoded images: fast, and masks compress well anyway
KEEP_AS_IS_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")  # copied byte for byte into a DS folder

Image.MAX_IMAGE_PIXELS = 30_000 * 30_000  # industrial line scans are large; refuse only absurd sizes


def is_image_file(path: Path) -> bool:
    """True for a regular file with an image extension (any case), hidden files excluded."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


_TEMP_NUMBERS = itertools.count()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; on success it replaces `path`
    in one rename, on failure it is removed. The name is unique per process and call (cheaper to
    create than mkstemp's, and created with the usual permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, or raise InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found; check the path")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: cannot read image ({exc}); re-export or remove the file") from exc
    return image


def read_rgb(path: Path) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB (grey and palette images are expanded)."""
    image = open_image(path)
    if image.mode != "RGB":
        image = _to_8bit(image).convert("RGB")
    return np.asarray(image)


def read_mask_pixels(path: Path) -> np.ndarray:
    """A mask file's pixels as stored: (H, W) for grey/index/palette masks, (H, W, 3) for colour masks."""
    image = _to_8bit(open_image(path))
    if image.mode in ("RGBA", "LA"):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    elif image.mode not in ("L", "P", "RGB"):
        image = image.convert("L")
    return np.asarray(image)


def to_png_mode(image: Image.Image) -> Image.Image:
    """`image` in a mode a DS folder stores: grey stays 8-bit grey, everything else becomes RGB."""
    image = _to_8bit(image)
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 1-bit images as 8-bit grey (values kept where they fit: index masks stay indices)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).astype(np.int64)
        if values.max(initial=0) > 255:
            values = values >> 8
        return Image.fromarray(values.astype(np.uint8), mode="L")
    if image.mode == "1":
        return image.convert("L")
    return image


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
    """(height, width) read from the file header, or InputError."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read image ({exc}); re-export or remove the file") from exc
    return height, width


def read_json(path: Path) -> Any:
    """Parse a JSON file, or raise InputError naming the file, line and column."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found; check the path") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
                         "fix the file") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, or raise InputError naming the file and line."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found; check the path") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: invalid YAML{where}: {problem}; fix the file") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
