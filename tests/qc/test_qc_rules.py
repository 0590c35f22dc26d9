"""The rules file: what it accepts, and every mistake named with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from qc_helpers import write_rules

from defectspectrum.data.classes import ClassMap
from defectspectrum.data.formats.ds_release import MVTEC_CLASSES
from defectspectrum.errors import InputError
from defectspectrum.qc.rules import Rules, load_rules

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "qc"
PLATE = {"plate": ClassMap.from_defects(["scratch", "spot", "hole"])}


def _error(tmp_path: Path, text: str) -> str:
    path = write_rules(tmp_path / "rules.yaml", text)
    with pytest.raises(InputError) as info:
        load_rules(path)
    return str(info.value)


def test_areas_in_pixels_and_square_millimetres(tmp_path: Path) -> None:
    rules = load_rules(write_rules(tmp_path / "r.yaml", """
pixel_size_mm: 0.1
min_region_area: 3
objects:
  plate:
    forbidden: [hole]
    limits:
      scratch: {max_area: "0.5 mm2", max_count: 2}
      spot: {max_total_area: "40 px", min_region_area: 5}
"""))
    policy = rules.policies(PLATE)["plate"]
    assert policy.forbidden == {3}
    assert policy.limits[1].max_area == pytest.approx(50.0)  # 0.5 mm2 / (0.1 mm)^2
    assert policy.limits[1].max_count == 2
    assert policy.limits[2].max_total_area == 40.0
    assert policy.speck_size(2) == 5.0 and policy.speck_size(1) == 3.0
    assert policy.reject_others


@pytest.mark.parametrize(("text", "fragments"), [
    ("objects:\n  plate:\n    limits:\n      spot: {max_aera: 3}\n", ["rules.yaml:4:", "max_aera", "keys: max_area"]),
    ("objects:\n  plate:\n    forbiden: [hole]\n", ["rules.yaml:3:", "forbiden", "forbidden"]),
    ("objects:\n  plate:\n    forbidden: [hole]\n  plate:\n    accept: [hole]\n", ["rules.yaml:4:", "twice", "line 2"]),
    ("objects:\n  plate:\n    forbidden: [hole\n", ["invalid YAML", "line 4"]),
    ("objects:\n  plate:\n    limits:\n      spot: {max_area: '2 mm2'}\n", ["rules.yaml:4:", "pixel_size_mm"]),
    ("objects:\n  plate:\n    limits:\n      spot: {max_area: -4}\n", ["rules.yaml:4:", "at least 0"]),
    ("objects:\n  plate:\n    limits:\n      spot: {max_area: yes}\n", ["rules.yaml:4:", "number of pixels"]),
    ("objects:\n  plate:\n    limits:\n      spot: {max_area: 4 cm2}\n", ["rules.yaml:4:", "mm2"]),
    ("objects:\n  plate:\n    limits:\n      spot: {max_count: 1.5}\n", ["rules.yaml:4:", "max_count"]),
    ("objects:\n  plate:\n    limits:\n      spot: {min_region_area: 4}\n", ["rules.yaml:4:", "max_total_area"]),
    ("objects:\n  plate:\n    forbidden: [background]\n", ["rules.yaml:3:", "not a defect class"]),
    ("objects:\n  plate:\n    forbidden: [hole]\n    accept: [hole]\n", ["rules.yaml:4:", "forbidden and in accept"]),
    ("objects:\n  plate:\n    other_classes: maybe\n", ["rules.yaml:3:", "reject"]),
    ("version: 2\nobjects: {}\n", ["rules.yaml:1:", "version"]),
    ("objects: {}\n", ["no rules"]),
    ("default:\n  forbidden: [hole]\n", ["rules.yaml:1:", "cannot name classes"]),
    ("a: &x [1, 2]\nb: *x\n", ["rules.yaml:2:", "aliases"]),
    ("- just\n- a list\n", ["rules.yaml:1:", "mapping"]),
])
def test_mistakes_name_the_line(tmp_path: Path, text: str, fragments: list[str]) -> None:
    message = _error(tmp_path, text)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert "empty" in _error(tmp_path, "# nothing\n")
    with pytest.raises(InputError, match="not found"):
        load_rules(tmp_path / "absent.yaml")


def test_nested_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines.append("objects: {plate: {forbidden: *a8}}")
    assert "aliases" in _error(tmp_path, "\n".join(lines) + "\n")


def test_names_checked_against_the_data(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "r.yaml", "objects:\n  plate:\n    limits:\n      scrach: {max_area: 3}\n")
    with pytest.raises(InputError) as info:
        load_rules(path).policies(PLATE, "ds")
    message = str(info.value)
    assert "r.yaml:4" in message and "'scrach' is not a class of plate" in message
    assert "scratch, spot, hole" in message
    path = write_rules(tmp_path / "r2.yaml", "objects:\n  plate: {}\n  pill:\n    forbidden: [crack]\n")
    with pytest.raises(InputError, match=r"r2.yaml:3.*'pill' is not in ds; its objects: plate"):
        load_rules(path).policies(PLATE, "ds")


def test_objects_without_rules_need_a_default(tmp_path: Path) -> None:
    two = {**PLATE, "lid": ClassMap.from_defects(["dent"])}
    rules = load_rules(write_rules(tmp_path / "r.yaml", "objects:\n  plate: {forbidden: [hole]}\n"))
    with pytest.raises(InputError, match="no rules for object.*lid.*--object"):
        rules.policies(two)
    assert list(rules.policies(two, only=["plate"])) == ["plate"]
    with_default = load_rules(write_rules(tmp_path / "d.yaml", "objects:\n  plate: {forbidden: [hole]}\n"
                                                                "default: {other_classes: accept}\n"))
    lid = with_default.policies(two)["lid"]
    assert not lid.reject_others and not lid.forbidden


@pytest.mark.parametrize("name", ["zipper", "pill", "wood"])
def test_paper_presets_fit_the_release_class_maps(name: str) -> None:
    rules = load_rules(CONFIGS / f"{name}.yaml")
    policy = rules.policies({name: ClassMap.from_defects(MVTEC_CLASSES[name])})[name]
    assert policy.forbidden  # Table 4 forbids something on every object


def test_paper_preset_limits_follow_table_4() -> None:
    zipper = load_rules(CONFIGS / "zipper.yaml").policies({"zipper": ClassMap.from_defects(MVTEC_CLASSES["zipper"])})
    classes = zipper["zipper"].classes
    assert {classes[i] for i in zipper["zipper"].forbidden} == {"broken_teeth", "split_teeth", "squeezed_teeth"}
    assert zipper["zipper"].limits[classes.index("fabric_border")].max_total_area == 4799  # "< 4800 pixels"


def test_documented_example_is_valid() -> None:
    rules = load_rules(CONFIGS / "example_product.yaml")
    bracket = ClassMap.from_defects(["crack", "missing_hole", "scratch", "dent", "stain", "dust", "burr"])
    policy = rules.policies({"bracket": bracket})["bracket"]
    assert policy.limits[bracket.index("scratch")].max_area == pytest.approx(0.5 / 0.04**2)
    assert policy.reject_others  # burr is named nowhere: rejected


def test_rules_built_in_code_report_dotted_paths() -> None:
    rules = Rules.model_validate({"objects": {"plate": {"forbidden": ["dent"]}}})
    with pytest.raises(InputError, match=r"^objects.plate.forbidden.0: 'dent' is not a class of plate"):
        rules.policies(PLATE)
