"""DS folder -> COCO / mmseg -> DS folder keeps every mask pixel, class map, object, split and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.export import export


def _capsule_mask() -> np.ndarray:
    mask = np.zeros((7, 11), np.uint8)  # non-square
    mask[1:6, 1:6] = 1          # crack: a ring ...
    mask[3, 3] = 0              # ... with a background hole
    mask[2:5, 6:8] = 2          # poke touching the crack
    mask[6, 10] = 3             # scratch: a 1-px region in the corner
    mask[0, 9] = 1              # a second crack region
    mask[1, 10] = 1             # diagonal neighbour of it: same 8-connected region
    return mask


def _tile_mask() -> np.ndarray:
    mask = np.zeros((9, 5), np.uint8)
    mask[1:8, 0:4] = 2          # rough, with a hole filled by another class
    mask[3:5, 1:3] = 1          # oil inside rough's hole
    mask[8, 4] = 1              # touches rough diagonally only
    return mask


@pytest.fixture
def source(tmp_path: Path) -> DSFolder:
    rng = np.random.default_rng(0)
    objects = {"capsule": ["crack", "poke", "scratch"], "tile": ["oil", "rough"]}
    folder = DSFolder.create(tmp_path / "src", objects=objects)
    folder.add_sample("capsule", "c1", rng.integers(0, 255, (7, 11, 3), dtype=np.uint8), _capsule_mask(),
                      split="train", caption="a cracked capsule", defect_type="crack")
    folder.add_sample("capsule", "c2", rng.integers(0, 255, (7, 11, 3), dtype=np.uint8), np.zeros((7, 11), np.uint8),
                      split="val", defect_type="good")
    noisy = rng.integers(0, 4, (13, 17), dtype=np.uint8)  # every pixel a region boundary somewhere
    folder.add_sample("capsule", "noise", rng.integers(0, 255, (13, 17), dtype=np.uint8), noisy, split="test",
                      synthetic=True, defect_type="combined")
    jpg = tmp_path / "tile.jpg"
    Image.fromarray(rng.integers(0, 255, (9, 5, 3), dtype=np.uint8)).save(jpg, quality=90)
    folder.add_sample("tile", "t1", jpg, _tile_mask(), defect_type="combined")  # no split
    single = np.zeros((6, 8), np.uint8)
    single[0, 0] = 1
    folder.add_sample("tile", "t2", rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), single, split="train",
                      defect_type="oil")
    folder.save()
    return folder


def _assert_same(original: DSFolder, back: DSFolder, to: str = "coco") -> None:
    """`to` mmseg: the source mixes .png and .jpg images, and an mmseg export has one image suffix, so
    every image comes back as a PNG of the same pixels."""
    assert list(back.objects.items()) == list(original.objects.items())
    assert sorted(s.id for s in back) == sorted(s.id for s in original)
    for sample in original:
        copy = back[sample.id]
        np.testing.assert_array_equal(back.load_mask(copy), original.load_mask(sample), err_msg=sample.id)
        np.testing.assert_array_equal(back.load_image(copy), original.load_image(sample), err_msg=sample.id)
        assert Path(copy.image).suffix == (".png" if to == "mmseg" else Path(sample.image).suffix)
        assert (copy.split, copy.caption, copy.defect_type, copy.synthetic) == \
            (sample.split, sample.caption, sample.defect_type, sample.synthetic), sample.id


@pytest.mark.parametrize(("to", "out_name"), [("coco", "out_coco"), ("mmseg", "mm")])
def test_api_round_trip(source: DSFolder, tmp_path: Path, to: str, out_name: str) -> None:
    written = export(DSFolder.open(source.root), tmp_path / "export" / out_name, to)
    back = convert(written, tmp_path / "back", to)
    _assert_same(source, DSFolder.open(back.root), to)


@pytest.mark.parametrize(("to", "out_name"), [("coco", "out_coco"), ("mmseg", "mm")])
def test_round_trip_detects_the_format_and_runs_in_workers(source: DSFolder, tmp_path: Path, to: str,
                                                          out_name: str) -> None:
    written = export(source, tmp_path / out_name, to)
    back = convert(written, tmp_path / "back", "auto", workers=2)
    assert back.meta["source"]["format"] == to
    _assert_same(source, back, to)


@pytest.mark.parametrize(("to", "out_name"), [("coco", "out_coco"), ("mmseg", "mm")])
def test_cli_round_trip(source: DSFolder, tmp_path: Path, to: str, out_name: str) -> None:
    runner = CliRunner()
    out = tmp_path / out_name
    result = runner.invoke(app, ["data", "export", str(source.root), str(out), "--to", to])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "convert", "--from", to, str(out), str(tmp_path / "ds2")])
    assert result.exit_code == 0, result.output
    assert "5 samples (4 with defects, 1 defect-free) in 2 object(s)" in " ".join(result.output.split())
    _assert_same(source, DSFolder.open(tmp_path / "ds2"), to)


def test_cli_export_refuses_to_overwrite(source: DSFolder, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(app, ["data", "export", str(source.root), str(out), "--to", "coco"])
    assert result.exit_code == 2
    assert "out.json: exists" in result.output
    assert out.read_text(encoding="utf-8") == "{}"
