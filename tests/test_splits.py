"""Split assignment: the paper's first-k rule in natural order, and the seeded stratified random rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from defectspectrum.cli import app
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.splits import assign_splits, natural_key, val_quotas
from defectspectrum.errors import InputError

IMAGE = np.full((8, 8, 3), 128, np.uint8)


def _mask(defective: bool) -> np.ndarray:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = int(defective)
    return mask


def build(root: Path, groups: dict[tuple[str, str | None], list[str]], synthetic: list[str] = ()) -> DSFolder:
    """Samples named per (object, defect_type); added in the given (unsorted) order."""
    objects = sorted({obj for obj, _ in groups})
    folder = DSFolder.create(root, "s", {obj: ["crack"] for obj in objects})
    for (obj, defect_type), names in groups.items():
        for name in names:
            folder.add_sample(obj, name, IMAGE, _mask(defect_type != "good"), defect_type=defect_type,
                              split="val" if name.startswith("was_val") else None)
    for name in synthetic:
        folder.add_sample(objects[0], name, IMAGE, _mask(True), defect_type="crack", synthetic=True)
    folder.save()
    return folder


def splits_of(folder: DSFolder) -> dict[str, str | None]:
    return {s.id: s.split for s in folder}


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["img10", "img2", "Img1", "img2b", "a", "img003"]
    assert sorted(names, key=natural_key) == ["a", "Img1", "img2", "img2b", "img003", "img10"]


def test_first_k_takes_the_first_k_in_natural_order(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds", {("pill", "crack"): ["c10", "c2", "c1", "c3", "c20"],
                                     ("pill", "color"): ["x1"]})
    counts = assign_splits(folder, rule="first-k", k=2)
    split = splits_of(folder)
    assert [n for n in ("c1", "c2", "c3", "c10", "c20") if split[f"pill/{n}"] == "train"] == ["c1", "c2"]
    assert split["pill/x1"] == "train"  # a group smaller than k trains entirely
    assert counts == {"train": 3, "val": 3}


def test_first_k_groups_by_object_good_and_unknown_types(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds", {
        ("pill", "crack"): ["a1", "a2", "a3"],
        ("pill", "good"): ["g1", "g2", "g3"],
        ("pill", None): ["u1", "u2", "u3"],
        ("wood", "crack"): ["a1", "a2", "a3"],
    })
    assign_splits(folder, rule="first-k", k=1)
    train = sorted(s.id for s in folder if s.split == "train")
    assert train == ["pill/a1", "pill/g1", "pill/u1", "wood/a1"]


def test_synthetic_samples_always_train_and_do_not_use_up_k(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds", {("pill", "crack"): ["r1", "r2", "r3"]}, synthetic=["a_syn0", "a_syn1"])
    counts = assign_splits(folder, rule="first-k", k=1)
    split = splits_of(folder)
    assert split["pill/a_syn0"] == split["pill/a_syn1"] == "train"
    assert (split["pill/r1"], split["pill/r2"], split["pill/r3"]) == ("train", "val", "val")
    assert counts == {"train": 3, "val": 2}
    assign_splits(folder, rule="random", val_fraction=1.0)
    assert splits_of(folder)["pill/a_syn0"] == "train"


def test_existing_splits_are_replaced_and_saved(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds", {("pill", "crack"): ["a1", "was_val2"]})
    assert folder["pill/a1"].split is None and folder["pill/was_val2"].split == "val"
    assign_splits(folder, rule="first-k", k=5)
    folder.save()
    assert splits_of(DSFolder.open(folder.root)) == {"pill/a1": "train", "pill/was_val2": "train"}


def test_random_is_stratified_and_reproducible(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds", {("pill", "crack"): [f"c{i}" for i in range(10)],
                                     ("pill", "color"): [f"x{i}" for i in range(5)],
                                     ("pill", "good"): ["g0", "g1"]})
    counts = assign_splits(folder, rule="random", val_fraction=0.2, seed=3)
    first = splits_of(folder)
    val = [sid for sid, split in first.items() if split == "val"]
    assert sum(sid.startswith("pill/c") for sid in val) == 2  # round(10 * 0.2)
    assert sum(sid.startswith("pill/x") for sid in val) == 1  # round(5 * 0.2)
    assert sum(sid.startswith("pill/g") for sid in val) == 0  # round(0.4)
    assert counts == {"train": 14, "val": 3}
    assign_splits(folder, rule="first-k", k=1)
    assign_splits(folder, rule="random", val_fraction=0.2, seed=3)
    assert splits_of(folder) == first


def test_random_keeps_one_training_sample_per_group(tmp_path: Path) -> None:
    folder = build(tmp_path / "ds", {("pill", "crack"): ["a", "b"], ("pill", "color"): ["c", "d", "e"],
                                     ("pill", "good"): ["solo"]})
    counts = assign_splits(folder, rule="random", val_fraction=1.0, seed=0)
    split = splits_of(folder)
    assert sorted(split[f"pill/{n}"] for n in "ab") == ["train", "val"]
    assert sorted(split[f"pill/{n}"] for n in "cde") == ["train", "val", "val"]
    assert split["pill/solo"] == "val"  # a group of one has nothing to protect
    assert counts == {"train": 2, "val": 4}
    assert assign_splits(folder, rule="random", val_fraction=0.0) == {"train": 6, "val": 0}


@pytest.mark.parametrize("kwargs", [{"rule": "kfold"}, {"rule": "first-k", "k": 0},
                                    {"rule": "random", "val_fraction": 1.5}])
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict) -> None:
    folder = build(tmp_path / "ds", {("pill", "crack"): ["a"]})
    with pytest.raises(InputError):
        assign_splits(folder, **kwargs)
    assert folder["pill/a"].split is None


def test_cli_split(tmp_path: Path) -> None:
    build(tmp_path / "ds", {("pill", "crack"): ["a1", "a2", "a3"]})
    runner = CliRunner()
    result = runner.invoke(app, ["data", "split", str(tmp_path / "ds"), "--k", "2"])
    assert result.exit_code == 0, result.output
    assert "train: 2, val: 1" in result.output
    assert splits_of(DSFolder.open(tmp_path / "ds"))["pill/a3"] == "val"
    bad = runner.invoke(app, ["data", "split", str(tmp_path / "ds"), "--rule", "kfold"])
    assert bad.exit_code == 2 and "kfold" in bad.output


def test_many_small_groups_still_get_their_share_of_validation(tmp_path: Path) -> None:
    groups = {("part", f"type{g}"): [f"{g}_{i}" for i in range(2)] for g in range(10)}
    folder = build(tmp_path / "ds", groups)
    counts = assign_splits(folder, rule="random", val_fraction=0.2, seed=1)
    assert counts == {"train": 16, "val": 4}  # round(20 * 0.2), though each group of 2 rounds to 0
    per_group = {}
    for sample in folder:
        per_group.setdefault(sample.defect_type, []).append(sample.split)
    assert all(splits.count("train") >= 1 for splits in per_group.values())


def test_val_quotas_share_out_the_total_by_largest_remainder() -> None:
    rng = np.random.default_rng(0)
    assert val_quotas([5, 5, 5], 0.2, rng) == [1, 1, 1]
    assert val_quotas([3, 7], 0.5, rng) in ([2, 3], [1, 4])  # equal remainders: the seeded draw decides
    assert val_quotas([4, 6], 0.25, rng) == [1, 2]  # exact 1.0 and 1.5; the total of 2.5 rounds to 3 (half up)
    assert sum(val_quotas([2] * 10, 0.2, rng)) == 4
    assert val_quotas([1, 2], 1.0, rng) == [1, 1]  # a group of two keeps one training image
