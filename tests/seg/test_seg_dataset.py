"""DSDataset (selection, label spaces, errors, reproducibility) and the mask-safe transforms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from conftest import ModuleTmp  # noqa: E402
from defectspectrum.data.dsfolder import DSFolder  # noqa: E402
from defectspectrum.data.synth import write_ds_folder  # noqa: E402
from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.seg.dataset import DSDataset  # noqa: E402
from defectspectrum.seg.labels import IGNORE_INDEX  # noqa: E402
from defectspectrum.seg.transforms import (  # noqa: E402
    Compose,
    ResizeLong,
    TrainTransform,
    crop_pair,
    rescaled_crop,
    resize_pair,
)


@pytest.fixture(scope="module")
def ds(module_tmp: ModuleTmp) -> DSFolder:
    """Two objects (metal, wood: different class maps), 6 samples each (one good); samples
    alternate train/val by id, scratches are marked synthetic."""
    folder = write_ds_folder(module_tmp("seg") / "ds", materials=["metal", "wood"],
                             n_defective_per_type=1, n_good=1, size=(48, 48))
    ordered = sorted(folder, key=lambda s: s.id)
    folder.update(s.replace(split=("train", "val")[i % 2], synthetic=s.defect_type == "scratch")
                  for i, s in enumerate(ordered))
    folder.save()
    return DSFolder.open(folder.root)


def ids(dataset: DSDataset) -> list[str]:
    return [s.id for s in dataset.samples]


def tiny_folder(root: Path, objects: dict[str, list[str]], size: tuple[int, int] = (16, 16)) -> DSFolder:
    """One defective sample per object (a 4x4 square of class 1)."""
    folder = DSFolder.create(root, "tiny", objects)
    for name in objects:
        mask = np.zeros(size, np.uint8)
        mask[4:8, 4:8] = 1
        folder.add_sample(name, "bad", np.full((*size, 3), 100, np.uint8), mask, defect_type="dent")
    folder.save()
    return folder


# -- selection -------------------------------------------------------------------------------


def test_filters_select_exactly_the_matching_samples_sorted_by_id(ds: DSFolder) -> None:
    every = sorted(ds, key=lambda s: s.id)
    cases = [
        ({"labels": "global"}, every),
        ({"objects": ["wood"]}, [s for s in every if s.object == "wood"]),
        ({"objects": "metal", "split": "train"}, [s for s in every if s.object == "metal" and s.split == "train"]),
        ({"labels": "global", "synthetic": "only"}, [s for s in every if s.synthetic]),
        ({"labels": "global", "synthetic": "exclude"}, [s for s in every if not s.synthetic]),
        ({"objects": ["metal"], "include_good": False}, [s for s in every if s.object == "metal" and not s.is_good]),
        ({"labels": "global", "split": "val", "synthetic": "exclude", "include_good": False},
         [s for s in every if s.split == "val" and not s.synthetic and not s.is_good]),
    ]
    for options, expected in cases:
        dataset = DSDataset(ds, **options)  # type: ignore[arg-type]
        assert ids(dataset) == [s.id for s in expected], options
        assert len(dataset) == len(expected) > 0
    assert ids(DSDataset(ds.root, labels="global")) == [s.id for s in every]  # a path opens the folder


def test_items_without_transform_are_the_files_as_read(ds: DSFolder) -> None:
    dataset = DSDataset(ds, objects=["metal"], preprocess=None)
    for i, sample in enumerate(dataset.samples):
        item = dataset[i]
        assert item["index"] == i
        assert item["image"].dtype == torch.uint8 and item["mask"].dtype == torch.int64
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), ds.load_image(sample))
        assert np.array_equal(item["mask"].numpy(), ds.load_mask(sample))  # object labels = mask indices
    assert np.any(dataset[len(dataset) - 1]["mask"].numpy() > 0)


def test_preprocessed_image_is_normalised_float(ds: DSFolder) -> None:
    dataset = DSDataset(ds, objects=["wood"])
    image = dataset[0]["image"]
    assert image.dtype == torch.float32 and image.shape == (3, 48, 48)
    raw = dataset.raw(0)[0].astype(np.float32)
    expected = (raw[..., 0] / 255 - 0.485) / 0.229
    assert np.allclose(image[0].numpy(), expected, atol=1e-5)


def test_global_labels_follow_global_classes_for_two_objects(ds: DSFolder) -> None:
    dataset = DSDataset(ds, labels="global", preprocess=None)
    assert list(dataset.labels.names) == [entry.label for entry in ds.global_classes()]
    index = {(entry.object, entry.name): entry.index for entry in ds.global_classes()}
    seen: set[int] = set()
    for i, sample in enumerate(dataset.samples):
        local = ds.load_mask(sample)
        names = ds.classes(sample.object).names
        expected = np.zeros_like(local, dtype=np.int64)
        for k in np.unique(local[local > 0]):
            expected[local == k] = index[(sample.object, names[k])]
        labels = dataset[i]["mask"].numpy()
        assert np.array_equal(labels, expected), sample.id
        seen.update(np.unique(labels).tolist())
    assert max(seen) == len(ds.global_classes()) - 1  # wood's last class reached the end of the list


def test_trained_label_space_is_reused_and_checked(ds: DSFolder, tmp_path: Path) -> None:
    train = DSDataset(ds, split="train", objects=["metal"])
    val = DSDataset(ds, split="val", labels=train.labels)  # objects default to the trained ones
    assert val.labels is train.labels
    assert {s.object for s in val.samples} == {"metal"} and all(s.split == "val" for s in val.samples)
    other = tiny_folder(tmp_path / "other", {"metal": ["dent"]})
    with pytest.raises(InputError, match="'metal' has classes .*dent.* but the model was trained on"):
        DSDataset(other, labels=train.labels)
    with pytest.raises(InputError, match="'wood' was not trained on"):
        DSDataset(ds, objects=["wood"], labels=train.labels)
    with pytest.raises(InputError, match="has none of the trained objects"):
        DSDataset(tiny_folder(tmp_path / "third", {"plate": ["dent"]}), labels=train.labels)


# -- errors ----------------------------------------------------------------------------------


def test_unknown_object_lists_the_valid_ones(ds: DSFolder) -> None:
    with pytest.raises(InputError, match=r"unknown object\(s\) 'glass'; objects: metal, wood"):
        DSDataset(ds, objects=["glass"])


def test_object_labels_need_one_class_map(ds: DSFolder) -> None:
    with pytest.raises(InputError, match="different class maps.*--labels global"):
        DSDataset(ds)


def test_empty_selection_names_the_filter_and_the_fix(ds: DSFolder, tmp_path: Path) -> None:
    unsplit = tiny_folder(tmp_path / "unsplit", {"plate": ["dent"]})
    with pytest.raises(InputError, match=r"has a split; run `defectspectrum data split .*--rule first-k --k 5`"):
        DSDataset(unsplit, split="train")
    with pytest.raises(InputError, match=r"is in split 'test' \(splits there: train, val\)"):
        DSDataset(ds, objects=["metal"], split="test")
    with pytest.raises(InputError, match="none of the 1 samples of object.*plate is synthetic"):
        DSDataset(unsplit, synthetic="only")
    only_scratch = DSDataset(ds, labels="global", synthetic="only")
    assert all(s.defect_type == "scratch" for s in only_scratch.samples)
    good = DSFolder.create(tmp_path / "good", "good", {"plate": ["dent"]})
    good.add_sample("plate", "ok", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), defect_type="good")
    good.save()
    with pytest.raises(InputError, match="are defect-free"):
        DSDataset(good, include_good=False)
    empty = DSFolder.create(tmp_path / "empty", "empty", {"plate": ["dent"]})
    with pytest.raises(InputError, match="no samples of object"):
        DSDataset(empty)
    with pytest.raises(InputError, match="synthetic='maybe'"):
        DSDataset(ds, objects=["metal"], synthetic="maybe")


def test_mask_of_another_size_is_refused_naming_the_mask(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "ds", {"plate": ["dent"]})
    mask_path = folder.mask_path(folder["plate/bad"])
    Image.fromarray(np.zeros((16, 12), np.uint8)).save(mask_path)
    dataset = DSDataset(folder)
    with pytest.raises(InputError, match=rf"{mask_path}: mask is 12x16 but its image is 16x16"):
        dataset[0]


def test_mask_value_outside_the_class_map_is_refused_naming_the_mask(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "ds", {"plate": ["dent"]})
    mask_path = folder.mask_path(folder["plate/bad"])
    Image.fromarray(np.full((16, 16), 3, np.uint8)).save(mask_path)
    with pytest.raises(InputError, match=rf"{mask_path}: mask index 3 is outside the class map"):
        DSDataset(folder).raw(0)


def test_sixteen_bit_grey_image_reads_as_its_top_byte_in_three_channels(tmp_path: Path) -> None:
    folder = tiny_folder(tmp_path / "ds", {"plate": ["dent"]})
    values = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257 + 3).astype(np.uint16)
    Image.fromarray(values).save(folder.image_path(folder["plate/bad"]))  # mode I;16
    image, _ = DSDataset(folder).raw(0)
    assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
    assert all(np.array_equal(image[..., c], (values >> 8).astype(np.uint8)) for c in range(3))


# -- transforms: masks move with images --------------------------------------------------------


def ramp_pair(h: int, w: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Image: channel 0 = 4 * (x mod 64), channel 1 = 4 * (y mod 64), channel 2 = 255 (not padding);
    mask: the coordinate along `axis` mod 64. A mask aligned with the image holds, at every pixel,
    the source pixel nearest the position the image was sampled at: |image / 4 - mask| <= 1/2."""
    y, x = np.mgrid[0:h, 0:w] % 64
    image = np.stack([4 * x, 4 * y, np.full_like(x, 255)], axis=-1).astype(np.uint8)
    return image, (x if axis == 1 else y).astype(np.uint8)


