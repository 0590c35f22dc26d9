"""The DS folder API: create, add, save, open, update; class maps; atomic, recoverable writes."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectspectrum.data import DSFolder
from defectspectrum.data.classes import ClassMap, global_lookup
from defectspectrum.data.convert import convert
from defectspectrum.data.dsfolder import DATASET_FILE, SAMPLES_FILE, IndexWriter, staged_ds_folder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError, SchemaError


def _image(seed: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


@pytest.fixture()
def folder(tmp_path: Path) -> DSFolder:
    ds = DSFolder.create(tmp_path / "ds", "demo", {"pill": ["crack", "color"], "wood": ["hole"]})
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 1:3], mask[4, 5] = 1, 2
    ds.add_sample("pill", "a 1", _image(0), mask, split="train", caption="A pill.", defect_type="combined")
    ds.add_sample("wood", "b", _image(1), np.zeros((6, 8), np.uint8), defect_type="good")
    ds.save()
    return ds


def test_created_folder_reopens_with_samples_and_pixels(folder: DSFolder) -> None:
    again = DSFolder.open(folder.root)
    assert again.name == "demo"
    assert again.objects["pill"].names == ("background", "crack", "color")
    assert [s.id for s in again] == ["pill/a_1", "wood/b"]  # names made file-safe
    sample = again["pill/a_1"]
    assert (sample.split, sample.caption, sample.defect_type) == ("train", "A pill.", "combined")
    assert np.array_equal(again.load_image(sample), _image(0))
    assert again.load_mask(sample)[4, 5] == 2 and again.load_mask(sample).sum() == 4 + 2
    assert again["wood/b"].is_good
    dataset = json.loads((folder.root / "dataset.json").read_text())
    assert dataset["format"] == "defectspectrum" and dataset["version"] == 1


def test_global_classes_number_every_object_class_once(folder: DSFolder) -> None:
    labels = [c.label for c in folder.global_classes()]
    assert labels == ["background", "pill/crack", "pill/color", "wood/hole"]
    tables = global_lookup(folder.objects)
    assert list(tables["pill"][:3]) == [0, 1, 2] and list(tables["wood"][:2]) == [0, 3]


def test_update_and_filter_by_split(folder: DSFolder) -> None:
    folder.update([folder["wood/b"].replace(split="val")])
    folder.save()
    again = DSFolder.open(folder.root)
    assert [s.id for s in again.samples(split="val")] == ["wood/b"]
    assert [s.id for s in again.samples(object="pill")] == ["pill/a_1"]
    with pytest.raises(InputError, match="no sample"):
        folder.update([folder["wood/b"].replace(id="wood/zzz")])


def test_add_sample_refuses_bad_masks_and_duplicates(folder: DSFolder) -> None:
    with pytest.raises(InputError, match="mask index 3 is outside the class map"):
        folder.add_sample("pill", "bad", _image(2), np.full((6, 8), 3, np.uint8))
    with pytest.raises(InputError, match="already exists"):
        folder.add_sample("wood", "b", _image(2), np.zeros((6, 8), np.uint8))
    with pytest.raises(InputError, match="unknown object 'metal'"):
        folder.add_sample("metal", "c", _image(2), np.zeros((6, 8), np.uint8))


def test_unknown_fields_survive_a_save(folder: DSFolder) -> None:
    lines = (folder.root / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0]) | {"reviewer": "ana"}
    (folder.root / "samples.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    again = DSFolder.open(folder.root)
    again.save()
    assert json.loads((folder.root / "samples.jsonl").read_text().splitlines()[0])["reviewer"] == "ana"


def test_samples_without_extra_fields_share_one_read_only_empty_dict(folder: DSFolder) -> None:
    plain, *others = DSFolder.open(folder.root)
    assert all(sample.extra is plain.extra for sample in others) and plain.extra == {}
    with pytest.raises(TypeError, match="read-only"):
        plain.extra["reviewer"] = "ana"
    assert pickle.loads(pickle.dumps(plain)).extra is plain.extra  # as workers receive samples
    assert Sample("a/b", "a", "i.png", "m.png", extra={}).extra is plain.extra
    given = plain.replace(extra={"reviewer": "ana"})
    assert given.extra == {"reviewer": "ana"} and plain.extra == {}
    assert given.to_json()["reviewer"] == "ana" and "extra" not in plain.to_json()


def test_class_map_rules() -> None:
    assert ClassMap.from_defects(["a"]).index("a") == 1
    with pytest.raises(InputError, match="index 0 must be 'background'"):
        ClassMap(("crack",))
    with pytest.raises(InputError, match="unique"):
        ClassMap.from_defects(["a", "a"])
    with pytest.raises(InputError, match="unknown class 'b'"):
        ClassMap.from_defects(["a"]).index("b")


def test_written_files_get_normal_permissions(folder: DSFolder) -> None:
    mode = stat.S_IMODE(os.stat(folder.root / "samples.jsonl").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_no_temporary_files_are_left(folder: DSFolder) -> None:
    leftovers = [p for p in folder.root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_staged_ds_folder_keeps_the_old_folder_when_the_write_fails(folder: DSFolder) -> None:
    before = (folder.root / "samples.jsonl").read_bytes()
    with pytest.raises(RuntimeError), staged_ds_folder(folder.root, overwrite=True) as staging:
        (staging / "partial.txt").write_text("half")
        raise RuntimeError("boom")
    assert (folder.root / "samples.jsonl").read_bytes() == before
    assert [p.name for p in folder.root.parent.iterdir()] == ["ds"]  # no staging folder left beside it


def test_failed_overwrite_conversion_keeps_the_old_ds_folder(folder: DSFolder, tmp_path: Path) -> None:
    src = tmp_path / "src" / "part"
    for sub in ("train/good", "test/scratch", "ground_truth/scratch"):
        (src / sub).mkdir(parents=True)
    Image.fromarray(_image(3)).save(src / "test" / "scratch" / "000.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(src / "ground_truth" / "scratch" / "000_mask.png")
    before = (folder.root / "samples.jsonl").read_bytes()
    with pytest.raises(InputError, match="mask is 5x5"):
        convert(tmp_path / "src", folder.root, "mvtec", overwrite=True)
    assert (folder.root / "samples.jsonl").read_bytes() == before
    assert len(DSFolder.open(folder.root)) == 2


def test_open_checks_the_schema_version(folder: DSFolder) -> None:
    dataset = json.loads((folder.root / "dataset.json").read_text())
    (folder.root / "dataset.json").write_text(json.dumps(dataset | {"version": 99}))
    with pytest.raises(SchemaError, match="schema version 99 is not supported"):
        DSFolder.open(folder.root)


def test_create_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is not a DS folder"):
        DSFolder.create(tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_ds_folder_converts_to_an_identical_copy(folder: DSFolder, tmp_path: Path) -> None:
    folder.update([folder["wood/b"].replace(synthetic=True, split="val")])
    folder.save()
    copy = convert(folder.root, tmp_path / "copy")  # --from auto recognises dataset.json
    assert copy.meta["source"]["format"] == "ds"
    assert all(Path(s.source).is_absolute() and Path(s.source).is_file() for s in copy)  # provenance from any cwd
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(copy.root).st_mode) == 0o777 & ~umask  # the staging folder was 0700
    assert copy.objects == folder.objects
    for sample in folder:
        twin = copy[sample.id]
        assert (twin.split, twin.caption, twin.synthetic, twin.defect_type) == (
            sample.split, sample.caption, sample.synthetic, sample.defect_type)
        assert np.array_equal(copy.load_mask(twin), folder.load_mask(sample))
        assert np.array_equal(copy.load_image(twin), folder.load_image(sample))


def _break_mask(folder: DSFolder, pixels: np.ndarray) -> Path:
    path = folder.mask_path(folder["pill/a_1"])
    Image.fromarray(pixels).save(path)
    return path


def test_load_checked_mask_refuses_another_size_and_unknown_indices(folder: DSFolder) -> None:
    assert folder.load_checked_mask(folder["pill/a_1"]).shape == (6, 8)
    path = _break_mask(folder, np.zeros((5, 8), np.uint8))
    with pytest.raises(InputError, match=f"{path}: mask is 8x5 but its image is 8x6"):
        folder.load_checked_mask(folder["pill/a_1"])
    _break_mask(folder, np.full((6, 8), 7, np.uint8))
    with pytest.raises(InputError, match="mask index 7 is outside the class map"):
        folder.load_checked_mask(folder["pill/a_1"])


@pytest.mark.parametrize("to, name", [("coco", "out_coco"), ("mmseg", "out"), ("ds-release", "out")])
def test_every_export_refuses_a_mask_of_another_size(folder: DSFolder, tmp_path: Path, to: str, name: str) -> None:
    from typer.testing import CliRunner

    from defectspectrum.cli import app

    path = _break_mask(folder, np.zeros((5, 8), np.uint8))
    result = CliRunner().invoke(app, ["data", "export", str(folder.root), str(tmp_path / name), "--to", to])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {path}: mask is 8x5 but its image is 8x6; run `defectspectrum data validate` and fix the sample"]
    assert not (tmp_path / name).exists()


def test_create_with_overwrite_replaces_a_ds_folder_and_keeps_the_users_files(tmp_path: Path) -> None:
    old = DSFolder.create(tmp_path / "ds", objects={"pill": ["crack"]})
    old.add_sample("pill", "a", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
    old.save()
    (old.root / "notes.txt").write_text("mine")
    new = DSFolder.create(tmp_path / "ds", objects={"wood": ["hole"]}, overwrite=True)
    assert list(new.objects) == ["wood"] and len(new) == 0
    assert not (tmp_path / "ds" / "pill").exists(), "the old samples' files went with the old index"
    assert (tmp_path / "ds" / "notes.txt").read_text() == "mine"
    assert list(DSFolder.open(tmp_path / "ds").objects) == ["wood"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"], "no staging or lock left beside it"


def _indexed(object_name: str, name: str) -> Sample:
    return Sample(id=f"{object_name}/{name}", object=object_name, image=f"{object_name}/images/{name}.png",
                  mask=f"{object_name}/masks/{name}.png", caption="ö", extra={"k": [1]})


def test_index_writer_writes_save_s_bytes_and_checks_like_add_record(tmp_path: Path) -> None:
    objects = {name: ClassMap.from_defects(["scratch"]) for name in ("metal", "Wood", "wood")}
    added: list[Sample] = []
    with IndexWriter(tmp_path / "streamed", "x", objects, {"m": 1}) as index:

        def add(sample: Sample) -> None:
            index.add(sample)
            added.append(sample)

        for sample in (_indexed("metal", "a"), _indexed("metal", "B"), _indexed("Wood", "x")):
            add(sample)
        assert [index.name("metal", base) for base in ("A", "b", "d", "D")] == ["A-2", "b-2", "d", "D-2"]
        for name in ("A-2", "b-2", "d", "D-2"):
            add(_indexed("metal", name))
        wood_q = index.name("wood", "q")
        add(_indexed("Wood", "Q"))  # wood/q is only named yet: the clash is the second of the two to be added
        for bad, error in ((_indexed("metal", "a"), "sample metal/a already exists$"),
                           (_indexed("metal", "b"), "sample metal/B already exists \\(ids may not differ in case only: "
                                                    "'metal/b'\\)"),
                           (_indexed("wood", "X"), "sample Wood/x already exists \\(.*'wood/X'\\)"),
                           (_indexed("wood", wood_q), "sample Wood/Q already exists \\(.*'wood/q'\\)"),
                           (_indexed("metal", "d-2").replace(object="gear", id="gear/d-2"), "unknown object 'gear'"),
                           (_indexed("metal", "e").replace(image="../e.png"), "'../e.png'")):
            with pytest.raises(InputError, match=error):  # (SchemaError is one)
                index.add(bad)
    assert index.count == len(added) == 8
    DSFolder(tmp_path / "saved", "x", objects, added, meta={"m": 1}).save()
    for file in (DATASET_FILE, SAMPLES_FILE):
        assert (tmp_path / "streamed" / file).read_bytes() == (tmp_path / "saved" / file).read_bytes()
