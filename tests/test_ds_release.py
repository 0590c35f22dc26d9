"""The Defect Spectrum release reader and writer, on tiny trees laid out as docs/reference.md §1 says."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.ds_release import (
    CLASS_MAPS,
    DSReleaseReader,
    export_ds_release,
    read_captions,
)
from defectspectrum.errors import FormatError, InputError

H, W = 16, 20


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    image.save(path)
    return path


def photo(seed: int, grey: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W) if grey else (H, W, 3), dtype=np.uint8)


def index_mask(*boxes: tuple[int, int, int, int, int]) -> np.ndarray:
    """A uint8 index mask with (value, y0, y1, x0, x1) boxes."""
    mask = np.zeros((H, W), dtype=np.uint8)
    for value, y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = value
    return mask


def colour(mask: np.ndarray, offset: int = 0) -> np.ndarray:
    """A viewing colour mask (what rbg_mask/ and synthetic masks/ hold)."""
    table = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255],
                      [255, 0, 255], [128, 128, 0]], dtype=np.uint8)
    return np.roll(table, offset, axis=0)[mask]


def write_captions(path: Path, rows: list[tuple[str, str]], title_rows: int = 1) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for _ in range(title_rows):
        sheet.append(["Defect Spectrum captions"])
    sheet.append(["ID", " path ", "Defect  Description", "notes"])
    for index, (path_text, text) in enumerate(rows):
        sheet.append([index, path_text, text, None])
    workbook.save(path)


def make_release(root: Path) -> dict[str, np.ndarray]:
    """A release root with every subset and quirk; returns the expected mask of every sample id."""
    expected: dict[str, np.ndarray] = {}
    mv = root / "DS-MVTec"
    # bottle: rbg_mask naming, one defect, a good image without mask and one with an empty mask
    m = index_mask((1, 2, 6, 3, 9), (3, 10, 14, 12, 18))
    save(mv / "bottle/image/broken_large/000.png", photo(1))
    save(mv / "bottle/mask/broken_large/000_mask.png", m)
    save(mv / "bottle/rbg_mask/broken_large/000_rbg_mask.png", colour(m))
    expected["bottle/broken_large_000"] = m
    save(mv / "bottle/image/good/000.png", photo(2))
    expected["bottle/good_000"] = np.zeros((H, W), np.uint8)
    save(mv / "bottle/image/good/001.png", photo(3))
    save(mv / "bottle/mask/good/001_mask.png", np.zeros((H, W), np.uint8))
    expected["bottle/good_001"] = np.zeros((H, W), np.uint8)
    # pill: rgb_mask naming, combined holds several classes, one mask saved as RGB grey, one as RGBA grey
    m = index_mask((1, 0, 4, 0, 5), (3, 6, 9, 2, 8), (6, 11, 16, 10, 20))
    save(mv / "pill/image/combined/000.png", photo(4))
    save(mv / "pill/mask/combined/000_mask.png", m)
    save(mv / "pill/rgb_mask/combined/000_rgb_mask.png", colour(m))
    expected["pill/combined_000"] = m
    m = index_mask((1, 4, 12, 4, 12))
    save(mv / "pill/image/color/000.png", photo(5))
    save(mv / "pill/mask/color/000_mask.png", m, mode="RGB")
    expected["pill/color_000"] = m
    m = index_mask((5, 1, 3, 1, 19))
    save(mv / "pill/image/scratch/001.png", photo(6))
    save(mv / "pill/mask/scratch/001_mask.png", m, mode="RGBA")
    expected["pill/scratch_001"] = m
    write_captions(mv / "captions.xlsx", [
        ("Bottle/Image/broken_large/000.PNG", "a large break on the rim"),
        ("pill\\image\\combined\\000.png", "a pill with a crack and a colour spot"),
        ("DS-MVTec/pill/image/color/000.png", "a red stain"),
        ("scratch/001.png", "a scratch across the pill"),  # relative to the object folder
        ("pill/image/crack/009.png", "no such image"),
    ])
    # DS-VISION: nested and flat images, flat masks named <stem>_mask.png
    vi = root / "DS-VISION/Capacitor"
    m = index_mask((2, 3, 7, 3, 7))
    save(vi / "image/train/487.png", photo(7))
    save(vi / "mask/487_mask.png", m)
    expected["vision_capacitor/487"] = m
    m = index_mask((3, 8, 16, 0, 4), (1, 0, 2, 0, 20))
    save(vi / "image/488.png", photo(8))
    save(vi / "mask/488_mask.png", m)
    save(vi / "rbg_mask/476_rgb_mask.png", colour(m))
    expected["vision_capacitor/488"] = m
    # DS-DAGM: flat, grey images
    m = index_mask((5, 5, 11, 5, 11))
    save(root / "DS-DAGM/image/133.png", photo(9, grey=True))
    save(root / "DS-DAGM/mask/133_mask.png", m)
    save(root / "DS-DAGM/rbg_mask/133_rgb_mask.png", colour(m))
    expected["dagm/133"] = m
    # DS-Cotton-Fabric: JPEG images whose name carries the glossary defect name
    cf = root / "DS-Cotton-Fabric"
    m = index_mask((1, 0, 16, 9, 11))
    save(cf / "image/00960_0001_Slubs.jpg", photo(10))
    save(cf / "mask/00960_0001_Slubs_mask.png", m)
    expected["cotton_fabric/00960_0001_Slubs"] = m
    m = index_mask((2, 4, 8, 4, 8))
    save(cf / "image/00975_0025_End-Out.jpg", photo(11))
    save(cf / "mask/00975_0025_End-Out_mask.png", m)
    save(cf / "rbg_mask/00975_0025_End-Out_rbg_mask.png", colour(m))
    expected["cotton_fabric/00975_0025_End-Out"] = m
    # synthetic: labels in masks_converted_dir, colours in masks/ that differ from the real ones
    m = index_mask((2, 0, 8, 0, 10), (3, 8, 16, 10, 20))
    save(root / "synthetic_MVTec/bottle/images/0.png", photo(12))
    save(root / "synthetic_MVTec/bottle/masks/0.png", colour(m, offset=3))
    save(root / "synthetic_MVTec/bottle/masks_converted_dir/0.png", m)
    expected["bottle/syn_0"] = m
    m = index_mask((1, 2, 5, 2, 5))
    save(root / "synthetic_VISION/Capacitor/images/5.png", photo(13))
    save(root / "synthetic_VISION/Capacitor/masks/5.png", colour(m, offset=2))
    save(root / "synthetic_VISION/Capacitor/masks_converted_dir/5.png", m)
    expected["vision_capacitor/syn_5"] = m
    m = index_mask((2, 10, 14, 1, 19))
    save(root / "synthetic_Cotton_Fabric/cotton/images/7.png", photo(14))
    save(root / "synthetic_Cotton_Fabric/cotton/masks/7.png", colour(m, offset=1))
    save(root / "synthetic_Cotton_Fabric/cotton/masks_converted_dir/7.png", m)
    expected["cotton_fabric/syn_7"] = m
    return expected


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "Defect_Spectrum"
    return root, make_release(root)


def masks_of(folder: DSFolder) -> dict[str, np.ndarray]:
    return {sample.id: folder.load_mask(sample) for sample in folder}


def test_release_root_converts_every_subset_pixel_exactly(release, tmp_path):
    root, expected = release
    folder = convert(root, tmp_path / "ds", "ds-release")
    assert list(folder.objects) == ["bottle", "pill", "vision_capacitor", "dagm", "cotton_fabric"]
    assert folder.objects["bottle"].names == ("background", "broken_large", "broken_small", "contamination")
    assert folder.objects["pill"].names == ("background", "color", "contamination", "crack", "faulty_imprint",
                                            "scratch", "pill_type")
    assert folder.objects["vision_capacitor"].names == ("background", "scratch", "crush", "crack")
    assert folder.objects["dagm"].defects == ("scratch", "texture", "crush", "color", "dirty")
    assert folder.objects["cotton_fabric"].defects == ("texture", "bubble")
    reopened = DSFolder.open(tmp_path / "ds")
    got = masks_of(reopened)
    assert sorted(got) == sorted(expected)
    for sample_id, mask in expected.items():
        np.testing.assert_array_equal(got[sample_id], mask, err_msg=sample_id)


def test_release_metadata_defect_types_synthetic_and_captions(release, tmp_path):
    root, _ = release
    folder = convert(root, tmp_path / "ds", "ds-release")
    by_id = {s.id: s for s in folder}
    assert by_id["pill/combined_000"].defect_type == "combined"
    assert by_id["bottle/good_000"].is_good and by_id["bottle/good_001"].is_good
    assert by_id["cotton_fabric/00975_0025_End-Out"].defect_type == "End-Out"
    assert by_id["cotton_fabric/00960_0001_Slubs"].defect_type == "Slubs"
    assert by_id["dagm/133"].defect_type is None
    assert {s.id for s in folder if s.synthetic} == {"bottle/syn_0", "vision_capacitor/syn_5", "cotton_fabric/syn_7"}
    assert all(s.split is None for s in folder)
    assert by_id["bottle/broken_large_000"].caption == "a large break on the rim"
    assert by_id["pill/combined_000"].caption == "a pill with a crack and a colour spot"
    assert by_id["pill/color_000"].caption == "a red stain"
    assert by_id["pill/scratch_001"].caption == "a scratch across the pill"
    assert by_id["bottle/good_000"].caption is None and by_id["bottle/syn_0"].caption is None
    # images are copied byte for byte (JPEG stays JPEG)
    cotton = by_id["cotton_fabric/00960_0001_Slubs"]
    assert cotton.image.endswith(".jpg")
    source = root / "DS-Cotton-Fabric/image/00960_0001_Slubs.jpg"
    assert (folder.root / cotton.image).read_bytes() == source.read_bytes()


def test_single_subset_and_object_folders(release, tmp_path):
    root, expected = release
    dagm = convert(root / "DS-DAGM", tmp_path / "dagm", "ds-release")
    assert list(dagm.objects) == ["dagm"] and [s.id for s in dagm] == ["dagm/133"]
    pill = convert(root / "DS-MVTec" / "pill", tmp_path / "pill", "ds-release")
    assert list(pill.objects) == ["pill"]
    assert pill["pill/combined_000"].caption == "a pill with a crack and a colour spot"  # captions from the parent
    np.testing.assert_array_equal(pill.load_mask(pill["pill/combined_000"]), expected["pill/combined_000"])
    syn = convert(root / "synthetic_VISION" / "Capacitor", tmp_path / "syn", "ds-release")
    assert syn.objects == {"vision_capacitor": CLASS_MAPS["vision_capacitor"]}
    assert [(s.id, s.synthetic) for s in syn] == [("vision_capacitor/syn_5", True)]
    vision = convert(root / "DS-VISION", tmp_path / "vision", "ds-release")
    assert sorted(s.id for s in vision) == ["vision_capacitor/487", "vision_capacitor/488"]


def test_detect_claims_release_folders_only(release, tmp_path):
    root, _ = release
    for path in (root, root / "DS-MVTec", root / "DS-DAGM", root / "DS-VISION" / "Capacitor",
                 root / "synthetic_MVTec" / "bottle", root / "DS-MVTec" / "bottle"):
        assert DSReleaseReader.detect(path), path
    assert detect_format(root) == "ds-release"
    native = tmp_path / "mvtec_ad"
    save(native / "bottle/test/broken_large/000.png", photo(1))
    save(native / "bottle/ground_truth/broken_large/000_mask.png", index_mask((255, 0, 4, 0, 4)))
    assert not DSReleaseReader.detect(native) and not DSReleaseReader.detect(native / "bottle")
    unrelated = tmp_path / "shots"
    save(unrelated / "image/a.png", photo(1))
    save(unrelated / "mask/a_mask.png", index_mask((255, 0, 4, 0, 4)))
    assert not DSReleaseReader.detect(unrelated)  # unknown object, no classes.json: not ours
    cotton = tmp_path / "cotton_fabric"  # native Cotton-Fabric look-alike: binary masks, no colour masks
    save(cotton / "image/00960_0001_Slubs.jpg", photo(1))
    save(cotton / "mask/00960_0001_Slubs_mask.png", index_mask((255, 0, 4, 0, 4)))
    assert not DSReleaseReader.detect(cotton)
    moved = tmp_path / "copied" / "bottle"  # a DS-MVTec object folder taken out of its subset
    shutil.copytree(root / "DS-MVTec" / "bottle", moved)
    assert DSReleaseReader.detect(moved)
    assert convert(moved, tmp_path / "moved_ds", "auto").objects == {"bottle": CLASS_MAPS["bottle"]}
    ds = convert(root / "DS-DAGM", tmp_path / "ds", "ds-release")
    assert not DSReleaseReader.detect(ds.root)


def test_cli_auto_converts_release_root(release, tmp_path):
    root, expected = release
    result = CliRunner().invoke(app, ["data", "convert", str(root), str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    folder = DSFolder.open(tmp_path / "ds")
    assert folder.meta["source"]["format"] == "ds-release"
    assert len(folder) == len(expected)


def test_out_of_map_index_is_one_cli_error_naming_the_mask(release, tmp_path):
    root, _ = release
    bad = root / "DS-MVTec/bottle/mask/broken_large/000_mask.png"
    save(bad, index_mask((1, 0, 3, 0, 3), (7, 5, 6, 5, 6)))
    result = CliRunner().invoke(app, ["data", "convert", "--from", "ds-release", str(root), str(tmp_path / "ds")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert str(bad) in result.output.replace("\n", "") and "index 7" in result.output
    assert not (tmp_path / "ds").exists()


def test_colour_mask_in_mask_folder_is_refused(release, tmp_path):
    root, _ = release
    bad = root / "DS-MVTec/pill/mask/combined/000_mask.png"
    save(bad, colour(index_mask((1, 0, 4, 0, 4))))
    with pytest.raises(FormatError, match="colour mask") as info:
        convert(root / "DS-MVTec", tmp_path / "ds", "ds-release")
    assert str(bad) in str(info.value)


def test_defect_image_without_mask_names_the_image(release, tmp_path):
    root, _ = release
    (root / "DS-VISION/Capacitor/mask/488_mask.png").unlink()
    with pytest.raises(FormatError, match="488_mask.png") as info:
        list(open_reader("ds-release", root / "DS-VISION").samples())
    assert str(root / "DS-VISION/Capacitor/image/488.png") in str(info.value)
    assert "viewing only" in str(info.value)  # rbg_mask/ exists, and is not a substitute
    (root / "DS-MVTec/bottle/mask/broken_large/000_mask.png").unlink()
    with pytest.raises(FormatError, match="broken_large/000.png"):
        list(open_reader("ds-release", root / "DS-MVTec").samples())


def test_synthetic_without_masks_converted_dir_is_refused(release):
    root, _ = release
    converted = root / "synthetic_MVTec/bottle/masks_converted_dir"
    for path in converted.iterdir():
        path.unlink()
    converted.rmdir()
    with pytest.raises(FormatError, match="masks_converted_dir"):
        DSReleaseReader(root)


def test_unknown_object_needs_classes_json(release, tmp_path):
    root, _ = release
    save(root / "DS-MVTec/gadget/image/dent/000.png", photo(20))
    save(root / "DS-MVTec/gadget/mask/dent/000_mask.png", index_mask((1, 0, 4, 0, 4)))
    with pytest.raises(FormatError, match="gadget") as info:
        DSReleaseReader(root / "DS-MVTec")
    assert "classes.json" in str(info.value)
    (root / "DS-MVTec/classes.json").write_text('{"objects": {"gadget": ["background", "dent"], '
                                                '"bottle": ["background", "a", "b", "c"]}}')
    reader = DSReleaseReader(root / "DS-MVTec")
    assert reader.class_maps()["gadget"] == ClassMap(("background", "dent"))
    assert reader.class_maps()["bottle"].defects == ("a", "b", "c")  # the file overrides the built-in map
    assert reader.class_maps()["pill"] == CLASS_MAPS["pill"]


def test_real_and_synthetic_class_maps_must_agree(release):
    root, _ = release
    (root / "synthetic_MVTec/classes.json").write_text('{"objects": {"bottle": ["background", "x"]}}')
    with pytest.raises(FormatError, match="make them agree"):
        DSReleaseReader(root)


def test_captions_workbook_errors_name_the_file(release, tmp_path):
    root, _ = release
    path = root / "DS-MVTec/captions.xlsx"
    path.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="captions.xlsx") as info:
        list(DSReleaseReader(root / "DS-MVTec").samples())
    assert str(path) in str(info.value)
    workbook = openpyxl.Workbook()
    workbook.active.append(["file", "text"])
    workbook.save(path)
    with pytest.raises(InputError, match="defect description"):
        read_captions(path)


def test_reader_is_picklable_with_its_samples(release):
    root, _ = release
    reader = DSReleaseReader(root)
    items = list(reader.samples())
    clone = pickle.loads(pickle.dumps(reader))
    item = pickle.loads(pickle.dumps(items[0]))
    np.testing.assert_array_equal(clone.load_mask(item, (H, W)), reader.load_mask(items[0], (H, W)))


# -- the writer -----------------------------------------------------------------------------------------------


def make_ds_folder(root: Path) -> DSFolder:
    """A DS folder with a built-in object (own class order), an unknown object, captions, JPEG and good images."""
    folder = DSFolder.create(root, "demo", {
        "cable": ["bent_wire", "cable_swap", "combined"],  # not the release's cable map
        "widget": ["dent", "scuff", "burn"],  # in no built-in map
    })
    folder.add_sample("cable", "combined_000", photo(30), index_mask((1, 0, 3, 0, 3), (3, 5, 9, 5, 9)),
                      defect_type="combined", caption="two defects")
    folder.add_sample("cable", "good_000", photo(31), np.zeros((H, W), np.uint8), defect_type="good")
    jpg = save(root.parent / "src" / "w.jpg", photo(32))
    folder.add_sample("widget", "w1", jpg, index_mask((3, 1, 15, 1, 4), (2, 0, 2, 0, 20)), caption="burnt edge")
    folder.add_sample("widget", "w2", photo(33), index_mask((1, 6, 10, 6, 10)), defect_type="dent", synthetic=True)
    folder.save()
    return folder


def test_round_trip_export_read_convert(tmp_path):
    original = make_ds_folder(tmp_path / "ds")
    out = export_ds_release(original, tmp_path / "release")
    assert (out / "cable/image/combined/combined_000.png").is_file()
    assert (out / "cable/mask/combined/combined_000_mask.png").is_file()
    assert (out / "widget/image/defect/w1.jpg").is_file()
    rbg = np.asarray(Image.open(out / "cable/rbg_mask/combined/combined_000_rbg_mask.png"))
    assert rbg.ndim == 3 and (rbg[0, 0] != 0).any() and (rbg[15, 19] == 0).all()
    assert "widget" in (out / "classes.md").read_text()
    assert detect_format(out) == "ds-release"
    again = convert(out, tmp_path / "again", "auto")
    assert again.objects == original.objects
    assert sorted(s.id for s in again) == sorted(s.id for s in original)
    for sample in original:
        copy = again[sample.id]
        np.testing.assert_array_equal(again.load_mask(copy), original.load_mask(sample), err_msg=sample.id)
        assert copy.caption == sample.caption
        assert copy.defect_type == (sample.defect_type or "defect")  # no defect type: exported under defect/
        assert (again.root / copy.image).read_bytes() == (original.root / sample.image).read_bytes()


def test_round_trip_of_a_converted_release(release, tmp_path):
    root, expected = release
    first = convert(root / "DS-MVTec", tmp_path / "first", "ds-release")
    export_ds_release(first, tmp_path / "out")
    second = convert(tmp_path / "out", tmp_path / "second", "ds-release")
    assert second.objects == first.objects
    assert masks_of(second).keys() == masks_of(first).keys()
    for sample_id, mask in masks_of(second).items():
        np.testing.assert_array_equal(mask, expected[sample_id])
        assert second[sample_id].caption == first[sample_id].caption


def test_captions_workbook_written_with_path_and_description(tmp_path):
    out = export_ds_release(make_ds_folder(tmp_path / "ds"), tmp_path / "release")
    rows = list(openpyxl.load_workbook(out / "captions.xlsx").active.iter_rows(values_only=True))
    assert rows[0] == ("Path", "defect description")
    assert sorted(rows[1:]) == [("cable/image/combined/combined_000.png", "two defects"),
                                ("widget/image/defect/w1.jpg", "burnt edge")]


def test_export_refuses_non_empty_destination(tmp_path):
    folder = make_ds_folder(tmp_path / "ds")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="busy"):
        export_ds_release(folder, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    export_ds_release(folder, tmp_path / "empty_ok")  # an empty folder is fine


def test_cli_export_of_a_mask_index_outside_the_class_map_is_one_line_error(tmp_path):
    folder = make_ds_folder(tmp_path / "ds")
    broken = folder.mask_path(folder["widget/w2"])
    save(broken, np.full((H, W), 9, np.uint8))  # widget has 4 classes
    result = CliRunner().invoke(app, ["data", "export", str(tmp_path / "ds"), str(tmp_path / "rel"),
                                      "--to", "ds-release"])
    assert result.exit_code == 2, result.output
    assert "mask index 9 is outside the class map" in result.output and str(broken) in result.output
    assert not (tmp_path / "rel").exists()


def test_cli_export_to_ds_release(tmp_path):
    make_ds_folder(tmp_path / "ds")
    result = CliRunner().invoke(app, ["data", "export", str(tmp_path / "ds"), str(tmp_path / "rel"),
                                      "--to", "ds-release"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rel/classes.json").is_file()
    again = CliRunner().invoke(app, ["data", "export", str(tmp_path / "ds"), str(tmp_path / "rel"),
                                     "--to", "ds-release"])
    assert again.exit_code == 2 and "not an empty folder" in again.output


def test_captions_in_the_published_workbook_layout(tmp_path):
    """The published captions.xlsx: columns Path, object description, defect description; Path is
    `<object>/<defect folder>/<file>` without the `image/` level."""
    mv = tmp_path / "DS-MVTec"
    save(mv / "cable/image/bent_wire/000.png", photo(1))
    save(mv / "cable/mask/bent_wire/000_mask.png", index_mask((1, 2, 5, 2, 5)))
    save(mv / "cable/image/bent_wire/001.png", photo(2))
    save(mv / "cable/mask/bent_wire/001_mask.png", index_mask((1, 6, 9, 2, 5)))
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Path", "object description", "defect description"])
    sheet.append(["cable/bent_wire/000.png", "A cross-sectional view of a cable.", "One bent wire, copper yellow."])
    workbook.save(mv / "captions.xlsx")
    folder = convert(mv, tmp_path / "ds", "ds-release")
    assert folder["cable/bent_wire_000"].caption == "One bent wire, copper yellow."
    assert folder["cable/bent_wire_001"].caption is None