def check_aligned(image: np.ndarray, mask: np.ndarray, channel: int, n: int) -> None:
    """`ramp_pair`'s invariant after a transform; `n`: the source image's length along the mask's axis."""
    inside = mask != IGNORE_INDEX
    assert np.all(image[~inside] == 0)  # padding: image 0 where the mask is ignored
    assert np.all(image[inside][:, 2] == 255)  # and nowhere else
    error = np.abs(image[..., channel].astype(np.float64) / 4 - mask)
    if n > 64:  # the ramp wraps at 64: the image blends 63 and 0 there (n is a multiple of 64: borders too)
        inside &= (mask >= 5) & (mask <= 58)
    edge = (mask == 0) | (mask == n - 1)  # the filter is cut short at the image border
    assert inside.any() and error[inside & ~edge].max(initial=0) <= 0.5 + 0.13  # + uint8 rounding of the image
    assert error[inside].max() <= 1.0


@pytest.mark.parametrize("size", [(40, 60), (30, 20), (256, 320)])
def test_train_transform_keeps_mask_aligned_with_image(size: tuple[int, int]) -> None:
    transform = TrainTransform(crop_size=32, scale=(0.3, 2.0), hflip=True, vflip=True, rotate90=True, defect_crop=0)
    for seed in range(12):
        results = []
        for axis in (1, 0):  # the same draws (defect_crop=0: they never depend on the mask)
            image, mask = transform(*ramp_pair(*size, axis), np.random.default_rng(seed))
            assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
            results.append((image, mask))
        assert np.array_equal(results[0][0], results[1][0])
        # after a quarter turn x and y swap places: find which mask goes with which channel
        for image, mask in results:
            errors = [np.abs(image[..., c] / 4 - mask)[mask < 64].mean() for c in (0, 1)]
            channel = int(np.argmin(errors))
            check_aligned(image, mask, channel, size[1] if channel == 0 else size[0])


