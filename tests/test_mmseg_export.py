"""The mmseg export as mmsegmentation 1.x reads it (one image suffix, metainfo, a dataset config),
its paths built from safe names only, and the restore's own index checked like a DS folder's."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.classes import ClassMap, global_lookup
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.formats import open_reader
from defectspectrum.data.formats.mmseg import (
    DATASET_CONFIG,
    METAINFO_JSON,
    ExportPaths,
    export_mmseg,
    export_paths,
    image_suffix,
)
from defectspectrum.data.sample import Sample
from defectspectrum.draw import class_colors
from defectspectrum.errors import FormatError, InputError, SchemaError
from defectspectrum.io import read_rgb
from defectspectrum.paths import MAX_NAME, is_safe_name

RNG = np.random.default_rng(12)


def _noise(height: int, width: int, channels: int | None = 3) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _mask(height: int, width: int, value: int, *cells: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    for row, col in cells:
        mask[row, col] = value
    return mask


def _source(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> DSFolder:
    """A DS folder whose images are PNG (RGB and RGBA), JPEG, grey BMP and palette BMP files."""
    src = tmp_path / "src"
    folder = DSFolder.create(tmp_path / "ds", objects={"pill": ["crack", "color"], "wood": ["hole"]})
    folder.add_sample("pill", "a", _source(src / "a.png", Image.fromarray(_noise(6, 8))), _mask(6, 8, 1, (1, 1)),
                      split="train", caption="a crack", defect_type="crack")
    folder.add_sample("pill", "b", _source(src / "b.jpg", Image.fromarray(_noise(6, 8))), _mask(6, 8, 2, (2, 3)),
                      split="train", synthetic=True, defect_type="color")
    folder.add_sample("pill", "rgba", _source(src / "rgba.png", Image.fromarray(_noise(4, 4, 4), "RGBA")),
                      _mask(4, 4, 0), split="val", defect_type="good")
    folder.add_sample("wood", "c", _source(src / "c.bmp", Image.fromarray(_noise(5, 3, None), "L")),
                      _mask(5, 3, 1, (4, 2)), split="val", caption="a hole")
    palette = Image.fromarray(RNG.integers(0, 4, size=(5, 7), dtype=np.uint8), "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    folder.add_sample("wood", "d", _source(src / "d.bmp", palette), _mask(5, 7, 1, (0, 0)), split="test")
    folder.add_sample("wood", "e", _source(src / "e.jpg", Image.fromarray(_noise(5, 3))), _mask(5, 3, 0))
    folder.save()
    return folder


def _images(out: Path) -> list[Path]:
    return sorted(p for p in (out / "img_dir").rglob("*") if p.is_file())


def _records(out: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads((out / "samples.json").read_text())["samples"]
    return records


def _config(out: Path) -> dict[str, Any]:
    """dataset_config.py run as mmengine's Config.fromfile runs it ({{ fileDirname }} substituted)."""
    text = (out / DATASET_CONFIG).read_text(encoding="utf-8")
    text = re.sub(r"\{\{\s*fileDirname\s*\}\}", str(out).replace("\\", "/"), text)
    namespace: dict[str, Any] = {}
    exec(compile(text, str(out / DATASET_CONFIG), "exec"), {"__builtins__": {"dict": dict}}, namespace)
    return namespace


def _mmseg_pairs(dataset: dict[str, Any]) -> list[tuple[Path, Path]]:
    """(image, mask) pairs as mmseg 1.x's BaseSegDataset.load_data_list finds them: every file under
    img_path (recursively) that ends with img_suffix, its mask at the same relative path with the
    img_suffix replaced by seg_map_suffix."""
    root = Path(dataset["data_root"])
    img_dir, ann_dir = root / dataset["data_prefix"]["img_path"], root / dataset["data_prefix"]["seg_map_path"]
    pairs = []
    for dirpath, _, files in os.walk(img_dir):
        for file in files:
            relative = os.path.relpath(os.path.join(dirpath, file), img_dir)
            if relative.endswith(dataset["img_suffix"]):
                seg_map = relative.replace(dataset["img_suffix"], dataset["seg_map_suffix"])
                pairs.append((img_dir / relative, ann_dir / seg_map))
    return sorted(pairs)


