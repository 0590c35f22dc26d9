"""Hostile COCO files: absurd sizes and coordinates, wrong field types and escaping file names are
refused with one line naming the file, before anything is rasterised, and leave no output behind.

Cases that used to exhaust memory or crash the process (NaN / 1e300 polygons, a 200000x200000 image
entry) run in a child process with a 2 GiB address-space limit, so a regression fails the test
instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.convert import convert
from defectspectrum.data.formats import open_reader
from defectspectrum.data.formats.coco_masks import (
    POLYGON_MARGIN,
    annotation_to_binary,
    rasterize_annotations,
)
from defectspectrum.errors import FormatError
from defectspectrum.io import DEFAULT_MAX_PIXELS as MAX_PIXELS
from defectspectrum.io import pixel_limit

H, W = 10, 12
GOOD_POLYGON = [[1, 1, 5, 1, 5, 5, 1, 5]]


def _coco(image: dict[str, Any] | None = None, annotation: dict[str, Any] | None = None) -> dict[str, Any]:
    entry = {"id": 1, "file_name": "a.png", "height": H, "width": W, **(image or {})}
    shape = {"id": 7, "image_id": 1, "category_id": 1, "segmentation": GOOD_POLYGON, **(annotation or {})}
    return {"images": [entry], "categories": [{"id": 1, "name": "scratch"}], "annotations": [shape]}


def _write(root: Path, data: dict[str, Any], name: str = "plates.json") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "a.png").exists():
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "a.png")
    path = root / name
    path.write_text(json.dumps(data), encoding="utf-8")  # json writes NaN / Infinity literals as Python reads them
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- sizes and coordinates that used to exhaust memory or crash: in a memory-limited child ---------------

# (case name, image entry changes, annotation changes, expected message part)
MEMORY_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("nan", {}, {"segmentation": [[1, float("nan"), 5, 1, 5, 5]]}, "not a finite number"),
    ("infinity", {}, {"segmentation": [[1, 1, float("inf"), 1, 5, 5]]}, "not a finite number"),
    ("1e300", {}, {"segmentation": [[1, 1e300, 5, 1, 5, 5]]}, "lies more than 4 image sizes outside"),
    ("int beyond float", {}, {"segmentation": [[1, 10**400, 5, 1, 5, 5]]}, "not a finite number"),
    ("far", {}, {"segmentation": [[1, 1, 5_000_000, 1, 5, 5]]}, "lies more than 4 image sizes outside"),
    ("long outline", {}, {"segmentation": [[0, 0, 60, 50] * 20_000]}, "polygon outline is"),
    ("200000x200000", {"height": 200_000, "width": 200_000}, {}, "above the limit"),
    ("huge int size", {"height": 10**30, "width": 1}, {}, "above the limit"),
    ("rle of a huge size", {}, {"segmentation": {"size": [200_000, 200_000], "counts": "0"}}, "differs from the image"),
    ("rle run beyond 32 bits", {}, {"segmentation": {"size": [H, W], "counts": [2**40, 3]}}, "RLE runs cover"),
]

_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
    from defectspectrum.data.convert import convert
    from defectspectrum.errors import DefectSpectrumError
    results = {}
    for name, source, dst in json.loads(sys.argv[1]):
        try:
            convert(Path(source), Path(dst), "coco")
            results[name] = "converted"
        except DefectSpectrumError as exc:
            results[name] = f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # MemoryError, OverflowError, ...: the regression this test is for
            results[name] = f"CRASH {type(exc).__name__}: {exc}"
    print(json.dumps(results))
""")