def test_rescaled_crop_samples_the_rescaled_image_and_pads_only_outside_it() -> None:
    """Only a window is resampled: each output pixel must still show the source position the whole
    rescaled image has there (within the documented half output pixel), padding exactly outside it."""
    rng = np.random.default_rng(5)
    image, mask = ramp_pair(64, 64, axis=1)
    for _ in range(60):
        out = int(rng.integers(19, 129))  # 0.3x .. 2x
        scale = out / 64
        top = int(rng.choice([out - 24, -5, 0, int(rng.integers(min(0, out - 24), max(0, out - 24) + 1))]))
        left = int(rng.choice([out - 24, -3, 0, int(rng.integers(min(0, out - 24), max(0, out - 24) + 1))]))
        crop_image, crop_mask = rescaled_crop(image, mask, (out, out), top, left, 24)
        rows, cols = np.arange(24) + top, np.arange(24) + left
        inside = ((rows >= 0) & (rows < out))[:, None] & ((cols >= 0) & (cols < out))[None, :]
        assert np.array_equal(crop_mask != IGNORE_INDEX, inside), (out, top, left)
        check_aligned(crop_image, crop_mask, 0, 64)
        ideal = np.broadcast_to((cols + 0.5) / scale - 0.5, inside.shape)
        interior = inside & (ideal > 4) & (ideal < 59)  # away from the border, where the filter is cut short
        shift = np.abs(crop_image[..., 0] / 4 - ideal)[interior] * scale  # in output pixels
        assert shift.max(initial=0) <= 0.5 + 0.13 * scale + 1e-9, (out, top, left)