# -- one image suffix ------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffixes", "expected"), [
    ([".png", ".PNG"], ".png"), ([".jpg", ".jpeg", ".JPG"], ".jpg"), ([".bmp"], ".bmp"),
    ([".png", ".jpg"], ".png"), ([".jpg", ".bmp"], ".png"), ([".tif"], ".png"), ([], ".png"),
])
def test_image_suffix_rule(suffixes: list[str], expected: str) -> None:
    assert image_suffix(suffixes) == expected


def test_mixed_suffixes_become_one_lossless_png_suffix(mixed: DSFolder, tmp_path: Path) -> None:
    out = export_mmseg(mixed, tmp_path / "mm")
    images = _images(out)
    assert len(images) == len(mixed)
    assert {p.suffix for p in images} == {".png"}, "mmseg takes one img_suffix"
    lookup = global_lookup(mixed.objects)
    by_key = {(r["object"], r["name"]): r for r in _records(out)}
    for sample in mixed:
        record = by_key[(sample.object, sample.name)]
        exported, source = out / record["image"], mixed.image_path(sample)
        assert np.array_equal(read_rgb(exported), read_rgb(source)), f"{sample.id}: decoded pixels differ"
        if source.suffix == ".png":
            assert exported.read_bytes() == source.read_bytes(), "PNG sources are copied byte for byte"
        mask = np.asarray(Image.open(out / record["mask"]))
        assert np.array_equal(mask, lookup[sample.object][mixed.load_mask(sample)])
    with Image.open(out / by_key[("wood", "c")]["image"]) as grey, Image.open(out / by_key[("pill", "rgba")]["image"]) \
            as rgba:
        assert (grey.mode, rgba.mode) == ("L", "RGBA"), "re-encoding keeps the pixel mode"
    assert _config(out)["img_suffix"] == ".png"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "no spool or temporary file is left"


def test_one_shared_suffix_is_copied_byte_for_byte(tmp_path: Path) -> None:
    folder = DSFolder.create(tmp_path / "ds", objects={"tile": ["crack"]})
    for name in ("x", "y.jpg"):  # a name holding the suffix: mmseg would rewrite it when pairing
        source = _source(tmp_path / "src" / f"{name}.jpg", Image.fromarray(_noise(4, 6)))
        folder.add_sample("tile", name, source, _mask(4, 6, 1, (0, 0)), split="train")
    folder.save()
    out = export_mmseg(folder, tmp_path / "mm")
    assert {p.suffix for p in _images(out)} == {".jpg"}
    for record in _records(out):
        sample = folder[f"tile/{record['name']}"]
        assert (out / record["image"]).read_bytes() == folder.image_path(sample).read_bytes()
        assert ".jpg" not in Path(record["image"]).stem
    config = _config(out)
    assert (config["img_suffix"], config["seg_map_suffix"]) == (".jpg", ".png")
    pairs = _mmseg_pairs(config["train_dataloader"]["dataset"])
    assert len(pairs) == 2 and all(mask.is_file() for _, mask in pairs)
    back = convert(out, tmp_path / "back", "mmseg")
    assert sorted(s.name for s in back) == ["x", "y.jpg"]


# -- metainfo and the dataset config ---------------------------------------------------------------


def test_metainfo_and_config_are_what_mmseg_reads(mixed: DSFolder, tmp_path: Path) -> None:
    out = export_mmseg(mixed, tmp_path / "mm")
    labels = ["background", "pill/crack", "pill/color", "wood/hole"]
    metainfo = json.loads((out / METAINFO_JSON).read_text())
    assert metainfo == {"classes": labels, "palette": class_colors(4).tolist()}
    config = _config(out)
    assert config["dataset_type"] == "BaseSegDataset"
    assert config["metainfo"] == {"classes": tuple(labels), "palette": class_colors(4).tolist()}
    records = _records(out)
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "test")):
        dataset = config[loader]["dataset"]
        assert dataset["type"] == "BaseSegDataset" and dataset["reduce_zero_label"] is False
        assert Path(dataset["data_root"]) == out
        assert dataset["data_prefix"] == {"img_path": f"img_dir/{split}", "seg_map_path": f"ann_dir/{split}"}
        pairs = _mmseg_pairs(dataset)
        assert [image for image, _ in pairs] == sorted(out / r["image"] for r in records if r["split"] == split)
        assert [mask for _, mask in pairs] == sorted(out / r["mask"] for r in records if r["split"] == split)
    assert config["val_evaluator"]["type"] == "IoUMetric"


