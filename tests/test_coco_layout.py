"""The COCO export in the standard layout, as pycocotools and datumaro load it, and the reader
finding images in the standard layouts (`annotations/instances_<split>.json` + `images/<split>/`,
`<split>2017/`, `--images DIR`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.classes import ClassMap, global_lookup
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import detect_format, open_reader
from defectspectrum.data.formats.coco import export_coco, region_polygon, split_of
from defectspectrum.regions import regions

# pycocotools' decode (annToMask) trips NumPy 2's copy-keyword DeprecationWarning on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _holed_mask() -> np.ndarray:
    mask = np.zeros((9, 11), np.uint8)
    mask[1:6, 1:6] = 1          # crack: a ring ...
    mask[3, 3] = 0              # ... with a background hole: RLE even with --polygons
    mask[2:5, 6:8] = 2          # poke touching the crack
    mask[8, 10] = 3             # a 1-px region in the corner
    mask[0, 9] = 1              # two pixels meeting diagonally: one 8-connected region
    mask[1, 10] = 1
    mask[7, 0:3] = 2            # a staircase
    mask[8, 3:5] = 2
    return mask


@pytest.fixture
def source(tmp_path: Path) -> DSFolder:
    rng = np.random.default_rng(3)
    folder = DSFolder.create(tmp_path / "src", objects={"capsule": ["crack", "poke", "scratch"], "tile": ["oil"]})
    folder.add_sample("capsule", "c1", rng.integers(0, 255, (9, 11, 3), dtype=np.uint8), _holed_mask(),
                      split="train", caption="a cracked capsule", defect_type="crack")
    folder.add_sample("capsule", "c2", rng.integers(0, 255, (9, 11, 3), dtype=np.uint8), np.zeros((9, 11), np.uint8),
                      split="val", defect_type="good")
    noisy = rng.integers(0, 4, (13, 17), dtype=np.uint8)
    folder.add_sample("capsule", "noise", rng.integers(0, 255, (13, 17), dtype=np.uint8), noisy, split="holdout",
                      synthetic=True, defect_type="combined")
    jpg = tmp_path / "tile.jpg"
    Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(jpg, quality=90)
    oil = np.zeros((6, 8), np.uint8)
    oil[2:4, 1:7] = 1
    folder.add_sample("tile", "t1", jpg, oil, defect_type="oil")  # no split
    folder.add_sample("tile", "c1", rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), oil, split="train",
                      defect_type="oil")  # file-name clash with capsule/c1? no: object prefix keeps them apart
    folder.save()
    return folder


def _global_mask(folder: DSFolder, sample_id: str) -> np.ndarray:
    sample = folder[sample_id]
    table = global_lookup(folder.objects)[sample.object]
    return table[folder.load_mask(sample)].astype(np.int64)


def _coco_mask(coco: COCO, image_id: int) -> np.ndarray:
    """The image's annotations drawn by pycocotools, each with its category id."""
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), np.int64)
    for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        drawn = coco.annToMask(annotation).astype(bool)
        assert not (mask[drawn] != 0).any(), "regions do not overlap"
        mask[drawn] = annotation["category_id"]
    return mask


def test_export_writes_the_standard_layout(source: DSFolder, tmp_path: Path) -> None:
    out = export_coco(source, tmp_path / "out")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["annotations/instances_holdout.json", "annotations/instances_train.json",
                     "annotations/instances_unsplit.json", "annotations/instances_val.json",
                     "images/holdout/capsule_noise.png", "images/train/capsule_c1.png", "images/train/tile_c1.png",
                     "images/unsplit/tile_t1.jpg", "images/val/capsule_c2.png"]
    assert not any(p.is_symlink() for p in out.rglob("*"))
    image_ids = []
    for path in (out / "annotations").iterdir():
        data = json.loads(path.read_text(encoding="utf-8"))
        split = path.name.removeprefix("instances_").removesuffix(".json")
        assert [c["name"] for c in data["categories"]] == ["capsule/crack", "capsule/poke", "capsule/scratch",
                                                           "tile/oil"]
        assert data["defectspectrum"]["format"] == "defectspectrum-coco"
        for image in data["images"]:
            assert "/" not in image["file_name"]
            copied = out / "images" / split / image["file_name"]
            assert copied.read_bytes() == source.image_path(source[image["sample_id"]]).read_bytes()
            assert image["split"] == (None if split == "unsplit" else split)
            image_ids.append(image["id"])
    assert sorted(image_ids) == [1, 2, 3, 4, 5], "image ids are unique over all files"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "no staging folder left"


