"""`data convert` copies PNG/JPEG images without decoding them, yet refuses damaged ones with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectspectrum import io
from defectspectrum.data import convert as convert_module
from defectspectrum.data.convert import convert
from defectspectrum.errors import InputError


def mvtec_tree(root: Path, suffix: str = ".png", count: int = 3) -> list[Path]:
    """A tiny MVTec AD tree (one defect type); returns the image files."""
    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        image = root / "part" / "test" / "dent" / f"{index:03d}{suffix}"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(image)
        mask = np.zeros((32, 48), np.uint8)
        mask[4:9, 5:12] = 255
        truth = root / "part" / "ground_truth" / "dent" / f"{index:03d}_mask.png"
        truth.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(truth)
        images.append(image)
    return images


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_copied_images_are_never_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    images = mvtec_tree(tmp_path / "src", suffix)
    decoded: list[Path] = []
    original = io.open_image

    def recording(path: Path) -> Image.Image:
        decoded.append(Path(path))
        return original(path)

    monkeypatch.setattr(io, "open_image", recording)
    monkeypatch.setattr(convert_module, "open_image", recording)
    folder = convert(tmp_path / "src", tmp_path / "ds", "mvtec")
    assert not set(decoded) & set(images)
    for sample, source in zip(sorted(folder, key=lambda s: s.name), images):
        assert folder.image_path(sample).read_bytes() == source.read_bytes()
        assert folder.load_mask(sample).shape == (32, 48)  # the size came from the header


def test_a_jpeg_cut_short_is_refused_naming_it(tmp_path: Path) -> None:
    images = mvtec_tree(tmp_path / "src", ".jpg")
    images[1].write_bytes(images[1].read_bytes()[:-200])
    with pytest.raises(InputError, match=f"^{images[1]}: damaged JPEG .*cut short"):
        convert(tmp_path / "src", tmp_path / "ds", "mvtec")
    assert not (tmp_path / "ds").exists()


def test_a_jpeg_with_data_after_its_end_marker_is_kept(tmp_path: Path) -> None:
    images = mvtec_tree(tmp_path / "src", ".jpg")
    images[0].write_bytes(images[0].read_bytes() + b"camera trailer" * 100)
    folder = convert(tmp_path / "src", tmp_path / "ds", "mvtec")
    assert len(folder) == 3
    assert images[0].read_bytes() in {folder.image_path(sample).read_bytes() for sample in folder}


def test_a_png_with_a_damaged_checksum_is_refused(tmp_path: Path) -> None:
    images = mvtec_tree(tmp_path / "src")
    data = bytearray(images[2].read_bytes())
    data[-20] ^= 0xFF  # inside the last IDAT chunk
    images[2].write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"^{images[2]}: damaged PNG"):
        convert(tmp_path / "src", tmp_path / "ds", "mvtec")


def test_formats_without_a_cheap_check_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "wide.tif"  # 32-bit values: they must be looked at
    Image.fromarray(np.full((4, 4), 70000, np.int32), mode="I").save(path)
    with pytest.raises(InputError, match="outside 16 bits"):
        io.check_image_file(path)
    assert io.check_image_file(mvtec_tree(tmp_path / "src", count=1)[0]) == (32, 48)