def test_plain_nearest_would_fail_the_alignment_check() -> None:
    """The check above can fail: a mask resampled with torchvision's NEAREST (no centre alignment)
    is a source pixel off after shrinking by 3."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    image, mask = ramp_pair(48, 60, axis=1)
    small_image, small_mask = resize_pair(image, mask, (16, 20))
    check_aligned(small_image, small_mask, 0, 60)
    shifted = F.resize(tv_tensors.Mask(torch.from_numpy(mask)), [16, 20], interpolation=InterpolationMode.NEAREST)
    with pytest.raises(AssertionError):
        check_aligned(small_image, shifted.numpy(), 0, 60)


def test_resized_mask_takes_the_label_under_each_pixel_centre_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, size=(24, 36)).astype(np.uint8)
    image = np.zeros((24, 36, 3), np.uint8)
    for h, w in [(8, 12), (48, 72), (36, 54), (17, 29), (72, 108)]:
        _, out = resize_pair(image, mask, (h, w))
        rows = np.floor((np.arange(h) + 0.5) * 24 / h).astype(int)
        cols = np.floor((np.arange(w) + 0.5) * 36 / w).astype(int)
        assert np.array_equal(out, mask[np.ix_(rows, cols)]), (h, w)
        if h > 24:  # enlarged and shrunk back: the same pixel grid
            assert np.array_equal(resize_pair(image, out, (24, 36))[1], mask), (h, w)


def test_masks_only_get_values_they_had_and_padding_is_ignored() -> None:
    rng = np.random.default_rng(1)
    mask = np.kron(rng.choice(np.array([0, 3, 7], np.uint8), size=(6, 5)), np.ones((5, 5), np.uint8))
    image = np.repeat(mask[..., None] * 30, 3, axis=-1).astype(np.uint8)
    transform = TrainTransform(crop_size=40, scale=(0.4, 2.5), rotate90=True, vflip=True)
    seen: set[int] = set()
    for seed in range(20):
        _, out = transform(image, mask, np.random.default_rng(seed))
        seen.update(np.unique(out).tolist())
    assert seen <= {0, 3, 7, IGNORE_INDEX} and {3, 7, IGNORE_INDEX} <= seen
    # no rescale, an image smaller than the crop: exactly its pixels survive, the rest is padding
    padded_image, padded = TrainTransform(crop_size=48, scale=(1, 1))(image, mask, np.random.default_rng(2))
    assert np.count_nonzero(padded != IGNORE_INDEX) == mask.size
    assert np.all(padded_image[padded == IGNORE_INDEX] == 0)
    assert sorted(np.unique(padded).tolist()) == [0, 3, 7, IGNORE_INDEX]


def test_crop_pair_pads_outside_the_image() -> None:
    image = np.full((4, 4, 3), 9, np.uint8)
    mask = np.ones((4, 4), np.uint8)
    out_image, out_mask = crop_pair(image, mask, -2, 1, 6, 6)
    assert out_mask.shape == (6, 6)
    assert np.array_equal(out_mask[2:6, 0:3], np.ones((4, 3))) and np.all(out_mask[:2] == IGNORE_INDEX)
    assert np.all(out_mask[:, 3:] == IGNORE_INDEX) and np.all(out_image[:, 3:] == 0)


def test_defect_crop_finds_one_tiny_defect_in_a_large_image() -> None:
    mask = np.zeros((400, 300), np.uint8)
    mask[311:315, 40:44] = 2
    image = np.zeros((400, 300, 3), np.uint8)

    def hits(defect_crop: float) -> int:
        transform = TrainTransform(crop_size=32, scale=(0.5, 2.0), rotate90=True, defect_crop=defect_crop)
        return sum(np.any(transform(image, mask, np.random.default_rng(seed))[1] == 2) for seed in range(30))

    assert hits(1.0) == 30
    assert hits(0.0) < 10  # random crops mostly miss it


def test_resize_long_keeps_aspect_and_composes() -> None:
    image, mask = ramp_pair(40, 60, axis=1)
    small_image, small_mask = ResizeLong(30)(image, mask, np.random.default_rng(0))
    assert small_mask.shape == (20, 30) and small_image.shape == (20, 30, 3)
    check_aligned(small_image, small_mask, 0, 60)
    assert ResizeLong(60)(image, mask, np.random.default_rng(0))[1] is mask  # not larger: unchanged
    composed = Compose([ResizeLong(30), TrainTransform(crop_size=16, scale=(1, 1), defect_crop=0)])
    out_image, out_mask = composed(image, mask, np.random.default_rng(3))
    assert out_mask.shape == (16, 16)
    check_aligned(out_image, out_mask, 0, 60)
    with pytest.raises(InputError, match="max_side"):
        ResizeLong(0)


def test_transform_settings_are_checked() -> None:
    with pytest.raises(InputError, match="scale range"):
        TrainTransform(scale=(2.0, 1.0))
    with pytest.raises(InputError, match="defect_crop"):
        TrainTransform(defect_crop=1.5)
    assert TrainTransform(crop_size=64).to_json()["crop_size"] == 64


# -- reproducibility ---------------------------------------------------------------------------


def augmented(ds: DSFolder, seed: int = 0) -> DSDataset:
    return DSDataset(ds, labels="global", seed=seed,
                     transform=TrainTransform(crop_size=32, scale=(0.5, 1.5), vflip=True, rotate90=True))


def same(a: dict, b: dict) -> bool:
    return torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_items_depend_on_seed_epoch_and_index_only(ds: DSFolder) -> None:
    dataset = augmented(ds)
    torch.manual_seed(1)
    first = [dataset[i] for i in range(len(dataset))]
    torch.manual_seed(2)  # torch's global RNG plays no part
    assert all(same(a, dataset[i]) for i, a in enumerate(first))
    assert all(same(a, augmented(ds)[i]) for i, a in enumerate(first))
    assert not all(same(a, augmented(ds, seed=1)[i]) for i, a in enumerate(first))
    dataset.set_epoch(1)
    epoch1 = [dataset[i] for i in range(len(dataset))]
    assert not all(same(a, b) for a, b in zip(first, epoch1))
    dataset.set_epoch(0)
    assert all(same(dataset[(i, 1)], b) for i, b in enumerate(epoch1))  # (index, epoch) keys
    assert same(dataset[-1], first[-1])
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_dataloader_workers_give_the_same_batches(ds: DSFolder) -> None:
    def batches(workers: int) -> list[dict]:
        dataset = augmented(ds)
        dataset.set_epoch(3)
        return list(DataLoader(dataset, batch_size=4, num_workers=workers))

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == math.ceil(12 / 4)
    for a, b in zip(serial, parallel):
        assert same(a, b) and torch.equal(a["index"], b["index"])