def test_absurd_geometry_is_refused_before_rasterising(tmp_path: Path) -> None:
    jobs = []
    for number, (name, image, annotation, _) in enumerate(MEMORY_CASES):
        source = _write(tmp_path / f"case{number}", _coco(image, annotation))
        jobs.append((name, str(source), str(tmp_path / f"out{number}")))
    env = {**os.environ, "DEFECTSPECTRUM_NO_PROGRESS": "1"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    results = json.loads(done.stdout)
    for number, (name, _, _, expected) in enumerate(MEMORY_CASES):
        message = results[name]
        assert message.startswith("FormatError: "), (name, message)
        assert expected in message, (name, message)
        assert "\n" not in message, name
        source = tmp_path / f"case{number}" / "plates.json"
        assert message.startswith(f"FormatError: {source}: "), (name, message)
        assert "annotation 7" in message or "image 1" in message, (name, message)
        assert not (tmp_path / f"out{number}").exists(), name
    assert _leftovers(tmp_path) == [], "no .partial folder is left behind"


def test_the_limits_themselves() -> None:
    """Exactly at the margin and at MAX_PIXELS is allowed; one step beyond is not."""
    edge = {"id": 2, "segmentation": [[-POLYGON_MARGIN * W, 0, (POLYGON_MARGIN + 1) * W, 0, 0, H]]}
    assert annotation_to_binary(edge, H, W).any()
    beyond = {"id": 2, "segmentation": [[-POLYGON_MARGIN * W - 0.5, 0, 5, 0, 0, H]]}
    with pytest.raises(FormatError, match="annotation 2: polygon point"):
        annotation_to_binary(beyond, H, W)
    side = int(MAX_PIXELS**0.5)
    with pytest.raises(FormatError, match="above the limit"):
        rasterize_annotations([], side + 1, side, {})
    assert rasterize_annotations([], 1, MAX_PIXELS // 1024, {}).shape == (1, MAX_PIXELS // 1024)
    with pixel_limit(100):  # the one pixel limit (--max-pixels) also bounds the masks drawn from annotations
        with pytest.raises(FormatError, match="--max-pixels 110"):
            rasterize_annotations([], 10, 11, {})
        assert rasterize_annotations([], 10, 10, {}).shape == (10, 10)


# -- wrong types and values: one line naming the file and the annotation or image ---------------------------

TYPE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("negative height", {"height": -10}, {}, r"image 1: size 12x-10 \(width x height\) must be positive"),
    ("zero width", {"width": 0}, {}, "image 1: size 0x10"),
    ("height as text", {"height": "10"}, {}, "image 1: size 12x'10'"),
    ("height as float", {"height": 10.0}, {}, "image 1: size 12x10.0"),
    ("boolean size", {"height": True, "width": True}, {}, "image 1: size TruexTrue"),
    ("width alone", {"height": None}, {}, "image 1: size 12xNone"),
    ("category_id list", {}, {"category_id": [1]}, r"annotation 7: category_id \[1\] is not among"),
    ("category_id bool", {}, {"category_id": True}, "annotation 7: category_id True is not among"),
    ("category_id text", {}, {"category_id": "1"}, "annotation 7: category_id '1' is not among"),
    ("category_id missing", {}, {"category_id": None}, "annotation 7: category_id None is not among"),
    ("image_id list", {}, {"image_id": [1]}, r"annotation 7: image_id \[1\] is not among the images"),
    ("image_id float", {}, {"image_id": 1.0}, "annotation 7: image_id 1.0 is not among the images"),
    ("segmentation number", {}, {"segmentation": 5}, "annotation 7: 'segmentation' must be"),
    ("segmentation true", {}, {"segmentation": True}, "annotation 7: 'segmentation' must be"),
    ("boolean coordinate", {}, {"segmentation": [[True, 1, 5, 1, 5, 5]]}, "flat list of numbers"),
    ("nested polygon", {}, {"segmentation": [[[1, 1], [5, 1], [5, 5]]]}, "flat list of numbers"),
    ("negative run", {}, {"segmentation": {"size": [H, W], "counts": [-5, 125]}}, "an RLE run is negative"),
    ("rle size text", {}, {"segmentation": {"size": "10x12", "counts": [120]}}, "RLE 'size' must be"),
    ("rle counts too long", {}, {"segmentation": {"size": [H, W], "counts": "1" * 10_000}}, "characters long"),
    ("id with a newline", {}, {"id": "x\ny", "category_id": 9}, r"annotation 'x\\ny': category_id 9"),
    ("huge id", {}, {"id": "i" * 5000, "category_id": 9}, "annotation 'iiii"),
    ("file name too long", {"file_name": "n" * 5000}, {}, "image 1: file_name 'nnn.*cannot be looked up"),
    ("file name of NUL", {"file_name": "a\x00.png"}, {}, "image 1: file_name 'a.x00.png' must be a non-empty"),
    ("empty file name", {"file_name": " "}, {}, "image 1: file_name ' ' must be a non-empty"),
]


@pytest.mark.parametrize(("image", "annotation", "expected"), [case[1:] for case in TYPE_CASES],
                         ids=[case[0] for case in TYPE_CASES])
def test_wrong_types_are_one_line_format_errors(tmp_path: Path, image: dict[str, Any], annotation: dict[str, Any],
                                                expected: str) -> None:
    source = _write(tmp_path / "src", _coco(image, annotation))
    with pytest.raises(FormatError, match=expected) as info:
        convert(source, tmp_path / "ds", "coco")
    message = str(info.value)
    assert message.startswith(f"{source}: ") and "\n" not in message and len(message) < 400
    assert not (tmp_path / "ds").exists() and _leftovers(tmp_path) == []


def test_cli_prints_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", _coco({"height": -10}))
    result = CliRunner().invoke(app, ["data", "convert", "--from", "coco", str(source), str(tmp_path / "ds")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {source}: image 1: size 12x-10 (width x height) must be positive integers; fix the image entry's "
        "width/height"]
    assert not (tmp_path / "ds").exists() and _leftovers(tmp_path) == []


def test_a_worker_failure_removes_the_staging_folder(tmp_path: Path) -> None:
    data = _coco()
    for number in range(2, 9):  # several images, so that both workers get some; the last one is broken
        data["images"].append({"id": number, "file_name": "a.png", "height": H, "width": W})
    data["annotations"].append({"id": 8, "image_id": 8, "category_id": 1,
                                "segmentation": {"size": [H, W], "counts": [3, 4]}})
    source = _write(tmp_path / "src", data)
    with pytest.raises(FormatError, match=r"plates\.json: image 8: annotation 8: RLE runs cover 7 pixels, not 10x12"):
        convert(source, tmp_path / "out" / "ds", "coco", workers=2)
    assert list((tmp_path / "out").iterdir()) == [], "neither the output nor a .partial folder"


def test_fields_that_are_never_used_cannot_break_a_conversion(tmp_path: Path) -> None:
    """bbox, area and iscrowd are not used: any value converts, with the pixels of the segmentation."""
    data = _coco()
    strange: list[Any] = [None, True, "yes", 1.5, -3, 10**40, [], {"a": 1}, float("nan")]
    data["annotations"] = [{"id": 10 + n, "image_id": 1, "category_id": 1, "segmentation": GOOD_POLYGON,
                            "bbox": value, "area": value, "iscrowd": value} for n, value in enumerate(strange)]
    folder = convert(_write(tmp_path / "src", data), tmp_path / "ds", "coco")
    expected = np.zeros((H, W), np.uint8)
    expected[1:5, 1:5] = 1
    np.testing.assert_array_equal(folder.load_mask(folder["plates/a"]), expected)


# -- a little fuzzing: any value in any field gives a mask or a DefectSpectrumError, never another exception --

_STRANGE: list[Any] = [None, True, False, 0, -1, 1, 2.5, -1e9, 10**30, "", "x", "1", [], [1], [[1]], {}, {"size": 1},
                       float("nan"), float("inf"), "../../x.png", "/etc/hostname", "n" * 5000]

_FUZZ_CHILD = textwrap.dedent("""
    import json, random, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
    from defectspectrum.data.formats import open_reader
    from defectspectrum.errors import DefectSpectrumError
    root, rounds = Path(sys.argv[1]), int(sys.argv[2])
    base = json.loads((root / "base.json").read_text())
    strange = json.loads((root / "strange.json").read_text())
    rng = random.Random(0)
    paths = [("images", 0, k) for k in ("id", "file_name", "height", "width")]
    paths += [("annotations", i, k) for i in range(2) for k in ("id", "image_id", "category_id", "segmentation")]
    paths += [("categories", 0, k) for k in ("id", "name")]
    outcomes = {"ok": 0, "refused": 0}
    for round_ in range(rounds):
        data = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 3)):
            section, index, key = rng.choice(paths)
            data[section][index][key] = rng.choice(strange)
        path = root / "fuzz.json"
        path.write_text(json.dumps(data))
        try:
            reader = open_reader("coco", path)
            for sample in reader.samples():
                reader.load_mask(sample, (10, 12))
            outcomes["ok"] += 1
        except DefectSpectrumError:
            outcomes["refused"] += 1
        except BaseException as exc:
            print(json.dumps({"crash": f"{type(exc).__name__}: {exc}", "data": data}))
            sys.exit(0)
    print(json.dumps(outcomes))
""")


def test_fuzzed_fields_never_escape_as_other_exceptions(tmp_path: Path) -> None:
    data = _coco()
    data["annotations"].append({"id": 8, "image_id": 1, "category_id": 1,
                                "segmentation": {"size": [H, W], "counts": [30, 20, 70]}})
    _write(tmp_path, data, "base.json")
    (tmp_path / "strange.json").write_text(json.dumps(_STRANGE), encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", _FUZZ_CHILD, str(tmp_path), "300"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    outcome = json.loads(done.stdout)
    assert "crash" not in outcome, outcome
    assert outcome["ok"] > 0 and outcome["refused"] > 0, outcome


def test_vision_shares_the_checks(tmp_path: Path) -> None:
    root = tmp_path / "Wood" / "train"
    source = _write(root, _coco({"height": 200_000, "width": 200_000}), "_annotations.coco.json")
    with pytest.raises(FormatError, match=r"_annotations\.coco\.json \(image a\.png\): size 200000x200000 is above"):
        convert(tmp_path / "Wood", tmp_path / "ds", "vision")
    _write(root, _coco(annotation={"segmentation": [[1, float("nan"), 5, 1, 5, 5]]}), "_annotations.coco.json")
    with pytest.raises(FormatError, match=f"{source} \\(image a\\.png\\): annotation 7: a polygon coordinate is not"):
        convert(tmp_path / "Wood", tmp_path / "ds", "vision")
    assert not (tmp_path / "ds").exists() and _leftovers(tmp_path) == []


# -- file names that leave the data set folder -------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """An image outside every data set folder of these tests."""
    path = tmp_path / "secret" / "secret.png"
    path.parent.mkdir()
    Image.fromarray(np.full((H, W, 3), 255, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "dotdot inside a folder", "symlink", "symlinked folder"])
def test_file_names_cannot_leave_the_data_set_folder(tmp_path: Path, secret: Path, kind: str) -> None:
    root = tmp_path / "set"
    file_name = {"absolute": str(secret), "dotdot": "../secret/secret.png",
                 "dotdot inside a folder": "images/../../secret/secret.png", "symlink": "link.png",
                 "symlinked folder": "linked/secret.png"}[kind]
    source = _write(root, _coco({"file_name": file_name}))
    (root / "images").mkdir()
    (root / "link.png").symlink_to(secret)
    (root / "linked").symlink_to(secret.parent, target_is_directory=True)
    result = CliRunner().invoke(app, ["data", "convert", "--from", "coco", str(source), str(tmp_path / "ds")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {source}: image 1: file_name "), lines
    assert "absolute path" in lines[0] or "leads outside" in lines[0]
    assert not (tmp_path / "ds").exists()


def test_dotdot_that_stays_inside_and_absolute_names_under_images_are_read(tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "set"
    (root / "annotations").mkdir(parents=True)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "a.png")
    data = _coco({"file_name": "../a.png"})
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data), encoding="utf-8")
    folder = convert(root, tmp_path / "ds", "coco")
    assert Path(folder["set/a"].source) == root / "a.png"
    absolute = _write(tmp_path / "other", _coco({"file_name": str(secret)}))
    with pytest.raises(FormatError, match="is an absolute path"):
        list(open_reader("coco", absolute).samples())
    reader = open_reader("coco", absolute, images=secret.parent)
    assert [s.image for s in reader.samples()] == [secret]
    with pytest.raises(FormatError, match="leads outside"):
        list(open_reader("coco", absolute, images=tmp_path / "other").samples())


def test_vision_file_names_stay_inside(tmp_path: Path, secret: Path) -> None:
    root = tmp_path / "Wood"
    for file_name in (str(secret), "../../secret/secret.png"):
        _write(root / "train", _coco({"file_name": file_name}), "_annotations.coco.json")
        with pytest.raises(FormatError, match=r"_annotations\.coco\.json: file_name .*(absolute path|leads outside)"):
            convert(root, tmp_path / "ds", "vision")
    assert not (tmp_path / "ds").exists()