def test_without_a_train_split_the_training_set_reads_every_split(tmp_path: Path) -> None:
    folder = DSFolder.create(tmp_path / "ds", objects={"tile": ["crack"]})
    folder.add_sample("tile", "a", _noise(4, 4), _mask(4, 4, 1, (1, 1)))
    folder.add_sample("tile", "b", _noise(4, 4), _mask(4, 4, 0), split="val")
    folder.save()
    out = export_mmseg(folder, tmp_path / "mm")
    config = _config(out)
    pairs = _mmseg_pairs(config["train_dataloader"]["dataset"])
    assert sorted(image.name for image, _ in pairs) == ["tile__a.png", "tile__b.png"]
    assert all(mask.is_file() for _, mask in pairs)
    assert "test_dataloader" not in config and "test_evaluator" not in config


def test_metainfo_names_the_classes_of_a_plain_read(mixed: DSFolder, tmp_path: Path) -> None:
    out = export_mmseg(mixed, tmp_path / "mm")
    (out / "classes.json").unlink()
    (out / "samples.json").unlink()
    reader = open_reader("mmseg", out)
    assert reader.class_maps()["mm"].defects == ("pill/crack", "pill/color", "wood/hole")


def test_mmsegmentation_loads_the_export_as_it_is(mixed: DSFolder, tmp_path: Path) -> None:
    try:
        from mmengine.config import Config
        from mmseg.registry import DATASETS
        from mmseg.utils import register_all_modules
    except ImportError as exc:
        pytest.skip(f"mmsegmentation 1.x is not importable here ({exc})")
    register_all_modules()
    out = export_mmseg(mixed, tmp_path / "mm")
    config = Config.fromfile(str(out / DATASET_CONFIG))
    records = _records(out)
    lookup = global_lookup(mixed.objects)
    for loader, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "test")):
        dataset = DATASETS.build(config[loader]["dataset"])
        listed = [r for r in records if r["split"] == split]
        assert len(dataset) == len(listed)
        assert list(dataset.metainfo["classes"]) == ["background", "pill/crack", "pill/color", "wood/hole"]
        assert [list(c) for c in dataset.metainfo["palette"]] == class_colors(4).tolist()
        for index in range(len(dataset)):
            item = dataset[index]
            path = Path(item["data_samples"].img_path)
            record = next(r for r in listed if out / r["image"] == path)
            sample = mixed[f"{record['object']}/{record['name']}"]
            image = item["inputs"].numpy().transpose(1, 2, 0)[..., ::-1]  # CHW BGR -> HWC RGB
            assert np.array_equal(image, read_rgb(mixed.image_path(sample)))
            seg = item["data_samples"].gt_sem_seg.data.numpy()[0]
            assert np.array_equal(seg, lookup[sample.object][mixed.load_mask(sample)])


# -- paths the writer builds -----------------------------------------------------------------------


def _in_memory(tmp_path: Path, **fields: Any) -> DSFolder:
    """A DS folder built through the Python API with one sample whose fields bypass DSFolder.open."""
    folder = DSFolder.create(tmp_path / "ds", objects={"metal": ["scratch"]})
    good = folder.add_sample("metal", "ok", _noise(4, 4), _mask(4, 4, 1, (0, 0)))
    hostile = Sample(**{"id": good.id, "object": "metal", "image": good.image, "mask": good.mask, **fields})
    return DSFolder(folder.root, "ds", {"metal": ClassMap(("background", "scratch"))}, [hostile])


def _outside(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.rglob("*PWNED*"))


@pytest.mark.parametrize(("sample_id", "object_name"), [
    ("metal/../../../../PWNED", "metal"), ("metal/a/../../PWNED", "metal"), ("metal/PW NED", "metal"),
    ("../../PWNED/x", "../../PWNED")])
def test_hostile_sample_names_are_refused_before_anything_is_written(tmp_path: Path, sample_id: str,
                                                                     object_name: str) -> None:
    with pytest.raises(InputError):  # the DS folder refuses such a sample outright
        _in_memory(tmp_path, id=sample_id, object=object_name)
    hostile = Sample(id=sample_id, object=object_name, image="i.png", mask="m.png")
    with pytest.raises(InputError, match="object and name must be safe names"):  # and the writer on its own
        export_paths(hostile, ".png", {})
    assert _outside(tmp_path) == []


