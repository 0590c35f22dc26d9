"""A DS folder's index can be trusted: crafted ids, object names, paths and symlinks are refused on
open (naming the line), so no reader reads and no writer writes outside its folder; duplicate ids
and wrong field types are errors; `data validate` reports them all; `save` survives a crash
between its two writes; `objects` is read-only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data import dsfolder as dsfolder_module
from defectspectrum.data.classes import ClassMap
from defectspectrum.data.convert import named
from defectspectrum.data.dsfolder import DSFolder, IndexProblem, IndexWriter, sample_paths, write_sample_files
from defectspectrum.data.formats.base import SourceSample
from defectspectrum.data.formats.ds_release import export_ds_release
from defectspectrum.data.sample import Sample
from defectspectrum.data.validate import ERROR, validate
from defectspectrum.errors import InputError, SchemaError
from defectspectrum.paths import is_safe_name

SECRET = b"top secret bytes"


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)


def _mask(value: int = 1) -> np.ndarray:
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = value
    return mask


@pytest.fixture()
def ds(tmp_path: Path) -> Path:
    """tmp/ds: metal (scratch) with a, b; wood (hole) with c; three lines. tmp/secret.png lies outside."""
    folder = DSFolder.create(tmp_path / "ds", "t", {"metal": ["scratch"], "wood": ["hole"]})
    folder.add_sample("metal", "a", _image(0), _mask(), defect_type="scratch", split="train")
    folder.add_sample("metal", "b", _image(1), np.zeros((6, 8), np.uint8), defect_type="good", split="val")
    folder.add_sample("wood", "c", _image(2), _mask(), defect_type="hole")
    folder.save()
    Image.fromarray(_image(9)).save(tmp_path / "secret.png")
    return tmp_path / "ds"


def _record(**changes: Any) -> dict[str, Any]:
    """A sound line (a new id on sample a's files) with `changes`; a value None removes the key
    unless it is an optional field."""
    record: dict[str, Any] = {"id": "metal/z", "object": "metal", "image": "metal/images/a.png",
                              "mask": "metal/masks/a.png", "split": None, "caption": None, "synthetic": False,
                              "source": None, "defect_type": "scratch"}
    record.update(changes)
    return record


def _append(ds: Path, *lines: str | dict[str, Any]) -> list[int]:
    """Append raw lines (dicts as JSON) to samples.jsonl; their line numbers."""
    path = ds / "samples.jsonl"
    existing = path.read_text(encoding="utf-8").splitlines()
    texts = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join([*existing, *texts]) + "\n", encoding="utf-8")
    return list(range(len(existing) + 1, len(existing) + len(texts) + 1))


def _edit_objects(ds: Path, objects: Any) -> Path:
    path = ds / "dataset.json"
    data = json.loads(path.read_text())
    data["objects"] = objects
    path.write_text(json.dumps(data))
    return path


def _outside_files(tmp_path: Path, *inside: Path) -> set[Path]:
    """Every file under tmp_path but outside the given folders."""
    return {p for p in tmp_path.rglob("*") if p.is_file() and not any(f in p.parents for f in inside)}


HOSTILE_LINES = {
    "id climbs out": _record(id="metal/../../../../PWNED"),
    "id with a sub-folder": _record(id="metal/x/y"),
    "id of another object": _record(id="wood/z"),
    "id without object": _record(id="z"),
    "hidden id name": _record(id="metal/.z"),
    "image climbs out": _record(image="../secret.png"),
    "image climbs out deeper": _record(image="metal/images/../../../secret.png"),
    "absolute image": _record(image="/etc/passwd"),
    "absolute mask": _record(mask="/etc/passwd"),
    "drive letter": _record(image="C:/secret.png"),
    "backslash": _record(mask="metal\\..\\..\\secret.png"),
    "NUL": _record(image="metal/images/a.png\x00.jpg"),
    "unknown object": _record(id="gear/z", object="gear"),
    "object climbs out": _record(id="../../X/z", object="../../X"),
}


@pytest.mark.parametrize("record", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_open_refuses_a_hostile_line_naming_it(ds: Path, record: dict[str, Any]) -> None:
    [line] = _append(ds, record, _record(id="metal/after"))[:1]
    with pytest.raises(SchemaError) as caught:
        DSFolder.open(ds)
    message = str(caught.value)
    assert message.startswith(f"{ds / 'samples.jsonl'}:{line}: ") and "\n" not in message


def _link_out(ds: Path, tmp_path: Path) -> dict[str, Any]:
    os.symlink(tmp_path / "secret.png", ds / "metal" / "images" / "link.png")
    return _record(image="metal/images/link.png")


def _folder_link_out(ds: Path, tmp_path: Path) -> dict[str, Any]:
    os.symlink(tmp_path, ds / "metal" / "escape")
    return _record(mask="metal/escape/secret.png")


@pytest.mark.parametrize("make", [_link_out, _folder_link_out], ids=["file link", "folder link"])
def test_open_refuses_symlinks_that_lead_outside(ds: Path, tmp_path: Path, make: Any) -> None:
    [line] = _append(ds, make(ds, tmp_path))
    with pytest.raises(SchemaError, match=f"samples.jsonl:{line}: path .* leads outside .* symbolic link"):
        DSFolder.open(ds)


def test_symlinks_inside_the_folder_are_fine(ds: Path) -> None:
    os.symlink(ds / "metal" / "images" / "a.png", ds / "metal" / "images" / "alias.png")
    _append(ds, _record(image="metal/images/alias.png"))
    assert DSFolder.open(ds)["metal/z"].image == "metal/images/alias.png"


@pytest.mark.parametrize("objects, match", [
    ({"../../X": {"classes": ["background", "a"]}}, "object name '../../X' must be letters"),
    ({"a/b": {"classes": ["background", "a"]}}, "object name 'a/b' must be letters"),
    ({".hidden": {"classes": ["background", "a"]}}, "object name '.hidden' must be letters"),
    ({"metal": {"classes": ["background", ["scratch"]]}}, "every class name must be a non-empty string"),
    ({"metal": {"classes": ["background", 5]}}, "every class name must be a non-empty string"),
    ({"metal": {"classes": [["background"], "a"]}}, "every class name must be a non-empty string"),
    ({"metal": {"classes": "background"}}, "'objects' must map object names"),
])
def test_open_refuses_a_bad_dataset_json_in_one_line(ds: Path, objects: Any, match: str) -> None:
    path = _edit_objects(ds, objects)
    with pytest.raises(SchemaError, match=match) as caught:
        DSFolder.open(ds)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_a_class_name_that_is_a_list_is_an_input_error_not_a_crash() -> None:
    with pytest.raises(InputError, match="every class name must be a non-empty string"):
        ClassMap(("background", ["a", "b"]))  # type: ignore[arg-type]


def test_dataset_name_must_be_a_string(ds: Path) -> None:
    path = ds / "dataset.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"name": ["x"]}))
    with pytest.raises(SchemaError, match=f"{path}: 'name' must be a string"):
        DSFolder.open(ds)


@pytest.mark.parametrize("changes, match", [
    ({"split": 5}, "field 'split' must be a string or null, not 5 \\(a number\\)"),
    ({"synthetic": "yes"}, "field 'synthetic' must be true or false, not 'yes'"),
    ({"synthetic": None}, "field 'synthetic' must be true or false, not None"),
    ({"synthetic": 1}, "field 'synthetic' must be true or false, not 1"),
    ({"caption": ["a"]}, "field 'caption' must be a string or null"),
    ({"source": {"p": 1}}, "field 'source' must be a string or null"),
    ({"defect_type": 3.5}, "field 'defect_type' must be a string or null"),
    ({"id": 5}, "missing or non-string field\\(s\\) id"),
    ({"object": None}, "missing or non-string field\\(s\\) object"),
    ({"image": ["metal/images/a.png"]}, "missing or non-string field\\(s\\) image"),
])
def test_field_types_are_checked_on_open(ds: Path, changes: dict[str, Any], match: str) -> None:
    [line] = _append(ds, _record(**changes))
    with pytest.raises(SchemaError, match=f"samples.jsonl:{line}: {match}"):
        DSFolder.open(ds)


@pytest.mark.parametrize("raw, match", [
    (b'{"id": "metal/z", \xff}', "not UTF-8 text"),
    (b"[" * 100_000, "invalid JSON"),
    (b"1" * 5000, "invalid JSON"),
    (b'"just a string"', "expected a JSON object per line"),
])
def test_undecodable_lines_are_schema_errors(ds: Path, raw: bytes, match: str) -> None:
    path = ds / "samples.jsonl"
    path.write_bytes(path.read_bytes() + raw + b"\n")
    with pytest.raises(SchemaError, match=f"samples.jsonl:4: {match}"):
        DSFolder.open(ds)


def test_an_unreadable_index_is_one_line(ds: Path) -> None:
    path = ds / "samples.jsonl"
    path.unlink()
    path.mkdir()
    with pytest.raises(InputError, match=f"{path}: cannot read the index .*; make it a readable file"):
        DSFolder.open(ds)


@pytest.mark.parametrize("duplicate, extra", [
    ("metal/a", "; ids must be unique"), ("METAL/A", " \\('metal/a': ids may not differ in case only\\)"),
    ("metal/A", " \\('metal/a': ids may not differ in case only\\)"),
])
def test_duplicate_ids_name_both_lines(ds: Path, duplicate: str, extra: str) -> None:
    object_name = duplicate.split("/")[0]
    if object_name != "metal":  # 'METAL' must be an object of its own to get past the object check
        _edit_objects(ds, {"metal": {"classes": ["background", "scratch"]}, "wood": {"classes": ["background", "hole"]},
                           object_name: {"classes": ["background", "scratch"]}})
    [line] = _append(ds, _record(id=duplicate, object=object_name))
    with pytest.raises(SchemaError, match=f"samples.jsonl:{line}: sample id '{duplicate}' repeats line 1{extra}"):
        DSFolder.open(ds)


def test_lenient_open_names_the_first_line_of_every_repeated_id(ds: Path) -> None:
    """Ids held before the first repeat and after it: each repeat names the line its id came from."""
    first_repeat, new_id, broken, new_repeat, old_repeat = _append(
        ds, _record(id="metal/a"), _record(id="metal/y"), "{not json", _record(id="metal/y"), _record(id="metal/b"))
    folder = DSFolder.open(ds, lenient=True)
    named = {problem.line: problem.message for problem in folder.problems}
    assert set(named) == {first_repeat, broken, new_repeat, old_repeat}
    assert "'metal/a' repeats line 1;" in named[first_repeat]
    assert f"'metal/y' repeats line {new_id};" in named[new_repeat]
    assert "'metal/b' repeats line 2;" in named[old_repeat]
    assert "metal/y" in folder and len(folder) == 4


def test_split_never_drops_a_duplicated_line(ds: Path) -> None:
    _append(ds, _record(id="metal/a", split="val"))
    before = (ds / "samples.jsonl").read_bytes()
    result = CliRunner().invoke(app, ["data", "split", str(ds), "--rule", "first-k", "--k", "1"])
    assert result.exit_code == 2
    assert "samples.jsonl:4: sample id 'metal/a' repeats line 1" in result.output
    assert (ds / "samples.jsonl").read_bytes() == before


# -- validate reports index problems -----------------------------------------------------------------------------


def _damage(ds: Path, tmp_path: Path) -> list[int]:
    return _append(ds, _record(id="metal/../../../../PWNED"), _record(id="metal/y", split=5),
                   _record(id="metal/a"), _link_out(ds, tmp_path), "{not json")


def test_lenient_open_keeps_the_sound_lines_and_lists_the_others(ds: Path, tmp_path: Path) -> None:
    lines = _damage(ds, tmp_path)
    folder = DSFolder.open(ds, lenient=True)
    assert [s.id for s in folder] == ["metal/a", "metal/b", "wood/c"]
    assert [p.line for p in folder.problems] == lines
    assert all(isinstance(p, IndexProblem) and p.message.startswith(f"{ds / 'samples.jsonl'}:{p.line}: ")
               for p in folder.problems)
    assert [p.sample for p in folder.problems] == ["metal/../../../../PWNED", "metal/y", "metal/a", "metal/z", None]
    before = (ds / "samples.jsonl").read_bytes()
    with pytest.raises(InputError, match="5 line\\(s\\) were left out .* saving would drop them"):
        folder.save()
    assert (ds / "samples.jsonl").read_bytes() == before


def test_validate_reports_each_bad_line_as_an_error(ds: Path, tmp_path: Path) -> None:
    lines = _damage(ds, tmp_path)
    report = validate(DSFolder.open(ds, lenient=True))
    bad = [i for i in report.issues if i.code == "bad-index-entry"]
    assert [i.line for i in bad] == lines and all(i.level == ERROR and i.file == "samples.jsonl" for i in bad)
    assert not report.ok and report.samples == 3
    assert [i["line"] for i in report.to_json()["issues"] if i["code"] == "bad-index-entry"] == lines


def test_validate_command_prints_a_full_report_on_a_damaged_index(ds: Path, tmp_path: Path) -> None:
    lines = _damage(ds, tmp_path)
    result = CliRunner().invoke(app, ["data", "validate", str(ds), "--json", str(tmp_path / "report.json")])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "bad-index-entry" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["by_code"]["bad-index-entry"] == len(lines)
    assert {i["line"] for i in report["issues"] if i["code"] == "bad-index-entry"} == set(lines)
    assert not any("PWNED" in p.name for p in tmp_path.rglob("*"))


def test_validate_asks_the_folder_for_its_paths(ds: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.png", ds / "wood" / "masks" / "out.png")  # in no index line
    folder = DSFolder.open(ds)
    _smuggle(folder, Sample(id="wood/x", object="wood", image="../secret.png", mask="wood/masks/out.png"))
    issues = [i for i in validate(folder).issues if i.sample == "wood/x"]
    assert [i.code for i in issues] == ["bad-index-entry", "bad-index-entry"]
    assert "has an empty, '.' or '..' part" in issues[0].message and "symbolic link" in issues[1].message


# -- every reader and writer stays inside ------------------------------------------------------------------------


def _hostile(ds: Path, tmp_path: Path, kind: str) -> str:
    """Damage `ds` one way; the file (and line) the refusal must name."""
    if kind == "id":
        return f"samples.jsonl:{_append(ds, _record(id='metal/../../../../PWNED'))[0]}: "
    if kind == "object":
        _edit_objects(ds, {"metal": {"classes": ["background", "scratch"]}, "../../X": {"classes": ["background"]}})
        return f"{ds / 'dataset.json'}: object name '../../X'"
    if kind == "image":
        return f"samples.jsonl:{_append(ds, _record(image='../secret.png'))[0]}: "
    return f"samples.jsonl:{_append(ds, _link_out(ds, tmp_path))[0]}: "


@pytest.mark.parametrize("kind", ["id", "object", "image", "symlink"])
@pytest.mark.parametrize("to, name", [("ds-release", "out"), ("mmseg", "out"), ("coco", "out")])
def test_exports_of_a_crafted_folder_are_refused_in_one_line(ds: Path, tmp_path: Path, kind: str, to: str,
                                                             name: str) -> None:
    expected = _hostile(ds, tmp_path, kind)
    before = _outside_files(tmp_path, ds)
    dst = tmp_path / "work" / "deeper" / name
    result = CliRunner().invoke(app, ["data", "export", str(ds), str(dst), "--to", to])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert _outside_files(tmp_path, ds) == before  # nothing written anywhere (PWNED.png, X/...)
    assert not dst.exists()


@pytest.mark.parametrize("kind", ["id", "image", "symlink"])
def test_convert_from_a_crafted_ds_folder_copies_nothing(ds: Path, tmp_path: Path, kind: str) -> None:
    expected = _hostile(ds, tmp_path, kind)
    result = CliRunner().invoke(app, ["data", "convert", "--from", "ds", str(ds), str(tmp_path / "copy")])
    assert result.exit_code == 2 and expected in result.output
    assert not (tmp_path / "copy").exists()
    secret = (tmp_path / "secret.png").read_bytes()
    copies = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p.read_bytes() == secret]
    assert copies == [tmp_path / "secret.png"]


def _smuggle(folder: DSFolder, sample: Sample, object_name: str | None = None) -> None:
    """Put a sample (and object) in past every check, as a bug elsewhere might: the writers must still hold."""
    if object_name is not None:
        folder._objects[object_name] = ClassMap.from_defects(["scratch"])
    folder._insert(sample)


@pytest.mark.parametrize("sample_id, object_name", [("metal/../../../../PWNED", None), ("../../X/a", "../../X")])
def test_ds_release_writer_refuses_hostile_names_itself(ds: Path, tmp_path: Path, sample_id: str,
                                                         object_name: str | None) -> None:
    folder = DSFolder.open(ds)
    obj = object_name or "metal"
    _smuggle(folder, Sample(id=sample_id, object=obj, image="metal/images/a.png", mask="metal/masks/a.png"),
             object_name)
    before = _outside_files(tmp_path, ds)
    with pytest.raises(InputError, match="refusing to write"):
        export_ds_release(folder, tmp_path / "a" / "b" / "out")
    assert _outside_files(tmp_path, ds) == before
    assert not (tmp_path / "a" / "b" / "out").exists()


def test_free_text_defect_types_stay_inside_a_ds_release_export(ds: Path, tmp_path: Path) -> None:
    folder = DSFolder.open(ds)
    folder.update([folder["metal/a"].replace(defect_type="../../../evil")])
    out = export_ds_release(folder, tmp_path / "a" / "out")
    assert (out / "metal" / "image" / "evil" / "a.png").is_file()
    assert _outside_files(tmp_path, ds, out) == {tmp_path / "secret.png"}


@pytest.mark.parametrize("object_name, name", [("../../X", "a"), ("metal", "../../../PWNED"), ("metal", "a/b"),
                                               ("metal", ".."), ("", "a"), ("metal", "")])
def test_sample_file_writers_refuse_hostile_names(tmp_path: Path, object_name: str, name: str) -> None:
    root = tmp_path / "x" / "y" / "ds"
    with pytest.raises(InputError, match="refusing to write"):
        sample_paths(object_name, name)
    with pytest.raises(InputError, match="refusing to write"):
        write_sample_files(root, object_name, name, _image(0), _mask())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unique_names_stay_safe_at_full_length(tmp_path: Path) -> None:
    items = [SourceSample("o", "x" * 300, Path("a.png"), None) for _ in range(3)]
    with IndexWriter(tmp_path / "ds", "t", {"o": ClassMap.from_defects(["x"])}) as index:
        names = [name for _, name in named(items, index)]
    assert len(set(names)) == 3 and all(is_safe_name(n) for n in names)


# -- the Python API is held to the same rules --------------------------------------------------------------------


def test_image_and_mask_path_never_point_outside(ds: Path, tmp_path: Path) -> None:
    folder = DSFolder.open(ds)
    stray = Sample(id="metal/a", object="metal", image="../secret.png", mask="/etc/passwd")
    with pytest.raises(SchemaError, match="'../secret.png' has an empty"):
        folder.image_path(stray)
    with pytest.raises(SchemaError, match="'/etc/passwd' is absolute"):
        folder.mask_path(stray)
    os.symlink(tmp_path / "secret.png", ds / "metal" / "images" / "out.png")  # in no index line
    fresh = DSFolder.open(ds)
    with pytest.raises(SchemaError, match="symbolic link"):
        fresh.load_image(fresh["metal/a"].replace(image="metal/images/out.png"))


@pytest.mark.parametrize("changes, error", [
    ({"id": "metal/../../x"}, SchemaError), ({"id": "wood/z"}, SchemaError), ({"image": "../secret.png"}, SchemaError),
    ({"split": 5}, SchemaError), ({"synthetic": "yes"}, SchemaError), ({"id": "metal/A"}, InputError),
    ({"id": "gear/z", "object": "gear"}, InputError),
])
def test_add_record_checks_the_index_rules(ds: Path, changes: dict[str, Any], error: type[Exception]) -> None:
    folder = DSFolder.open(ds)
    with pytest.raises(error):
        folder.add_record(Sample(**_record(**changes)))
    assert [s.id for s in folder] == ["metal/a", "metal/b", "wood/c"]


def test_update_checks_every_replacement_before_making_any(ds: Path) -> None:
    folder = DSFolder.open(ds)
    good, bad = folder["metal/a"].replace(split="val"), folder["metal/b"].replace(image="/etc/passwd")
    with pytest.raises(SchemaError, match="is absolute"):
        folder.update([good, bad])
    with pytest.raises(SchemaError, match="field 'split' must be a string or null"):
        folder.update([folder["wood/c"].replace(split=5)])
    assert folder["metal/a"].split == "train" and folder["metal/b"].image == "metal/images/b.png"


def test_add_sample_refuses_an_id_differing_in_case_only(ds: Path) -> None:
    folder = DSFolder.open(ds)
    before = (ds / "metal" / "images" / "a.png").read_bytes()
    with pytest.raises(InputError, match="sample metal/a already exists"):
        folder.add_sample("metal", "A", _image(5), _mask())
    assert (ds / "metal" / "images" / "a.png").read_bytes() == before
    assert not (ds / "metal" / "images" / "A.png").exists()


def test_add_sample_never_writes_through_a_folder_linked_outside(ds: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", ds / "gear")
    folder = DSFolder.open(ds)
    folder.add_object("gear", ["dent"])
    with pytest.raises(SchemaError, match="symbolic link"):
        folder.add_sample("gear", "g", _image(7), _mask())
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_objects_is_read_only(ds: Path) -> None:
    folder = DSFolder.open(ds)
    with pytest.raises(TypeError):
        folder.objects["../../X"] = ClassMap.from_defects(["a"])  # type: ignore[index]
    with pytest.raises(InputError, match="use letters, digits"):
        folder.add_object("../../X", ["a"])
    folder.add_object("gear", ["dent"])
    assert folder.objects["gear"].names == ("background", "dent") and "../../X" not in folder.objects


def test_a_crash_between_the_two_index_writes_leaves_an_openable_folder(ds: Path, monkeypatch: Any) -> None:
    folder = DSFolder.open(ds)
    folder.add_object("gear", ["dent"])
    folder.add_sample("gear", "g", _image(7), _mask())
    written: list[str] = []

    def second_write_crashes(real: Any) -> Any:
        def write(path: Path, data: Any) -> None:
            if written:
                raise KeyboardInterrupt  # the process dies between the two index writes, whichever comes first
            real(path, data)
            written.append(Path(path).name)
        return write

    for name in ("write_text_atomic", "write_json_atomic"):
        monkeypatch.setattr(dsfolder_module, name, second_write_crashes(getattr(dsfolder_module, name)))
    with pytest.raises(KeyboardInterrupt):
        folder.save()
    monkeypatch.undo()
    assert written == ["dataset.json"]
    again = DSFolder.open(ds)  # the new objects with the old lines: every line names a known object
    assert "gear" in again.objects and [s.id for s in again] == ["metal/a", "metal/b", "wood/c"]
    folder.save()
    assert [s.id for s in DSFolder.open(ds)] == ["metal/a", "metal/b", "wood/c", "gear/g"]