def test_pycocotools_loads_every_json_and_draws_the_masks_exactly(source: DSFolder, tmp_path: Path) -> None:
    out = export_coco(source, tmp_path / "out")
    seen = set()
    for path in sorted((out / "annotations").iterdir()):
        coco = COCO(str(path))
        for image_id, info in coco.imgs.items():
            expected = _global_mask(source, info["sample_id"])
            np.testing.assert_array_equal(_coco_mask(coco, image_id), expected, err_msg=info["sample_id"])
            assert len(coco.getAnnIds(imgIds=[image_id])) == sum(1 for _ in regions(source.load_mask(
                source[info["sample_id"]])))
            seen.add(info["sample_id"])
    assert seen == {s.id for s in source}


def test_polygons_reproduce_every_region_exactly(source: DSFolder, tmp_path: Path) -> None:
    out = export_coco(source, tmp_path / "out", polygons=True)
    count = 0
    for path in sorted((out / "annotations").iterdir()):
        coco = COCO(str(path))
        assert coco.dataset["defectspectrum"]["rle_regions"] == 0
        for image_id, info in coco.imgs.items():
            np.testing.assert_array_equal(_coco_mask(coco, image_id), _global_mask(source, info["sample_id"]),
                                          err_msg=info["sample_id"])
            for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
                segmentation = annotation["segmentation"]
                assert isinstance(segmentation, list) and len(segmentation) == 1 and len(segmentation[0]) >= 8
                count += 1
    assert count > 10
    train = json.loads((out / "annotations" / "instances_train.json").read_text(encoding="utf-8"))
    ring = [a for a in train["annotations"] if a["area"] == 24]  # the 5x5 crack ring minus its hole
    assert len(ring) == 1
    drawn = mask_utils.decode(mask_utils.frPyObjects(ring[0]["segmentation"], 9, 11)[0])
    assert drawn[3, 3] == 0 and drawn[1:6, 1:6].sum() == 24, "the hole stays a hole"


def test_label_studio_converter_reads_the_polygon_export(source: DSFolder, tmp_path: Path) -> None:
    converter = pytest.importorskip("label_studio_converter.imports.coco",
                                    reason="label-studio-converter is not installed")
    out = export_coco(source, tmp_path / "out", polygons=True)
    for path in sorted((out / "annotations").iterdir()):
        tasks_path = tmp_path / f"{path.stem}.ls.json"
        converter.convert_coco_to_ls(str(path), str(tasks_path), image_root_url="/data/")
        tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
        polygons = [r for t in tasks for r in t["annotations"][0]["result"] if r["type"] == "polygonlabels"]
        assert len(polygons) == len(json.loads(path.read_text(encoding="utf-8"))["annotations"])


def test_a_polygon_too_long_for_the_reader_is_written_as_rle_and_counted(source: DSFolder, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from defectspectrum.data.formats import coco

    monkeypatch.setattr(coco, "outline_limit", lambda height, width: 12)  # only 1-px regions (outline 4) fit
    out = export_coco(source, tmp_path / "out", polygons=True)
    train = json.loads((out / "annotations" / "instances_train.json").read_text(encoding="utf-8"))
    kinds = [isinstance(a["segmentation"], list) for a in train["annotations"]]
    assert any(kinds) and not all(kinds)
    assert train["defectspectrum"]["rle_regions"] == kinds.count(False)
    coco_file = COCO(str(out / "annotations" / "instances_train.json"))
    for image_id, info in coco_file.imgs.items():
        np.testing.assert_array_equal(_coco_mask(coco_file, image_id), _global_mask(source, info["sample_id"]))


def _has_hole(region: np.ndarray) -> bool:
    """Independently of the exporter: background pixels not reachable from outside (4-connected)."""
    padded = np.pad(region, 1).astype(np.uint8)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1, flags=4)
    return bool((flood == 0).any())


