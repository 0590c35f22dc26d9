"""Defects generated into given defect-free images (`gen sample --onto GOOD_DIR`).

Each placement is a good image and a full-resolution class mask of where the defect goes (given
with `--masks`, or a defect region of the wanted class taken from the generator's own training
masks and put at the same relative place, jittered). Then:

1. a square window of the training scale (`side` px: the training images' short side, or the good
   image's if smaller) is cut around the defect, so the model sees what it saw in training;
2. the window is scaled to the model's size and sampled RePaint-style: at every step the image
   outside the (slightly grown) defect and the whole mask are re-imposed from the forward-noised
   source, so only the defect area is generated, conditioned on the mask;
3. the generated window is scaled back and pasted into the full-resolution image inside the defect
   and a `blend` px band around it, feathered; every pixel farther away is the source's, untouched.

The written mask is the placement's own, at full resolution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from defectspectrum.data.classes import ClassMap
from defectspectrum.errors import InputError
from defectspectrum.gen.diffusion import decode_image, encode_pair, make_scheduler
from defectspectrum.gen.sample import Drawn, LoadedGenerator, check_pair, sample_generator
from defectspectrum.gen.sampler import two_stage_sample
from defectspectrum.io import image_size, list_images, read_mask_pixels, read_rgb
from defectspectrum.progress import track

JITTER = 0.05  # random placement: the defect's centre moves by up to this share of the image side


@dataclass(frozen=True)
class Placement:
    """Where one defect goes: a good image, its full-resolution class mask, and where both came from."""

    image_path: Path
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 class indices, some defect
    origin: str  # the mask file, or the training region it was taken from


class Placements(Protocol):
    """Placements by index (read when needed: a folder of good images may not fit in memory)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Placement: ...


def window_side(image_shape: tuple[int, ...], generator: LoadedGenerator) -> int:
    """The side of the square window that shows the good image at the training scale."""
    short = min(image_shape[:2])
    return min(short, generator.short_side) if generator.short_side else short