@pytest.mark.parametrize("split", ["../../../../PWNED", "/tmp/PWNED", "..", "a/b", ".hidden"])
def test_hostile_split_stays_inside_the_export(tmp_path: Path, split: str) -> None:
    folder = _in_memory(tmp_path, split=split)
    out = export_mmseg(folder, tmp_path / "out" / "mm")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(tmp_path / "ds")]
    assert written and all(p.is_relative_to(out) for p in written)
    record = _records(out)[0]
    assert record["split"] == split, "the split value itself is kept in the index"
    split_dir = Path(record["image"]).parent.name
    assert is_safe_name(split_dir) and (out / "ann_dir" / split_dir / Path(record["mask"]).name).is_file()
    back = convert(out, tmp_path / "back", "mmseg")
    assert [s.split for s in back] == [split]


def test_non_string_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="split"):
        _in_memory(tmp_path, split=5)
    with pytest.raises(InputError, match="split must be a string or null, not 5"):
        export_paths(Sample(id="metal/a", object="metal", image="i.png", mask="m.png", split=5), ".png", {})


def test_export_paths_are_safe_unique_and_short(tmp_path: Path) -> None:
    taken: dict[str, set[str]] = {}
    long_name = "n" * MAX_NAME
    samples = [Sample(id=f"{'o' * MAX_NAME}/{long_name}", object="o" * MAX_NAME, image="i.png", mask="m.png",
                      split="s" * 300),
               Sample(id="obj/A", object="obj", image="i.png", mask="m.png", split="train"),
               Sample(id="obj/a", object="obj", image="i.png", mask="m.png", split="train"),
               Sample(id="obj/x.png", object="obj", image="i.png", mask="m.png", split="x.png")]
    planned = [export_paths(sample, ".png", taken) for sample in samples]
    for paths in planned:
        assert isinstance(paths, ExportPaths)
        for part in (paths.split_dir, paths.image_file, paths.mask_file):
            assert is_safe_name(part), part
        assert ".png" not in paths.image_rel.removesuffix(".png"), "mmseg replaces the suffix anywhere in the path"
    assert planned[1].image_file.lower() != planned[2].image_file.lower(), "names differing in case stay apart"


# -- the restore's own index -----------------------------------------------------------------------


@pytest.fixture
def exported(mixed: DSFolder, tmp_path: Path) -> Path:
    return export_mmseg(mixed, tmp_path / "mm")


def _edit_entry(out: Path, number: int, **changes: Any) -> None:
    data = json.loads((out / "samples.json").read_text())
    entry = data["samples"][number - 1]
    for key, value in changes.items():
        if value is _DROP:
            entry.pop(key, None)
        else:
            entry[key] = value
    (out / "samples.json").write_text(json.dumps(data))


_DROP = object()


@pytest.mark.parametrize(("changes", "message"), [
    ({"image": "/etc/passwd"}, r"sample 2 image: path '/etc/passwd' is absolute"),
    ({"mask": "../../secret.png"}, r"sample 2 mask: path '../../secret.png' has an empty, '\.' or '\.\.' part"),
    ({"image": "img_dir\\train\\x.png"}, r"sample 2 image: path .* contains a backslash"),
    ({"image": 7}, r"sample 2: missing or non-string field\(s\) image"),
    ({"name": "../../x"}, r"sample 2: name '\.\./\.\./x' is not a safe name"),
    ({"object": "pill/x"}, r"sample 2: object 'pill/x' is not a safe name"),
    ({"object": "nail"}, r"sample 2: names unknown object 'nail'"),
    ({"split": 5}, r"sample 2: split must be a string or null, not 5"),
    ({"caption": ["x"]}, r"sample 2: caption must be a string or null"),
    ({"defect_type": 3}, r"sample 2: defect_type must be a string or null"),
    ({"synthetic": "yes"}, r"sample 2: synthetic must be true or false, not 'yes'"),
    ({"name": "a"}, r"sample 2 repeats pill/a of sample 1"),
])
def test_restore_index_entries_are_checked(exported: Path, tmp_path: Path, changes: dict[str, Any],
                                           message: str) -> None:
    _edit_entry(exported, 2, **changes)
    with pytest.raises(FormatError, match=r"samples\.json: " + message) as caught:
        convert(exported, tmp_path / "back", "mmseg")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "back").exists()