def test_polygon_tracing_is_exact_on_random_masks() -> None:
    rng = np.random.default_rng(7)
    holed = count = 0
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 20, 2))
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        for region in regions(mask):
            polygon = region_polygon(region, (height, width))
            assert polygon is not None
            holed += _has_hole(region.binary())
            count += 1
            drawn = mask_utils.decode(mask_utils.frPyObjects([polygon], height, width)[0]).astype(bool)
            np.testing.assert_array_equal(drawn, region.binary())
    assert holed > 30 and count > 1000, (holed, count)


def test_a_region_with_many_holes_is_one_exact_polygon() -> None:
    mask = np.ones((60, 80), np.uint8)
    mask[1::2, 1::2] = 0  # 1200 one-pixel holes
    region = next(regions(mask))
    polygon = region_polygon(region, mask.shape)
    assert polygon is not None
    drawn = mask_utils.decode(mask_utils.frPyObjects([polygon], 60, 80)[0]).astype(bool)
    np.testing.assert_array_equal(drawn, mask.astype(bool))


@pytest.mark.parametrize("polygons", [False, True])
def test_the_export_folder_converts_back_exactly(source: DSFolder, tmp_path: Path, polygons: bool) -> None:
    out = export_coco(source, tmp_path / "out", polygons=polygons)
    assert detect_format(out) == "coco"
    back = convert(out, tmp_path / "back", workers=1)
    assert list(back.objects.items()) == list(source.objects.items())
    assert sorted(s.id for s in back) == sorted(s.id for s in source)
    for sample in source:
        copy = back[sample.id]
        np.testing.assert_array_equal(back.load_mask(copy), source.load_mask(sample), err_msg=sample.id)
        assert back.image_path(copy).read_bytes() == source.image_path(sample).read_bytes()
        assert (copy.split, copy.caption, copy.defect_type, copy.synthetic) == \
            (sample.split, sample.caption, sample.defect_type, sample.synthetic), sample.id


def test_one_json_of_the_export_restores_its_split(source: DSFolder, tmp_path: Path) -> None:
    out = export_coco(source, tmp_path / "out")
    back = convert(out / "annotations" / "instances_train.json", tmp_path / "train")
    assert sorted(s.id for s in back) == ["capsule/c1", "tile/c1"]
    assert {s.split for s in back} == {"train"}
    assert list(back.objects) == ["capsule", "tile"], "every object's class map comes along"
    assert sorted(s.id for s in convert(out / "annotations", tmp_path / "all")) == sorted(s.id for s in source)