def square_window(mask: np.ndarray, side: int, where: str) -> tuple[int, int]:
    """Top-left (y, x) of the `side` x `side` window centred on the defect in `mask`, inside the image."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise InputError(f"{where}: the mask holds no defect; nothing to generate")
    height, width = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    if height > side or width > side:
        raise InputError(f"{where}: the defect spans {height} x {width} px, more than the {side} px window the "
                         "generator sees at its training scale; give a smaller mask, or one image per defect")
    centre_y, centre_x = (int(ys.min()) + int(ys.max())) // 2, (int(xs.min()) + int(xs.max())) // 2
    top = min(max(0, centre_y - side // 2), mask.shape[0] - side)
    left = min(max(0, centre_x - side // 2), mask.shape[1] - side)
    return top, left


def blend_weights(mask: np.ndarray, blend: int) -> np.ndarray:
    """Per pixel, the generated image's share: 1 on the defect, falling linearly to 0 at `blend` px
    from it, and exactly 0 beyond."""
    if blend <= 0:
        return (mask > 0).astype(np.float32)
    outside = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(1.0 - outside / (blend + 1), 0.0, 1.0).astype(np.float32)


def default_blend(side: int, size: int) -> int:
    """Two model pixels, in full-resolution pixels."""
    return max(2, round(2 * side / size))


def paste(source: np.ndarray, window: np.ndarray, top: int, left: int, weights: np.ndarray) -> np.ndarray:
    """`source` with the scaled-back generated `window` blended in by `weights` (0: source unchanged)."""
    side = window.shape[0]
    out = source.copy()
    region = out[top:top + side, left:left + side].astype(np.float32)
    share = weights[top:top + side, left:left + side, None]
    blended = region + share * (window.astype(np.float32) - region)
    out[top:top + side, left:left + side] = np.where(share > 0, np.clip(np.rint(blended), 0, 255), region)
    return out


def _window_sample(placement: Placement, side: int, top: int, left: int, size: int, grow: int,
                   classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The window as the model's known sample, and which of its values to keep (all of the mask,
    the image outside the defect grown by `grow` model pixels)."""
    image = placement.image[top:top + side, left:left + side]
    mask = placement.mask[top:top + side, left:left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    small_image = cv2.resize(image, (size, size), interpolation=interpolation)
    small_mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    if not small_mask.any():  # a defect thinner than one model pixel still gets one
        y, x = np.argwhere(mask)[0]
        small_mask[min(size - 1, y * size // side), min(size - 1, x * size // side)] = mask[y, x]
    known = encode_pair(small_image, small_mask, classes)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    generated = torch.from_numpy(cv2.dilate((small_mask > 0).astype(np.uint8), kernel) > 0)
    keep = torch.ones_like(known, dtype=torch.bool)
    keep[:3] = ~generated
    return known, keep


def generate_onto(large: LoadedGenerator | None, small: LoadedGenerator | None, switch: int,
                  placements: Placements, num: int, *, seed: int = 0, sampler: str = "ddpm",
                  steps: int | None = None, batch: int = 4, blend: int | None = None, rank: int = 0,
                  world: int = 1) -> Iterator[Drawn]:
    """Samples 0..num-1 (this process's share), sample i onto placement i % len(placements)."""
    first = check_pair(large, small)
    if len(placements) == 0:
        raise InputError("no good images to generate onto")
    if blend is not None and not 0 <= blend <= 10_000:
        raise InputError(f"--blend {blend}: use 0 to 10000 px")
    mine = [i for i in range(num) if i % world == rank]
    device = next(first.model.parameters()).device
    for chunk in track([mine[k:k + batch] for k in range(0, len(mine), batch)], "gen sample --onto"):
        jobs = []
        for index in chunk:
            placement = placements[index % len(placements)]
            side = window_side(placement.image.shape, first)
            top, left = square_window(placement.mask, side, placement.origin)
            band = default_blend(side, first.size) if blend is None else blend
            grow = math.ceil(band * first.size / side) + 1
            jobs.append((index, placement, side, top, left, band,
                         _window_sample(placement, side, top, left, first.size, grow, len(first.classes))))
        known = torch.stack([job[-1][0] for job in jobs]).to(device)
        keep = torch.stack([job[-1][1] for job in jobs]).to(device)
        x = two_stage_sample(large.model if large else None, small.model if small else None,
                             make_scheduler(first.diffusion, sampler), tuple(known.shape), switch,
                             generator=[sample_generator(seed, index) for index, *_ in jobs], steps=steps,
                             device=device, known=known, keep=keep)
        for (index, placement, side, top, left, band, _), sample in zip(jobs, x.float()):
            window = cv2.resize(decode_image(sample), (side, side), interpolation=cv2.INTER_CUBIC if side > first.size
                                else cv2.INTER_AREA)
            image = paste(placement.image, window, top, left, blend_weights(placement.mask, band))
            yield Drawn(index, image, placement.mask, True, "",
                        {"onto": str(placement.image_path), "mask": placement.origin, "window": [top, left, side],
                         "blend": band})


def _class_index(classes: ClassMap, name: str | None) -> int | None:
    if name is None:
        return None
    if name not in classes.defects:
        raise InputError(f"--class {name!r}: the generator's classes are {', '.join(classes.defects)}")
    return classes.index(name)


class MaskPlacements:
    """Each good image with the mask of the same name in `mask_dir`: class indices of the generator's
    classes, or a binary mask (0/1 or 0/255) of the `class_name` defect. Names and sizes are checked
    at once; images and masks are read when their sample is drawn."""

    def __init__(self, good_dir: Path, mask_dir: Path, classes: ClassMap, class_name: str | None = None) -> None:
        self.classes, self.wanted = classes, _class_index(classes, class_name)
        masks: dict[str, Path] = {}
        for path in list_images(mask_dir):
            if path.stem in masks:
                raise InputError(f"{mask_dir}: two masks are named {path.stem!r} ({masks[path.stem].name}, "
                                 f"{path.name}); keep one per good image")
            masks[path.stem] = path
        goods = list_images(good_dir)
        if not goods:
            raise InputError(f"{good_dir}: no images; give a folder of defect-free images")
        missing = [p.name for p in goods if p.stem not in masks]
        if missing:
            raise InputError(f"{mask_dir}: no mask named like {', '.join(missing[:3])}"
                             f"{' and more' if len(missing) > 3 else ''}; give one mask per good image, same name")
        self.pairs = [(path, masks[path.stem]) for path in goods]
        for path, mask_path in self.pairs:
            if image_size(path) != image_size(mask_path):
                (h, w), (mh, mw) = image_size(path), image_size(mask_path)
                raise InputError(f"{mask_path}: mask is {mw} x {mh} px but {path.name} is {w} x {h}; give masks of "
                                 "the images' size")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Placement:
        path, mask_path = self.pairs[index]
        values = read_mask_pixels(mask_path)
        if values.ndim != 2:
            raise InputError(f"{mask_path}: a colour mask; give class indices (8-bit grey) or a binary mask with "
                             "--class")
        present = set(np.unique(values).tolist())
        if self.wanted is not None and present <= {0, 1, 255}:
            mask = np.where(values > 0, self.wanted, 0).astype(np.uint8)
        elif max(present) >= len(self.classes):
            hint = "; for a binary mask pass --class" if present <= {0, 1, 255} else ""
            raise InputError(f"{mask_path}: value {max(present)} is not a class index of "
                             f"{', '.join(self.classes.names)} (0 to {len(self.classes) - 1}){hint}")
        else:
            mask = values.astype(np.uint8)
        if not mask.any():
            raise InputError(f"{mask_path}: the mask holds no defect; nothing to generate there")
        return Placement(path, read_rgb(path), mask, str(mask_path))


@dataclass(frozen=True)
class _Region:
    mask: np.ndarray  # the region's bounding-box crop, class indices
    centre: tuple[float, float]  # its centre, as shares of the training image's height and width
    scale: float  # training image short side
    origin: str


def _training_regions(generator: LoadedGenerator, wanted: int | None) -> list[_Region]:
    folder, samples = generator.training_samples("random placement (without --masks)")
    regions = []
    for sample in samples:
        mask = folder.load_checked_mask(sample)
        for index in ([wanted] if wanted is not None else sorted(set(np.unique(mask).tolist()) - {0})):
            count, labels, stats, centroids = cv2.connectedComponentsWithStats((mask == index).astype(np.uint8),
                                                                               connectivity=8)
            for k in range(1, count):
                x, y, w, h = stats[k, :4]
                crop = np.where(labels[y:y + h, x:x + w] == k, index, 0).astype(np.uint8)
                regions.append(_Region(crop, (centroids[k][1] / mask.shape[0], centroids[k][0] / mask.shape[1]),
                                       min(mask.shape), f"{sample.id} region {k} ({generator.classes[index]})"))
    return regions


class RandomPlacements:
    """`num` placements, placement i on good image i % len(goods): a defect region (of `class_name`,
    or any class) from the generator's training masks, scaled to the good image, flipped at random,
    centred where it was on its training image give or take `JITTER` of the side; drawn from (seed, i)."""

    def __init__(self, goods: list[Path], generator: LoadedGenerator, class_name: str | None, num: int,
                 seed: int = 0) -> None:
        if not goods:
            raise InputError("no good images to generate onto; give a folder of defect-free images")
        wanted = _class_index(ClassMap(generator.classes), class_name)
        self.regions = _training_regions(generator, wanted)
        if not self.regions:
            which = f"{class_name!r} " if class_name else ""
            raise InputError(f"the generator's training masks hold no {which}defect region to place; give --masks")
        self.goods, self.num, self.seed = goods, num, seed
        self._read = functools.lru_cache(maxsize=16)(read_rgb)

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> Placement:
        rng = np.random.default_rng([self.seed, index])
        path = self.goods[index % len(self.goods)]
        image = self._read(path)
        region = self.regions[int(rng.integers(len(self.regions)))]
        scale = min(image.shape[:2]) / region.scale
        crop = region.mask
        if scale != 1:
            shape = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            crop = cv2.resize(crop, shape, interpolation=cv2.INTER_NEAREST_EXACT)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        h, w = min(crop.shape[0], image.shape[0]), min(crop.shape[1], image.shape[1])
        crop = crop[:h, :w]
        cy = (region.centre[0] + rng.uniform(-JITTER, JITTER)) * image.shape[0]
        cx = (region.centre[1] + rng.uniform(-JITTER, JITTER)) * image.shape[1]
        top = int(np.clip(round(cy - h / 2), 0, image.shape[0] - h))
        left = int(np.clip(round(cx - w / 2), 0, image.shape[1] - w))
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[top:top + h, left:left + w] = crop
        if not mask.any():
            mask[top + h // 2, left + w // 2] = region.mask.max()
        return Placement(path, image, mask, f"random: {region.origin}")