def test_restore_entry_that_is_not_an_object(exported: Path, tmp_path: Path) -> None:
    data = json.loads((exported / "samples.json").read_text())
    data["samples"][0] = "img_dir/train/pill__a.png"
    (exported / "samples.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"samples\.json: sample 1: expected an object"):
        open_reader("mmseg", exported)


def test_restore_missing_optional_fields_default(exported: Path, tmp_path: Path) -> None:
    _edit_entry(exported, 1, caption=_DROP, synthetic=_DROP, split=_DROP, defect_type=_DROP)
    back = convert(exported, tmp_path / "back", "mmseg")
    assert (back["pill/a"].caption, back["pill/a"].synthetic, back["pill/a"].split) == (None, False, None)


def test_restore_symlink_leading_outside_is_refused(exported: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.fromarray(_noise(6, 8)).save(secret)
    record = _records(exported)[0]
    image = exported / record["image"]
    image.unlink()
    image.symlink_to(secret)
    with pytest.raises(FormatError, match=rf"samples\.json: sample 1 image: path '{record['image']}' leads outside"):
        convert(exported, tmp_path / "back", "mmseg")
    shutil.rmtree(exported / "ann_dir" / "train")
    (exported / "ann_dir" / "train").symlink_to(tmp_path / "src")
    with pytest.raises(FormatError, match=r"samples\.json: sample 1 (image|mask): path .* leads outside"):
        open_reader("mmseg", exported)


def test_restore_object_names_in_classes_json_must_be_safe(exported: Path) -> None:
    data = json.loads((exported / "classes.json").read_text())
    data["objects"] = {"../../evil": data["objects"]["pill"], "wood": data["objects"]["wood"]}
    (exported / "classes.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"classes\.json: object name '\.\./\.\./evil' must be letters"):
        open_reader("mmseg", exported)


def test_classes_files_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    _source(root / "img_dir" / "train" / "a.png", Image.fromarray(_noise(4, 4)))
    _source(root / "ann_dir" / "train" / "a.png", Image.fromarray(_mask(4, 4, 1, (0, 0))))
    (root / "classes.txt").write_bytes("background\nrayure\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"classes\.txt: not UTF-8 text .*; save it as UTF-8$"):
        open_reader("mmseg", root).class_maps()
    (root / "classes.json").write_bytes(b'["\xe9"]')
    with pytest.raises(InputError, match=r"classes\.json: not UTF-8 text .*; save it as UTF-8$"):
        open_reader("mmseg", root).class_maps()
    result = CliRunner().invoke(app, ["data", "convert", "--from", "mmseg", str(root), str(tmp_path / "ds")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: ") and len(result.output.strip().splitlines()) == 1


def test_export_written_before_metainfo_still_restores(exported: Path, mixed: DSFolder, tmp_path: Path) -> None:
    """An export of the earlier writer: mixed suffixes side by side, no metainfo.json or config."""
    (exported / METAINFO_JSON).unlink()
    (exported / DATASET_CONFIG).unlink()
    data = json.loads((exported / "samples.json").read_text())
    for record in data["samples"]:
        source = mixed.image_path(mixed[f"{record['object']}/{record['name']}"])
        old = Path(record["image"]).with_suffix(source.suffix).as_posix()
        (exported / record["image"]).unlink()
        shutil.copyfile(source, exported / old)
        record["image"] = old
    (exported / "samples.json").write_text(json.dumps(data))
    back = convert(exported, tmp_path / "back", "mmseg")
    for sample in mixed:
        restored = back[sample.id]
        assert back.image_path(restored).read_bytes() == mixed.image_path(sample).read_bytes()
        assert np.array_equal(back.load_mask(restored), mixed.load_mask(sample))


# -- the round trip through the command line -------------------------------------------------------


def test_cli_round_trip_of_a_mixed_folder_is_exact(mixed: DSFolder, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "export", str(mixed.root), str(tmp_path / "mm"), "--to", "mmseg"])
    assert result.exit_code == 0, result.output
    assert {p.suffix for p in _images(tmp_path / "mm")} == {".png"}
    result = runner.invoke(app, ["data", "convert", "--from", "mmseg", str(tmp_path / "mm"), str(tmp_path / "ds2")])
    assert result.exit_code == 0, result.output
    back = DSFolder.open(tmp_path / "ds2")
    assert back.objects == mixed.objects
    assert sorted(s.id for s in back) == sorted(s.id for s in mixed)
    for sample in mixed:
        restored = back[sample.id]
        assert (restored.split, restored.caption, restored.synthetic, restored.defect_type) == \
            (sample.split, sample.caption, sample.synthetic, sample.defect_type)
        assert np.array_equal(back.load_image(restored), mixed.load_image(sample)), sample.id
        assert np.array_equal(back.load_mask(restored), mixed.load_mask(sample)), sample.id