def test_link_hard_links_and_falls_back_to_a_copy(source: DSFolder, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    linked = export_coco(source, tmp_path / "linked", link=True)
    original = source.image_path(source["capsule/c1"])
    assert os.path.samefile(linked / "images" / "train" / "capsule_c1.png", original)

    def refuse(*_: object, **__: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    copied = export_coco(source, tmp_path / "copied", link=True)
    target = copied / "images" / "train" / "capsule_c1.png"
    assert not os.path.samefile(target, original) and target.read_bytes() == original.read_bytes()


def test_cli_export_options(source: DSFolder, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "export", str(source.root), str(tmp_path / "out"), "--to", "coco",
                                 "--polygons"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "annotations" / "instances_val.json").read_text(encoding="utf-8"))
    assert data["defectspectrum"]["segmentation"] == "polygons"
    result = runner.invoke(app, ["data", "export", str(source.root), str(tmp_path / "mm"), "--to", "mmseg",
                                 "--polygons"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: option(s) --polygons do not apply to --to mmseg"]
    result = runner.invoke(app, ["data", "export", str(source.root), str(tmp_path / "x.json"), "--to", "coco"])
    assert result.exit_code == 2 and "give a folder name without .json" in result.output
    assert not (tmp_path / "mm").exists() and not (tmp_path / "x.json").exists()


# -- the reader in the standard layouts of other tools ----------------------------------------------------


def _plain_coco(file_name: str, image_id: int = 1) -> dict:
    return {"images": [{"id": image_id, "file_name": file_name, "height": 4, "width": 5}],
            "categories": [{"id": 1, "name": "dent"}],
            "annotations": [{"id": 1, "image_id": image_id, "category_id": 1,
                             "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]}]}


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(path)


def _annotations(root: Path, split: str, data: dict) -> Path:
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("images", ["{split}", "images/{split}"])
def test_reader_finds_images_in_the_standard_layouts(tmp_path: Path, images: str) -> None:
    root = tmp_path / "coco2017"
    for split, image_id in (("train2017", 1), ("val2017", 2)):
        _annotations(root, split, _plain_coco(f"{image_id:012d}.jpg", image_id))
        _image(root / images.format(split=split) / f"{image_id:012d}.jpg")
    assert detect_format(root) == "coco"
    folder = convert(root, tmp_path / "ds")
    assert folder.objects == {"coco2017": ClassMap(("background", "dent"))}, "object: the data set folder"
    assert {s.name: s.split for s in folder} == {"000000000001": "train", "000000000002": "val"}
    assert folder.load_mask(folder["coco2017/000000000001"])[1:3, 1:3].tolist() == [[1, 1], [1, 1]]
    one = convert(root / "annotations" / "instances_val2017.json", tmp_path / "val")
    assert [(s.id, s.split) for s in one] == [("coco2017/000000000002", "val")]


def test_images_option_overrides_the_look_up(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _annotations(root, "train", _plain_coco("a.png"))
    _image(root / "images" / "train" / "a.png")
    elsewhere = tmp_path / "pictures"
    _image(elsewhere / "train" / "a.png")
    Image.fromarray(np.full((4, 5, 3), 200, np.uint8)).save(elsewhere / "train" / "a.png")
    result = CliRunner().invoke(app, ["data", "convert", "--from", "coco", str(root), str(tmp_path / "ds"),
                                      "--images", str(elsewhere)])
    assert result.exit_code == 0, result.output
    folder = DSFolder.open(tmp_path / "ds")
    assert folder.load_image(folder["set/a"]).max() == 200, "read from --images, not from the data set's images/"
    result = CliRunner().invoke(app, ["data", "convert", "--from", "mvtec", str(root), str(tmp_path / "ds2"),
                                      "--images", str(elsewhere)])
    assert result.exit_code == 2 and "--images do not apply to format 'mvtec'" in result.output


def test_split_names_of_instance_files() -> None:
    assert [split_of(t) for t in ("train2017", "val2014", "valid", "validation", "test", "Train")] == \
        ["train", "val", "val", "val", "test", "train"]
    assert [split_of(t) for t in ("unsplit", "default", "all", None)] == [None] * 4
    assert split_of("holdout") == "holdout"


def test_plain_files_must_agree_on_categories(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _annotations(root, "train", _plain_coco("a.png"))
    other = _plain_coco("b.png")
    other["categories"] = [{"id": 1, "name": "scratch"}]
    _annotations(root, "val", other)
    with pytest.raises(Exception, match=r"instances_val\.json: category id 1 is 'scratch' here but 'dent'"):
        open_reader("coco", root)


# -- datumaro -------------------------------------------------------------------------------------------


def test_datumaro_imports_the_export(source: DSFolder, tmp_path: Path) -> None:
    dm = pytest.importorskip("datumaro", reason="datumaro is not installed (pip install datumaro to run this check)")
    out = export_coco(source, tmp_path / "out")
    dataset = dm.Dataset.import_from(str(out), "coco_instances")
    assert len(dataset) == len(source)
    assert set(dataset.subsets()) == {"train", "val", "holdout", "unsplit"}
    labels = dataset.categories()[dm.AnnotationType.label]
    masks = [(item, a) for item in dataset for a in item.annotations if a.type == dm.AnnotationType.mask]
    assert len(masks) == sum(1 for s in source for _ in regions(source.load_mask(s)))
    oil = [(item, a) for item, a in masks if item.id == "tile_t1"]
    assert len(oil) == 1
    item, annotation = oil[0]
    assert item.subset == "unsplit" and labels[annotation.label].name == "tile/oil"
    np.testing.assert_array_equal(annotation.image, source.load_mask(source["tile/t1"]) == 1)
    assert item.media.data.shape == (6, 8, 3)
    polygons = dm.Dataset.import_from(str(export_coco(source, tmp_path / "polygons", polygons=True)), "coco_instances")
    shapes = [a for item in polygons for a in item.annotations if a.type == dm.AnnotationType.polygon]
    assert len(polygons) == len(source) and len(shapes) == len(masks)
