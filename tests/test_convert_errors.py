"""Bad input to `data convert` (one line, exit 2, nothing written or changed) and broken DS folder indexes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import SchemaError

H, W = 6, 8


def _png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


def _image(path: Path, seed: int = 0) -> Path:
    return _png(path, np.random.default_rng(seed).integers(0, 255, (H, W, 3)))


def _blob(value: int = 255, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:3, 2:4] = value
    return mask


def _mvtec(root: Path, defects: int = 3) -> Path:
    """A tiny native MVTec tree: part/train/good (2), part/test/scratch (`defects`) with masks."""
    for i in range(2):
        _image(root / "part" / "train" / "good" / f"{i:03d}.png", i)
    for i in range(defects):
        _image(root / "part" / "test" / "scratch" / f"{i:03d}.png", 10 + i)
        _png(root / "part" / "ground_truth" / "scratch" / f"{i:03d}_mask.png", _blob())
    return root


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fails(*args: str) -> str:
    """Run `data convert ARGS`; assert exit code 2 and exactly one `error:` line, and return it."""
    result = CliRunner().invoke(app, ["data", "convert", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def _succeeds(*args: str) -> None:
    result = CliRunner().invoke(app, ["data", "convert", *args])
    assert result.exit_code == 0, result.output


# -- the source ------------------------------------------------------------------------------------------------


def test_missing_source_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    line = _fails(str(missing), str(tmp_path / "ds"))
    assert f"{missing}: folder not found; check the path" in line
    assert f"{missing}: folder not found" in _fails("--from", "folder", str(missing), str(tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


def test_empty_source_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _fails(str(empty), str(tmp_path / "ds"))
    assert f"{empty}: cannot tell the layout; pass --from" in line
    line = _fails("--from", "folder", str(empty), str(tmp_path / "ds"))
    assert f"{empty}: no images found" in line and "check the folder" in line
    assert f"{empty}: no MVTec category" in _fails("--from", "mvtec", str(empty), str(tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


def test_corrupt_image_names_the_file_and_leaves_no_dst(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    bad = src / "part" / "test" / "scratch" / "002.png"  # the last sample: the others are written first
    bad.write_bytes(b"\x89PNG garbage, not an image" * 10)
    line = _fails(str(src), str(tmp_path / "ds"))
    assert f"{bad}: cannot read image" in line and "re-export or remove the file" in line
    assert not (tmp_path / "ds").exists()


def test_corrupt_mask_names_the_mask(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    bad = src / "part" / "ground_truth" / "scratch" / "001_mask.png"
    bad.write_bytes(b"garbage")
    assert f"{bad}: cannot read image" in _fails(str(src), str(tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


def test_mask_of_another_size_is_refused_unless_resize_masks(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    small = _png(src / "part" / "ground_truth" / "scratch" / "001_mask.png", _blob(shape=(3, 4)))
    line = _fails(str(src), str(tmp_path / "ds"))
    assert f"{small}: mask is 4x3 but image" in line and "is 8x6; pass --resize-masks" in line
    assert not (tmp_path / "ds").exists()
    _succeeds("--resize-masks", str(src), str(tmp_path / "ds"))
    folder = DSFolder.open(tmp_path / "ds")
    mask = folder.load_mask(folder["part/scratch_001"])
    assert mask.shape == (H, W)
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[2:6, 4:8] = 1  # nearest neighbour, exactly 2x: the 2x2 block of the 3x4 mask at (1, 2) doubles
    np.testing.assert_array_equal(mask, expected)


def test_index_outside_the_class_map(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "images" / "a.png")
    mask = _png(src / "masks" / "a.png", _blob(5))
    line = _fails("--from", "folder", "--classes", "scratch,dent", str(src), str(tmp_path / "ds"))
    assert f"{mask}: mask index 5 is outside the classes background, scratch, dent" in line
    assert "pass --classes" in line
    assert not (tmp_path / "ds").exists()


def test_option_that_does_not_apply_to_the_format(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    line = _fails("--from", "mvtec", "--mask-suffix", "_m", str(src), str(tmp_path / "ds"))
    assert "--mask-suffix do not apply to format 'mvtec'" in line


# -- the destination ---------------------------------------------------------------------------------------------


def test_dst_that_is_not_a_ds_folder_is_refused_and_untouched(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    dst = tmp_path / "precious"
    (dst / "sub").mkdir(parents=True)
    (dst / "notes.txt").write_text("do not delete")
    (dst / "sub" / "data.bin").write_bytes(bytes(range(256)))
    before = _tree_digest(dst)
    for extra in ([], ["--overwrite"]):
        line = _fails(*extra, str(src), str(dst))
        assert f"{dst}: exists, is not empty and is not a DS folder; choose a new output folder" in line
        assert _tree_digest(dst) == before
    afile = tmp_path / "afile.txt"
    afile.write_text("keep")
    assert f"{afile}: exists and is not a folder" in _fails(str(src), str(afile))
    assert afile.read_text() == "keep"


def test_existing_ds_folder_needs_overwrite(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    dst = tmp_path / "ds"
    _succeeds(str(src), str(dst))
    before = _tree_digest(dst)
    assert f"{dst}: is already a DS folder; pass --overwrite" in _fails(str(src), str(dst))
    assert _tree_digest(dst) == before
    (src / "part" / "test" / "scratch" / "002.png").unlink()
    (src / "part" / "ground_truth" / "scratch" / "002_mask.png").unlink()
    _succeeds("--overwrite", str(src), str(dst))
    assert len(DSFolder.open(dst)) == 4
    assert not (dst / "part" / "images" / "scratch_002.png").exists()  # the old folder was replaced, not merged


def test_dst_inside_the_source_is_refused(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    before = _tree_digest(src)
    line = _fails(str(src), str(src / "out"))
    assert f"{src / 'out'}: the output folder must lie outside the source" in line
    assert f"{src}: the output folder must lie outside the source" in _fails(str(src), str(src))
    line = _fails(str(src / "part"), str(src))
    assert f"{src}: the output folder must not contain the source" in line
    assert _tree_digest(src) == before
    assert not (src / "out").exists()


def test_source_is_never_modified(tmp_path: Path) -> None:
    src = _mvtec(tmp_path / "src")
    folder_src = tmp_path / "flat"
    _image(folder_src / "a.png")
    _png(folder_src / "a_mask.png", _blob())
    before, before_flat = _tree_digest(src), _tree_digest(folder_src)
    _succeeds(str(src), str(tmp_path / "ds1"))
    _succeeds("--workers", "2", str(src), str(tmp_path / "ds2"))
    _succeeds("--from", "folder", str(folder_src), str(tmp_path / "ds3"))
    (src / "part" / "test" / "scratch" / "001.png").write_bytes(b"broken")
    before_broken = _tree_digest(src)
    _fails(str(src), str(tmp_path / "ds4"))
    assert _tree_digest(src) == before_broken
    assert set(before_broken) == set(before)  # no file added or removed in the source
    assert _tree_digest(folder_src) == before_flat
    assert len(DSFolder.open(tmp_path / "ds1")) == 5 and len(DSFolder.open(tmp_path / "ds2")) == 5


@pytest.mark.parametrize("workers", ["1", "2"])
def test_failed_conversion_leaves_no_half_written_dst(tmp_path: Path, workers: str) -> None:
    src = _mvtec(tmp_path / "src", defects=6)
    (src / "part" / "test" / "scratch" / "005.png").write_bytes(b"not a png")
    _fails("--workers", workers, str(src), str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails("--workers", workers, str(src), str(empty))
    assert empty.is_dir() and not any(empty.iterdir())  # an existing empty DST is left as it was


# -- opening a DS folder ---------------------------------------------------------------------------------------


@pytest.fixture()
def ds(tmp_path: Path) -> Path:
    dst = tmp_path / "ds"
    _succeeds(str(_mvtec(tmp_path / "src")), str(dst))
    return dst


def _edit_dataset(ds: Path, **changes: object) -> Path:
    path = ds / "dataset.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_open_unknown_schema_version(ds: Path) -> None:
    path = _edit_dataset(ds, version=99)
    with pytest.raises(SchemaError, match=f"{path}: schema version 99 is not supported.*upgrade defectspectrum"):
        DSFolder.open(ds)


def test_open_malformed_dataset_json(ds: Path) -> None:
    path = ds / "dataset.json"
    path.write_text('{\n  "format": "defectspectrum",\n  "version": 1,\n  "objects": {\n}')
    with pytest.raises(SchemaError, match=f"{path}: invalid JSON at line 5"):
        DSFolder.open(ds)


def test_open_dataset_json_of_another_format(ds: Path) -> None:
    path = _edit_dataset(ds, format="coco")
    with pytest.raises(SchemaError, match=f"{path}: not a defectspectrum dataset.json"):
        DSFolder.open(ds)


@pytest.mark.parametrize(("line", "match"), [
    ('{"id": "part/x", "object": "part", "image": "a.png"', "invalid JSON"),
    ('["part/x", "part"]', "expected a JSON object per line"),
    ('{"id": "part/x", "object": "part", "image": "a.png"}', r"missing or non-string field\(s\) mask"),
])
def test_open_malformed_samples_line(ds: Path, line: str, match: str) -> None:
    path = ds / "samples.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(2, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SchemaError, match=f"{path}:3: {match}"):
        DSFolder.open(ds)


def test_open_sample_of_unknown_object(ds: Path) -> None:
    path = ds / "samples.jsonl"
    path.write_text(path.read_text() + '{"id": "gear/x", "object": "gear", "image": "a.png", "mask": "a.png"}\n')
    with pytest.raises(SchemaError, match=f"{path}:[0-9]+: sample 'gear/x' names unknown object 'gear'"):
        DSFolder.open(ds)


def test_cli_reports_a_broken_ds_folder_in_one_line(ds: Path) -> None:
    _edit_dataset(ds, version=2)
    result = CliRunner().invoke(app, ["data", "stats", str(ds)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "schema version 2 is not supported" in lines[0]
