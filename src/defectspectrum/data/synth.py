"""Embedded procedural defect data: plausible inspection images with exact multi-class pixel masks.

Every image is a textured surface of one material (brushed metal, wood, woven fabric, ceramic / stone
tile, moulded plastic) under an uneven light, with camera noise, on which defect regions (scratches,
cracks, contamination spots, holes, stains) are painted. Each defect is painted as a coverage map
(anti-aliased geometry, 0..1) and a target appearance; the image is ``image * (1 - c) + target * c``
and the mask labels the pixels with ``c >= 0.25``, so the mask marks exactly the changed pixels up to
a sub-pixel anti-aliased fringe. Where defects overlap, the later one wins in the image and the mask.

Everything is deterministic for a ``numpy.random.Generator``: a sample and its defect-free surface
rendered from generators with the same seed are identical outside the mask (and its fringe), because
surface, light, sensor noise and defects each draw from their own sub-stream.
"""

from __future__ import annotations

import itertools
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.errors import InputError
from defectspectrum.staging import staged_folder

T = TypeVar("T")

__all__ = ["DEFAULT_MATERIALS", "MATERIALS", "render_sample", "render_surface", "write_ds_folder", "write_mvtec_layout",
           "write_release_layout"]

MATERIALS: dict[str, tuple[str, ...]] = {
    "metal": ("scratch", "spot", "hole", "stain"),
    "wood": ("scratch", "crack", "hole", "stain"),
    "fabric": ("hole", "spot", "stain"),
    "tile": ("crack", "scratch", "spot", "hole", "stain"),
    "plastic": ("scratch", "crack", "spot", "stain"),
    "steel": ("streak", "patch", "inclusion"),
}
# What `materials=None` renders: steel came later and is asked for by name, so a seed still gives the
# folders it gave before.
DEFAULT_MATERIALS: tuple[str, ...] = ("metal", "wood", "fabric", "tile", "plastic")

_MASK_THRESHOLD = 0.25  # coverage from which a pixel is labelled
_MIN_PIXELS = 24  # labelled pixels every painted defect keeps
_MAX_TRIES = 24  # placements tried per defect before taking the best one
_F32 = np.float32

Region = tuple[slice, slice]


@dataclass(frozen=True)
class _Ctx:
    """What defect painters need to know about the scene."""

    material: str
    light: tuple[float, float]  # unit (dy, dx) pointing towards the light
    grain: float | None  # heading (radians, image x towards y) of the grain / brushing, if any


# --------------------------------------------------------------------------- noise


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, cells: float) -> np.ndarray:
    """Unit-ish Gaussian noise with about `cells` features across the longer side (bicubic grid)."""
    h, w = shape
    s = max(h, w)
    cells = min(cells, s / 1.5)
    gh = max(2, int(np.ceil(cells * h / s)) + 2)
    gw = max(2, int(np.ceil(cells * w / s)) + 2)
    grid = rng.standard_normal((gh, gw), dtype=_F32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _fractal(shape: tuple[int, int], rng: np.random.Generator, cells: float = 3.0, octaves: int = 4,
             gain: float = 0.5) -> np.ndarray:
    """Fractal value noise: octaves of smooth noise, each twice as fine and `gain` times as strong."""
    out = np.zeros(shape, _F32)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        out += _F32(amp) * _smooth_noise(shape, rng, cells)
        norm += amp * amp
        amp *= gain
        cells *= 2.0
    return out / _F32(np.sqrt(norm))


def _streaks(shape: tuple[int, int], rng: np.random.Generator, length: float, row: int = 1) -> np.ndarray:
    """Noise stretched along x: features `length` px long and `row` px high (brushing, fibres)."""
    h, w = shape
    gh = max(2, int(np.ceil(h / row)))
    gw = max(2, int(np.ceil(w / max(length, 1.0))) + 1)
    grid = rng.standard_normal((gh, gw), dtype=_F32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def _grids(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids (y, x) as float32."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(_F32)
    return y, x


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of colours a and b with weight t (H, W)."""
    return a + (b - a) * t[..., None]


def _rgb(values: Sequence[float], jitter: float, rng: np.random.Generator) -> np.ndarray:
    """A colour with a little random variation."""
    return np.clip(np.asarray(values, _F32) * _F32(1.0 + rng.uniform(-jitter, jitter)), 0.0, 1.0)


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One element of `options`."""
    return options[int(rng.integers(len(options)))]


def _orient(shape: tuple[int, int], rng: np.random.Generator, p_vertical: float) -> tuple[bool, tuple[int, int]]:
    """Whether a directional texture runs vertically, and the shape to render it in (transposed if so)."""
    vertical = bool(rng.random() < p_vertical)
    return vertical, (shape[1], shape[0]) if vertical else shape


def _unorient(img: np.ndarray, vertical: bool) -> tuple[np.ndarray, float]:
    """Undo `_orient`'s transposition; also return the grain heading (0 = along x, pi/2 = along y)."""
    if vertical:
        return np.ascontiguousarray(img.transpose(1, 0, 2)), float(np.pi / 2)
    return img, 0.0


# --------------------------------------------------------------------------- surfaces


def _metal(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """Brushed steel / aluminium plate: long fine streaks, faint mottling, cool grey."""
    vertical, (h, w) = _orient(shape, rng, 0.35)
    base = _rgb(_pick(rng, [(0.55, 0.56, 0.58), (0.6, 0.6, 0.6), (0.5, 0.52, 0.56), (0.58, 0.56, 0.52)]), 0.08, rng)
    fine = _streaks((h, w), rng, rng.uniform(0.15, 0.4) * w, 1)
    mid = _streaks((h, w), rng, rng.uniform(0.3, 0.8) * w, int(rng.integers(2, 5)))
    mottle = _fractal((h, w), rng, cells=2.5, octaves=3)
    lum = 1.0 + 0.045 * fine + 0.035 * mid + 0.035 * mottle
    img = base * lum[..., None]
    return _unorient(img, vertical)


_WOODS = (
    ((0.84, 0.67, 0.45), (0.64, 0.43, 0.24)),  # pine
    ((0.74, 0.56, 0.36), (0.5, 0.34, 0.19)),  # oak
    ((0.56, 0.38, 0.25), (0.33, 0.2, 0.12)),  # walnut
    ((0.8, 0.6, 0.47), (0.6, 0.38, 0.27)),  # cherry
)


def _wood(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """Planed wood: growth rings stretched along the grain and warped by noise, fine fibres and pores."""
    vertical, (h, w) = _orient(shape, rng, 0.3)
    light, dark = (np.asarray(c, _F32) for c in _WOODS[int(rng.integers(len(_WOODS)))])
    s = max(h, w)
    period = rng.uniform(0.045, 0.09) * s
    y, x = _grids((h, w))
    stretch = rng.uniform(4.0, 8.0)  # features this many times longer along the grain
    small = (max(2, h // 2), max(2, int(w / stretch / 2)))
    warp = cv2.resize(_fractal(small, rng, cells=2.0, octaves=4, gain=0.45), (w, h), interpolation=cv2.INTER_CUBIC)
    ripple = cv2.resize(_fractal(small, rng, cells=6.0, octaves=2), (w, h), interpolation=cv2.INTER_CUBIC)
    u = (y + warp * period * rng.uniform(1.2, 2.5) + ripple * period * 0.12 + x * rng.uniform(-0.06, 0.06)) / period
    frac = u - np.floor(u)
    ring = frac**2.5 + 0.6 * np.exp(-(((1.0 - frac) / 0.1) ** 2))  # early wood light, late wood dark
    fibres = _streaks((h, w), rng, rng.uniform(0.05, 0.15) * w, 1)
    pores = _streaks((h, w), rng, rng.uniform(2, 6), 1)
    pores = np.clip(pores - 1.3, 0, None)
    figure = cv2.resize(_fractal(small, rng, cells=3.0, octaves=3), (w, h), interpolation=cv2.INTER_CUBIC)
    t = np.clip(0.42 * ring + 0.05 * fibres + 0.25 * pores + 0.1 * figure + 0.2, 0.0, 1.0)
    img = _lerp(light, dark, t.astype(_F32))
    return _unorient(img, vertical)


_FABRICS = (
    ((0.2, 0.28, 0.46), (0.5, 0.55, 0.66)),  # denim: blue warp, pale weft
    ((0.78, 0.72, 0.6), (0.74, 0.68, 0.56)),  # canvas
    ((0.5, 0.5, 0.52), (0.46, 0.46, 0.48)),  # grey textile
    ((0.42, 0.45, 0.3), (0.38, 0.41, 0.27)),  # olive drab
    ((0.62, 0.22, 0.2), (0.58, 0.2, 0.18)),  # red cloth
)


def _fabric(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """Woven textile (plain or 2/2 twill): rounded over/under threads, uneven yarn, slight waviness."""
    h, w = shape
    s = max(h, w)
    warp_col, weft_col = (np.asarray(c, _F32) for c in _FABRICS[int(rng.integers(len(_FABRICS)))])
    period = max(4.0, s / rng.uniform(30.0, 48.0))
    y, x = _grids((h, w))
    wobble = _F32(0.25 * period)
    xs = x + wobble * _smooth_noise((h, w), rng, 4.0)
    ys = y + wobble * _smooth_noise((h, w), rng, 4.0)
    cx, cy = xs / period, ys / period
    ix, iy = np.floor(cx).astype(np.int32), np.floor(cy).astype(np.int32)
    sx, sy = np.sin(_F32(np.pi) * (cx - ix)), np.sin(_F32(np.pi) * (cy - iy))
    if rng.random() < 0.4:  # 2/2 twill: diagonal ribs
        warp_on_top = ((ix + iy) & 3) < 2
    else:  # plain weave
        warp_on_top = ((ix + iy) & 1) == 0
    shade_warp = np.sqrt(sx) * (0.7 + 0.3 * sy)  # round profile of a vertical thread, dipping at its ends
    shade_weft = np.sqrt(sy) * (0.7 + 0.3 * sx)
    shade = np.where(warp_on_top, shade_warp, shade_weft)
    # per-thread brightness (uneven yarn) and fibre noise along each thread
    n_cols, n_rows = int(w / period) + 3, int(h / period) + 3
    col_var = rng.normal(0.0, 0.06, n_cols).astype(_F32)
    row_var = rng.normal(0.0, 0.06, n_rows).astype(_F32)
    ixc = np.clip(ix, 0, n_cols - 1)
    iyc = np.clip(iy, 0, n_rows - 1)
    thread_var = np.where(warp_on_top, col_var[ixc], row_var[iyc])
    fuzz = cv2.GaussianBlur(_F32(0.05) * rng.standard_normal((h, w), dtype=_F32), (0, 0), 0.8)
    colour = np.where(warp_on_top[..., None], warp_col, weft_col)
    lum = 0.55 + 0.45 * shade + thread_var + fuzz + 0.03 * _fractal((h, w), rng, cells=3.0, octaves=3)
    return (colour * lum[..., None]).astype(_F32), None


_TILES = (
    (0.8, 0.77, 0.7),  # beige stone
    (0.64, 0.64, 0.62),  # grey granite
    (0.74, 0.47, 0.34),  # terracotta
    (0.85, 0.85, 0.83),  # white ceramic
    (0.55, 0.58, 0.6),  # slate blue-grey
)


def _tile(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """Ceramic / stone tile: low-frequency mottling, dark and light grains, sometimes faint veins."""
    h, w = shape
    base = _rgb(_pick(rng, _TILES), 0.06, rng)
    mottle = _fractal((h, w), rng, cells=3.0, octaves=5, gain=0.55)
    lum = 1.0 + 0.06 * mottle
    grain_noise = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=_F32), (0, 0), 0.7)
    grain_noise = grain_noise / (grain_noise.std() + 1e-6)
    dark_frac, light_frac = rng.uniform(0.03, 0.08), rng.uniform(0.02, 0.06)
    lum -= 0.25 * np.clip(grain_noise - _F32(NormalDist().inv_cdf(1 - dark_frac)), 0, None)
    other = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=_F32), (0, 0), 0.6)
    other = other / (other.std() + 1e-6)
    lum += 0.15 * np.clip(other - _F32(NormalDist().inv_cdf(1 - light_frac)), 0, None)
    if rng.random() < 0.5:
        y, x = _grids((h, w))
        a = rng.uniform(0, np.pi)
        s = max(h, w)
        phase = (x * np.cos(a) + y * np.sin(a)) / (s * rng.uniform(0.3, 0.6)) * 2 * np.pi
        phase += 3.0 * _fractal((h, w), rng, cells=2.5, octaves=5)
        vein = np.exp(-((np.sin(phase) / 0.06) ** 2))
        lum -= rng.uniform(0.05, 0.12) * vein
    lum += 0.012 * rng.standard_normal((h, w), dtype=_F32)
    return (base * lum[..., None]).astype(_F32), None


_PLASTICS = (
    (0.13, 0.13, 0.14),  # black
    (0.32, 0.33, 0.35),  # dark grey
    (0.16, 0.3, 0.58),  # blue
    (0.62, 0.14, 0.12),  # red
    (0.82, 0.79, 0.72),  # beige
    (0.84, 0.84, 0.84),  # white
)


def _plastic(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """Moulded plastic: flat colour with a fine orange-peel texture and faint flow marks."""
    h, w = shape
    base = _rgb(_pick(rng, _PLASTICS), 0.05, rng)
    peel = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=_F32), (0, 0), 1.3)
    peel = peel / (peel.std() + 1e-6)
    flow = _fractal((h, w), rng, cells=2.0, octaves=3)
    lum = 1.0 + 0.025 * peel + 0.03 * flow
    return (base * lum[..., None]).astype(_F32), None


_STEELS = ((0.42, 0.42, 0.42), (0.55, 0.55, 0.56), (0.34, 0.35, 0.36), (0.62, 0.61, 0.6), (0.48, 0.47, 0.45))


def _steel(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """Rolled steel strip, seen in grey: rolling marks and broad bands along the strip, fine scale grain."""
    vertical, (h, w) = _orient(shape, rng, 0.5)
    base = _rgb(_pick(rng, _STEELS), 0.12, rng)
    marks = _streaks((h, w), rng, rng.uniform(0.3, 1.0) * w, int(rng.integers(1, 4)))
    bands = _streaks((h, w), rng, 2.0 * w, int(rng.integers(max(2, h // 24), max(3, h // 6))))
    grain = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=_F32), (0, 0), rng.uniform(0.6, 1.2))
    grain = grain / (grain.std() + 1e-6)
    lum = 1.0 + 0.05 * marks + rng.uniform(0.03, 0.1) * bands + 0.035 * grain
    lum += 0.04 * _fractal((h, w), rng, cells=2.0, octaves=3)
    return _unorient((base * lum[..., None]).astype(_F32), vertical)  # the palette is grey


_SURFACES: dict[str, Callable[[tuple[int, int], np.random.Generator], tuple[np.ndarray, float | None]]] = {
    "metal": _metal,
    "wood": _wood,
    "fabric": _fabric,
    "tile": _tile,
    "plastic": _plastic,
    "steel": _steel,
}

_SPECULAR = {"metal": (0.12, 0.26), "plastic": (0.08, 0.2), "tile": (0.0, 0.06), "wood": (0.0, 0.04),
             "fabric": (0.0, 0.0), "steel": (0.0, 0.08)}


def _lighting(material: str, shape: tuple[int, int],
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Illumination gain (H, W), additive specular highlight (H, W) and the light direction."""
    h, w = shape
    s = max(h, w)
    y, x = _grids(shape)
    yn, xn = (2 * y - h) / s, (2 * x - w) / s
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = float(np.sin(angle)), float(np.cos(angle))
    gain = 1.0 + rng.uniform(0.06, 0.18) * (xn * dx + yn * dy)
    vy, vx = rng.uniform(-0.4, 0.4, 2)
    gain *= 1.0 - rng.uniform(0.05, 0.2) * ((yn - vy) ** 2 + (xn - vx) ** 2)
    gain *= rng.uniform(0.9, 1.1)
    lo, hi = _SPECULAR[material]
    spec = np.zeros(shape, _F32)
    if hi > 0:
        strength = rng.uniform(lo, hi)
        cy, cx = rng.uniform(-0.8, 0.8, 2)
        if material == "metal":  # brushed metal: a broad band across the brushing direction
            a = rng.uniform(0, np.pi)
            d = (xn - cx) * np.cos(a) + (yn - cy) * np.sin(a)
            spec = strength * np.exp(-((d / rng.uniform(0.25, 0.6)) ** 2))
        else:
            r2 = (xn - cx) ** 2 + (yn - cy) ** 2
            spec = strength * np.exp(-r2 / rng.uniform(0.1, 0.5) ** 2)
    return gain.astype(_F32), spec.astype(_F32), (dy, dx)


def _tone(img: np.ndarray) -> np.ndarray:
    """Soft shoulder above 0.85 so highlights compress instead of clipping (strictly increasing)."""
    knee = _F32(0.85)
    over = np.maximum(img - knee, 0.0)
    return np.maximum(np.minimum(img, knee) + _F32(0.15) * np.tanh(over / _F32(0.15)), 0.0)


def _sensor(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot + read noise, partly shared across channels, then quantisation to uint8."""
    h, w = img.shape[:2]
    read = rng.uniform(0.006, 0.012)
    shot = rng.uniform(0.0002, 0.0005)
    sigma = np.sqrt(read * read + shot * np.clip(img, 0.0, 1.0))
    common = rng.standard_normal((h, w, 1), dtype=_F32)
    chroma = rng.standard_normal((h, w, 3), dtype=_F32)
    noisy = img + sigma * (0.8 * common + 0.6 * chroma)
    return np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- defect geometry helpers


def _box(cy: float, cx: float, ry: float, rx: float, shape: tuple[int, int]) -> Region | None:
    """The image region around (cy, cx) with half-sizes (ry, rx), or None if it is empty."""
    h, w = shape
    y0, y1 = max(0, int(np.floor(cy - ry))), min(h, int(np.ceil(cy + ry)) + 1)
    x0, x1 = max(0, int(np.floor(cx - rx))), min(w, int(np.ceil(cx + rx)) + 1)
    if y1 <= y0 or x1 <= x0:
        return None
    return slice(y0, y1), slice(x0, x1)


def _centre(rng: np.random.Generator, shape: tuple[int, int], margin: float = 0.12) -> tuple[float, float]:
    """A random defect centre, kept `margin` (fraction) away from the borders."""
    h, w = shape
    return rng.uniform(margin * h, (1 - margin) * h), rng.uniform(margin * w, (1 - margin) * w)


def _site(shape: tuple[int, int], rng: np.random.Generator, scale: float, size: tuple[float, float], min_r: float,
          margin: float, reach: float) -> tuple[float, float, float, Region] | None:
    """A round defect's radius (a `size` fraction of the short side x `scale`, at least `min_r`), centre
    (`margin` from the borders) and the region `reach` radii around it; None where that region is empty."""
    h, w = shape
    r = max(min_r, rng.uniform(*size) * min(h, w) * scale)
    cy, cx = _centre(rng, (h, w), margin)
    region = _box(cy, cx, r * reach, r * reach, (h, w))
    return None if region is None else (r, cy, cx, region)


def _blob(region: Region, cy: float, cx: float, r: float, aspect: float, angle: float, rough: float,
          rng: np.random.Generator, lobes: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Irregular ellipse in `region`: (coverage with a ~1 px edge, normalised radius, dy, dx).

    The radius field is ~0 at the centre and 1 on the outline, which noise of about `lobes` features
    per diameter displaces by less than `rough` (so the blob stays within r / (1 - rough)); dy, dx is
    the unit direction from the centre, for shading.
    """
    ys, xs = region
    y, x = np.mgrid[ys, xs].astype(_F32)
    y, x = y - _F32(cy), x - _F32(cx)
    ca, sa = _F32(np.cos(angle)), _F32(np.sin(angle))
    u, v = x * ca + y * sa, -x * sa + y * ca
    rr = np.sqrt((u / r) ** 2 + (v / (r * aspect)) ** 2)
    if rough > 0:
        cells = max(2.0, lobes * max(rr.shape) / (2.0 * r))
        rr = rr * (1.0 + rough * np.tanh(_fractal(rr.shape, rng, cells=cells, octaves=3, gain=0.4)))
    cov = np.clip((1.0 - rr) * _F32(r * (0.5 + 0.5 * aspect)) + 0.5, 0.0, 1.0)
    d = np.sqrt(x * x + y * y) + _F32(1e-6)
    return cov.astype(_F32), rr.astype(_F32), y / d, x / d


def _curve_box(points: list[np.ndarray], pad: float, shape: tuple[int, int]) -> Region | None:
    """The image region holding all polylines (x, y points) plus `pad` px."""
    allp = np.concatenate(points)
    x0, y0 = allp.min(0) - pad
    x1, y1 = allp.max(0) + pad
    return _box((y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2, shape)


def _draw(canvas: np.ndarray, pts: np.ndarray, origin: tuple[int, int], thickness: int, value: int = 255) -> None:
    """Anti-aliased open polyline of (x, y) image points onto a uint8 patch whose corner is origin (y, x)."""
    p = np.round((pts - np.array([origin[1], origin[0]], np.float64)) * 16).astype(np.int32)
    cv2.polylines(canvas, [p.reshape(-1, 1, 2)], False, value, thickness, cv2.LINE_AA, shift=4)


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, n: int, step: float, bend: float,
          jag: float) -> np.ndarray:
    """A random-walk polyline (x, y) of n steps: `bend` = smooth heading drift, `jag` = per-step jitter."""
    drift = np.cumsum(rng.normal(0.0, bend, n)) + rng.normal(0.0, bend * 3)
    angles = heading + drift + rng.normal(0.0, jag, n)
    steps = step * np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(0.7, 1.3, (n, 1))
    return np.concatenate([start[None], start[None] + np.cumsum(steps, 0)])


def _lum(a: np.ndarray) -> float:
    """Mean luminance of an RGB patch."""
    return float(a.reshape(-1, 3).mean(0) @ np.array([0.3, 0.59, 0.11]))


def _along_noise(shape: tuple[int, int], rng: np.random.Generator, lo: float) -> np.ndarray:
    """Smooth strength variation in [lo, 1] over a patch (so lines fade in and out a little)."""
    n = _smooth_noise(shape, rng, max(2.0, max(shape) / 12.0))
    return (lo + (1 - lo) * np.clip(0.6 + 0.4 * n, 0.0, 1.0)).astype(_F32)


# --------------------------------------------------------------------------- defect painters
# A painter returns (region, coverage, target): the image becomes image*(1-c) + target*c in the region.

Painted = tuple[Region, np.ndarray, np.ndarray] | None


def _scratch(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A thin, gently curved scratch (sometimes with fainter parallel companions)."""
    h, w = img.shape[:2]
    s = min(h, w)
    length = max(26.0, rng.uniform(0.3, 0.7) * s * scale)
    step = 2.0
    n = int(length / step)
    heading = rng.uniform(0, 2 * np.pi)
    path = _walk(rng, np.zeros(2), heading, n, step, 0.012, 0.02)
    cy, cx = _centre(rng, (h, w), 0.2)
    path += np.array([cx, cy]) - (path.min(0) + path.max(0)) / 2
    paths = [path]
    thick = [1 + s // 512 + int(ctx.material == "metal" and s >= 192 and rng.random() < 0.4)]
    normal = np.array([-np.sin(heading), np.cos(heading)])
    for _ in range(int(rng.integers(0, 3)) if s >= 96 else 0):
        k0 = int(rng.integers(0, n // 2))
        k1 = int(rng.integers(k0 + max(2, n // 4), n + 1))
        paths.append(path[k0:k1] + normal * rng.uniform(-6, 6) + rng.normal(0, 0.3, (k1 - k0, 2)))
        thick.append(1 + s // 512)
    region = _curve_box(paths, 3.0 + max(thick), (h, w))
    if region is None:
        return None
    a = img[region]
    canvas = np.zeros(a.shape[:2], np.uint8)
    for i, (p, t) in enumerate(zip(paths, thick)):
        _draw(canvas, p, (region[0].start, region[1].start), t, 255 if i == 0 else 170)
    cov = canvas.astype(_F32) / 255.0
    strength = _along_noise(a.shape[:2], rng, 0.55)[..., None]
    lum = _lum(a)
    if ctx.material == "wood" and lum < 0.5:  # fresh, lighter fibres
        target = a + (np.array([0.92, 0.8, 0.62], _F32) * gain[region][..., None] - a) * 0.7 * strength
    elif lum < 0.45 or (ctx.material == "metal" and lum < 0.65 and rng.random() < 0.7):  # catches the light
        target = a + (1.0 - a) * _F32(rng.uniform(0.5, 0.75)) * strength
    else:  # dark groove / abrasion
        target = a * (1.0 - _F32(rng.uniform(0.4, 0.55)) * strength)
    return region, cov, target.astype(_F32)


def _crack(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A dark, jagged, branching crack."""
    h, w = img.shape[:2]
    s = min(h, w)
    length = max(28.0, rng.uniform(0.35, 0.8) * s * scale)
    step = max(2.0, s / 100.0) * rng.uniform(1.0, 1.8)
    n = max(6, int(length / step))
    along_grain = ctx.material == "wood" and ctx.grain is not None
    if along_grain and ctx.grain is not None:  # checks and splits follow the grain
        heading = ctx.grain + rng.uniform(-0.12, 0.12) + rng.choice([0.0, np.pi])
        main = _walk(rng, np.zeros(2), heading, n, step, 0.015, 0.15)
    else:
        heading = rng.uniform(0, 2 * np.pi)
        main = _walk(rng, np.zeros(2), heading, n, step, 0.06, 0.35)
    cy, cx = _centre(rng, (h, w), 0.2)
    main += np.array([cx, cy]) - (main.min(0) + main.max(0)) / 2
    width = max(1, round(1 + s / 256))
    paths, thick = [main], [width]
    if width > 1:  # thinner tail
        cut = int(n * rng.uniform(0.5, 0.8))
        paths.append(main[cut:])
        thick.append(max(1, width // 2))
        paths[0] = main[: cut + 1]
    for k in range(1, n - 2):
        if rng.random() < (0.03 if along_grain else 0.06):
            side = rng.choice([-1.0, 1.0])
            bn = max(3, int((n - k) * rng.uniform(0.2, 0.5)))
            turn = rng.uniform(0.1, 0.3) if along_grain else rng.uniform(0.4, 1.1)
            branch = _walk(rng, main[k], heading + side * turn, bn, step * 0.9, 0.08, 0.35)
            paths.append(branch)
            thick.append(max(1, width // 2))
    region = _curve_box(paths, 3.0 + width, (h, w))
    if region is None:
        return None
    a = img[region]
    canvas = np.zeros(a.shape[:2], np.uint8)
    for p, t in zip(paths, thick):
        _draw(canvas, p, (region[0].start, region[1].start), t)
    cov = canvas.astype(_F32) / 255.0
    if _lum(a) < 0.22:  # stress whitening on dark plastic
        target = a + (0.75 - a) * _F32(rng.uniform(0.55, 0.75))
    else:
        target = a * _F32(rng.uniform(0.12, 0.3))
    return region, cov, target.astype(_F32)


_SPOT_COLOURS = {
    "dark": ((0.1, 0.08, 0.07), (0.4, 0.22, 0.1), (0.2, 0.2, 0.19), (0.18, 0.14, 0.08)),  # dirt, rust, grime
    "light": ((0.78, 0.77, 0.72), (0.68, 0.62, 0.5)),  # dust, lint, dried residue on dark surfaces
}


def _spot(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A contamination speck: a small irregular blob, denser in the middle, with a few satellites."""
    h, w = img.shape[:2]
    s = min(h, w)
    r = max(3.5, rng.uniform(0.02, 0.05) * s * scale)
    cy, cx = _centre(rng, (h, w))
    blobs = [(cy, cx, r)]
    for _ in range(int(rng.integers(0, 4))):
        d = r * rng.uniform(1.3, 2.6)
        ang = rng.uniform(0, 2 * np.pi)
        blobs.append((cy + d * np.sin(ang), cx + d * np.cos(ang), max(1.6, r * rng.uniform(0.2, 0.45))))
    reach = r * 3.4 + 2.0
    region = _box(cy, cx, reach, reach, (h, w))
    if region is None:
        return None
    a = img[region]
    cov = np.zeros(a.shape[:2], _F32)
    dens = np.zeros(a.shape[:2], _F32)
    for by, bx, br in blobs:
        c, rr, _, _ = _blob(region, by, bx, br, rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), 0.2, rng, 3.0)
        cov = np.maximum(cov, c)
        dens = np.maximum(dens, np.clip(1.0 - rr, 0.0, 1.0))
    colours = _SPOT_COLOURS["light" if _lum(a) < 0.36 else "dark"]
    colour = _rgb(_pick(rng, colours), 0.15, rng) * gain[region][..., None]
    opacity = (rng.uniform(0.75, 0.95) * (0.7 + 0.3 * np.sqrt(dens)))[..., None]
    target = a + (colour - a) * opacity
    return region, cov, target.astype(_F32)


def _hole(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A pit / puncture: dark interior with a lit inner wall and a rim (burr on metal, frayed on fabric)."""
    site = _site(img.shape[:2], rng, scale, (0.035, 0.075), 4.0, 0.12, 1.6)
    aspect = rng.uniform(0.7, 1.0)
    if site is None:
        return None
    r, cy, cx, region = site
    a = img[region]
    rough = {"fabric": 0.18, "wood": 0.12, "tile": 0.1}.get(ctx.material, 0.04)
    cov, rr, dy, dx = _blob(region, cy, cx, r, aspect, rng.uniform(0, np.pi), rough, rng)
    ly, lx = ctx.light
    facing = dy * _F32(ly) + dx * _F32(lx)  # +1 on the side towards the light
    g = gain[region][..., None]
    rim_w = max(1.3, 0.2 * r) / r
    rim = np.clip((rr - (1.0 - rim_w)) / rim_w, 0.0, 1.0)[..., None]  # 0 inside .. 1 at the outline
    if ctx.material == "fabric":  # dark backing showing through, shadowed frayed edge
        floor = np.array([0.06, 0.06, 0.07], _F32) * g
        inside = floor * (1.0 + 0.8 * np.clip(-facing, 0, 1))[..., None]
        edge = a * 0.45
    else:
        floor = a * _F32(rng.uniform(0.08, 0.18))
        wall = np.clip((rr - 0.45) / 0.5, 0.0, 1.0) * np.clip(-facing, 0, 1)  # far inner wall catches light
        inside = floor + a * (0.3 * wall**1.5)[..., None]
        bright = 0.6 + 0.8 * np.clip(facing, 0, 1) if ctx.material == "metal" else 0.55 + 0.3 * facing
        edge = np.clip(a * bright[..., None], 0.0, 1.2)
    target = inside * (1.0 - rim) + edge * rim
    return region, cov, target.astype(_F32)


_STAIN_TINTS = {
    "metal": ((0.55, 0.42, 0.3), (0.7, 0.64, 0.5), (0.6, 0.6, 0.62)),  # rust, oil, water mark
    "wood": ((0.55, 0.45, 0.38), (0.45, 0.38, 0.35)),  # water, dark oil
    "fabric": ((0.6, 0.42, 0.28), (0.55, 0.3, 0.35), (0.62, 0.58, 0.42)),  # coffee, wine, grease
    "tile": ((0.62, 0.5, 0.38), (0.55, 0.55, 0.55), (0.7, 0.6, 0.45)),
    "plastic": ((0.55, 0.5, 0.4), (0.6, 0.6, 0.62)),
}


def _stain(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A large translucent blotch with a darker tide line at its edge."""
    site = _site(img.shape[:2], rng, scale, (0.1, 0.2), 7.0, 0.15, 1.5)
    if site is None:
        return None
    r, cy, cx, region = site
    a = img[region]
    cov, _rr, _, _ = _blob(region, cy, cx, r, rng.uniform(0.55, 1.0), rng.uniform(0, np.pi), 0.22, rng, 2.5)
    hard = (cov >= _MASK_THRESHOLD).astype(np.uint8)
    dist = cv2.distanceTransform(hard, cv2.DIST_L2, 3)
    ring = np.exp(-dist / _F32(max(1.2, 0.06 * r)))  # tide line where the liquid dried last
    mottle = _fractal(a.shape[:2], rng, cells=max(3.0, 4.0 * max(a.shape[:2]) / (2 * r)), octaves=4)
    opacity = np.clip(rng.uniform(0.4, 0.65) + 0.18 * mottle + 0.4 * ring, 0.35, 1.0)[..., None]
    if _lum(a) < 0.3:  # dried residue shows as a pale film on dark surfaces
        residue = _rgb((0.6, 0.58, 0.55), 0.1, rng) * gain[region][..., None]
        target = a + (residue - a) * opacity * 0.6
    else:
        tint = _rgb(_pick(rng, _STAIN_TINTS[ctx.material]), 0.05, rng)
        target = a * (1.0 + (tint - 1.0) * opacity)
    return region, cov, target.astype(_F32)


def _rolling_heading(ctx: _Ctx, rng: np.random.Generator) -> float:
    """The direction of the strip (its grain), or a random axis where the surface has none."""
    heading = ctx.grain if ctx.grain is not None else float(rng.integers(2)) * np.pi / 2
    return heading + rng.uniform(-0.03, 0.03)


def _streak(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A rolled-in streak: a band along the strip, 1.5-8% of the image wide, running off one or both edges,
    bright or dark, fading in strength along its length."""
    h, w = img.shape[:2]
    s = min(h, w)
    width = max(2, round(rng.uniform(0.015, 0.08) * s * scale))
    heading = _rolling_heading(ctx, rng)
    along = np.array([np.cos(heading), np.sin(heading)])
    cy, cx = _centre(rng, (h, w), 0.08)
    reach = float(np.hypot(h, w))
    ends = (-reach, reach) if rng.random() < 0.65 else (-reach, rng.uniform(-0.3, 0.3) * reach)
    if rng.random() < 0.5:
        ends = (-ends[1], -ends[0])
    step = max(2.0, s / 64.0)
    n = max(4, int((ends[1] - ends[0]) / step))
    path = _walk(rng, np.array([cx, cy]) + along * ends[0], heading, n, step, 0.004, 0.01)
    region = _curve_box([path], 3.0 + width, (h, w))
    if region is None:
        return None
    a = img[region]
    canvas = np.zeros(a.shape[:2], np.uint8)
    _draw(canvas, path, (region[0].start, region[1].start), width)
    cov = cv2.GaussianBlur(canvas.astype(_F32) / 255.0, (0, 0), rng.uniform(0.4, 0.3 + width / 6))
    strength = _along_noise(a.shape[:2], rng, 0.7)[..., None]
    k = _F32(rng.uniform(0.25, 0.55))
    target = a + (1.0 - a) * k * strength if rng.random() < 0.5 else a * (1.0 - k * strength)
    return region, cov, target.astype(_F32)


def _patch(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A scale patch: a large dark region with ragged lobes and a mottled inside, anywhere up to the edges."""
    site = _site(img.shape[:2], rng, scale, (0.07, 0.22), 6.0, 0.02, 1.6)
    if site is None:
        return None
    r, cy, cx, region = site
    a = img[region]
    angle = _rolling_heading(ctx, rng) + rng.uniform(-0.5, 0.5)
    cov, _rr, _, _ = _blob(region, cy, cx, r, rng.uniform(0.35, 1.0), angle, rng.uniform(0.2, 0.4), rng, 4.0)
    cov = cv2.GaussianBlur(cov, (0, 0), rng.uniform(0.5, 1.5))
    mottle = _fractal(a.shape[:2], rng, cells=max(3.0, 3.0 * max(a.shape[:2]) / (2 * r)), octaves=4)
    depth = np.clip(rng.uniform(0.25, 0.6) * (0.8 + 0.3 * mottle), 0.1, 0.85)[..., None]
    return region, cov, (a * (1.0 - depth)).astype(_F32)


def _inclusion(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator, ctx: _Ctx, scale: float) -> Painted:
    """A non-metallic inclusion: one to four short dark dashes along the strip, close together."""
    h, w = img.shape[:2]
    s = min(h, w)
    heading = _rolling_heading(ctx, rng)
    along, normal = np.array([np.cos(heading), np.sin(heading)]), np.array([-np.sin(heading), np.cos(heading)])
    cy, cx = _centre(rng, (h, w), 0.08)
    paths, thick = [], []
    for i in range(int(rng.integers(1, 5))):
        length = max(8.0, rng.uniform(0.05, 0.25) * s * scale) * (1.0 if i == 0 else rng.uniform(0.3, 0.8))
        start = np.array([cx, cy]) + normal * (rng.uniform(-4, 4) * i) + along * rng.uniform(-0.5, 0.5) * length * i
        n = max(3, int(length / 2.0))
        paths.append(_walk(rng, start - along * length / 2, heading, n, 2.0, 0.01, 0.03))
        thick.append(max(1, round(rng.uniform(1.0, 2.5 + s / 256))))
    region = _curve_box(paths, 3.0 + max(thick), (h, w))
    if region is None:
        return None
    a = img[region]
    canvas = np.zeros(a.shape[:2], np.uint8)
    for p, t in zip(paths, thick):
        _draw(canvas, p, (region[0].start, region[1].start), t)
    cov = canvas.astype(_F32) / 255.0
    return region, cov, (a * _F32(1.0 - rng.uniform(0.3, 0.65))).astype(_F32)


_PAINTERS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator, _Ctx, float], Painted]] = {
    "streak": _streak,
    "patch": _patch,
    "inclusion": _inclusion,
    "scratch": _scratch,
    "crack": _crack,
    "spot": _spot,
    "hole": _hole,
    "stain": _stain,
}


def _paint_defects(img: np.ndarray, gain: np.ndarray, defects: Sequence[str], rng: np.random.Generator,
                   ctx: _Ctx) -> np.ndarray:
    """Paint `defects` in order onto img (in place); return the class-index mask.

    Each placement is retried (smaller after a few tries) until the new defect keeps at least
    _MIN_PIXELS labelled pixels and every earlier defect keeps at least half its pixels.
    """
    h, w = img.shape[:2]
    classes = MATERIALS[ctx.material]
    mask = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.int16)
    kept: list[int] = []
    needed: list[float] = []
    for k, name in enumerate(defects):
        best, best_score = None, -1.0
        for attempt in range(_MAX_TRIES):
            painted = _PAINTERS[name](img, gain, rng, ctx, 0.85 ** (attempt // 4))
            if painted is None:
                continue
            region, cov, _ = painted
            hard = cov >= _MASK_THRESHOLD
            n = int(np.count_nonzero(hard))
            lost = np.bincount(inst[region][hard].ravel(), minlength=k + 1)[1:]
            score = n / _MIN_PIXELS
            for j in range(k):
                score = min(score, (kept[j] - lost[j]) / needed[j])
            if score > best_score:
                best, best_score = (painted, hard, lost), score
            if score >= 1.0:
                break
        if best is None:
            kept.append(0)
            needed.append(1.0)
            continue
        (region, cov, target), hard, lost = best
        c = cov[..., None]
        img[region] = img[region] * (1.0 - c) + target * c
        mask[region][hard] = classes.index(name) + 1
        inst[region][hard] = k + 1
        for j in range(k):
            kept[j] -= int(lost[j])
        n = int(np.count_nonzero(hard))
        kept.append(n)
        needed.append(max(float(_MIN_PIXELS), 0.5 * n))
    return mask


# --------------------------------------------------------------------------- public API


MIN_SIDE = 8
MAX_SIDE = 4096  # rendering peaks near 160 bytes a pixel: 4096 x 4096 needs about 2.7 GB
MAX_COUNT = 10_000  # images per folder


def _check(material: str, size: tuple[int, int]) -> tuple[int, int]:
    """Validate material and size; return (height, width)."""
    if material not in MATERIALS:
        raise InputError(f"unknown material {material!r}; choose one of {', '.join(MATERIALS)}")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be (height, width), got {size!r}") from None
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InputError(f"size {size!r} is too small; height and width must be at least {MIN_SIDE}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise InputError(f"size {size!r} is too large; height and width must be at most {MAX_SIDE}")
    return h, w


def _render(material: str, size: tuple[int, int], rng: np.random.Generator,
            defects: Sequence[str] | None, max_defects: int) -> tuple[np.ndarray, np.ndarray]:
    """Shared renderer: independent sub-streams for surface, light, noise and defects."""
    h, w = _check(material, size)
    classes = MATERIALS[material]
    seeds = rng.integers(0, 2**63 - 1, size=4)
    surf_rng, light_rng, noise_rng, defect_rng = (np.random.default_rng(int(v)) for v in seeds)
    if isinstance(defects, str):
        defects = (defects,)
    if defects is None:
        n = int(defect_rng.integers(1, max_defects + 1)) if max_defects >= 1 else 0
        defects = [str(c) for c in defect_rng.choice(classes, size=n, replace=n > len(classes))]
    unknown = [d for d in defects if d not in classes]
    if unknown:
        raise InputError(f"material {material!r} has no defect class {unknown[0]!r}; "
                         f"its classes are {', '.join(classes)}")
    img, grain = _SURFACES[material]((h, w), surf_rng)
    img = cv2.GaussianBlur(img, (0, 0), 0.5)  # optics
    gain, spec, light = _lighting(material, (h, w), light_rng)
    img = img * gain[..., None] + spec[..., None]
    mask = _paint_defects(img, gain, list(defects), defect_rng, _Ctx(material, light, grain))
    return _sensor(_tone(img), noise_rng), mask


def render_surface(material: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A defect-free surface, (H, W, 3) uint8 RGB. size is (height, width).

    Equal to ``render_sample(material, size, rng, defects=())[0]`` for a generator in the same state.
    """
    return _render(material, size, rng, (), 0)[0]


def render_sample(material: str, size: tuple[int, int], rng: np.random.Generator,
                  defects: Sequence[str] | None = None, max_defects: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and class-index mask (H, W) uint8; value i = MATERIALS[material][i-1], 0 = background.

    defects: the classes to paint, one region each, in order (a class may repeat; later wins where
    they overlap); None = 1..max_defects random classes of the material; empty = defect-free.
    Outside the mask the image equals the defect-free surface of a same-state generator, except for
    a sub-pixel anti-aliased fringe; every painted defect keeps at least ~20 labelled pixels.
    """
    return _render(material, size, rng, defects, max_defects)


def _image_rng(seed: int, material: str, folder: str, index: int) -> np.random.Generator:
    """The generator of one dataset image, independent of which other images are written."""
    return np.random.default_rng([seed, zlib.crc32(material.encode()), zlib.crc32(folder.encode()), index])


def _save_png(arr: np.ndarray, path: Path) -> None:
    """Write an RGB or L array as PNG, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be a non-negative integer, got {value!r}")
        if name != "seed" and value > MAX_COUNT:
            raise InputError(f"{name} {value}: at most {MAX_COUNT} images a folder; use a smaller number")


def _layout_samples(materials: Sequence[str] | None, n_defective_per_type: int, n_good: int, n_train_good: int,
                    size: tuple[int, int], seed: int) -> Iterator[tuple[str, str, str, int, np.ndarray, np.ndarray]]:
    """Every sample of the MVTec-style layout as (material, split, folder, index, image, class-index mask)."""
    chosen = [materials] if isinstance(materials, str) else list(DEFAULT_MATERIALS if materials is None else materials)
    for material in chosen:
        _check(material, size)
    _check_counts(n_defective_per_type=n_defective_per_type, n_good=n_good, n_train_good=n_train_good, seed=seed)
    for material in chosen:
        classes = MATERIALS[material]
        empty = np.zeros(size, np.uint8)
        for split, count in (("train", n_train_good), ("test", n_good)):
            for i in range(count):
                image = render_surface(material, size, _image_rng(seed, material, f"{split}/good", i))
                yield material, split, "good", i, image, empty
        for folder in (*classes, "combined"):
            for i in range(n_defective_per_type):
                rng = _image_rng(seed, material, f"test/{folder}", i)
                if folder == "combined":
                    k = int(rng.integers(2, min(3, len(classes)) + 1))
                    defects = [str(c) for c in rng.choice(classes, size=k, replace=False)]
                else:
                    defects = [folder]
                img, mask = render_sample(material, size, rng, defects=defects)
                yield material, "test", folder, i, img, mask


def _refuse_non_empty(dst: Path) -> None:
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} already exists and is not empty; choose a new or empty folder")


def write_mvtec_layout(dst: Path, *, materials: Sequence[str] | None = None, n_defective_per_type: int = 4,
                       n_good: int = 4, n_train_good: int = 4, size: tuple[int, int] = (256, 256),
                       seed: int = 0) -> Path:
    """Write an MVTec-AD-style tree of synthetic images under dst and return dst.

    <material>/train/good/NNN.png, <material>/test/good/NNN.png, <material>/test/<defect>/NNN.png with
    <material>/ground_truth/<defect>/NNN_mask.png (L mode, 0/255): one folder per defect class (one
    class per image) plus `combined` (2-3 classes per image). Deterministic for a seed; every image
    depends only on (seed, material, folder, index). Raises FileExistsError if dst is not empty.
    """
    dst = Path(dst)
    _refuse_non_empty(dst)
    items = _layout_samples(materials, n_defective_per_type, n_good, n_train_good, size, seed)
    first = next(items, None)  # validates the arguments before anything is written
    with staged_folder(dst) as building:  # appears complete or not at all
        for material, split, folder, i, img, mask in itertools.chain([first] if first else [], items):
            _save_png(img, building / material / split / folder / f"{i:03d}.png")
            if folder != "good":
                binary = np.where(mask > 0, 255, 0).astype(np.uint8)
                _save_png(binary, building / material / "ground_truth" / folder / f"{i:03d}_mask.png")
    return dst


def write_ds_folder(dst: Path, *, materials: Sequence[str] | None = None, n_defective_per_type: int = 4,
                    n_good: int = 4, size: tuple[int, int] = (256, 256), seed: int = 0) -> DSFolder:
    """Write the same images as `write_mvtec_layout` (test and good) straight into a DS folder.

    Unlike the MVTec layout, masks keep every class (`combined` images hold 2-3 classes), with the
    class map `MATERIALS[material]` per object; `defect_type` is the folder name.
    """
    dst = Path(dst)
    _refuse_non_empty(dst)
    chosen = [materials] if isinstance(materials, str) else list(DEFAULT_MATERIALS if materials is None else materials)
    items = _layout_samples(chosen, n_defective_per_type, n_good, 0, size, seed)
    first = next(items, None)
    with staged_folder(dst) as building:  # appears complete or not at all
        folder = DSFolder.create(building, dst.name, {m: MATERIALS[m] for m in chosen})
        for material, _, kind, i, img, mask in itertools.chain([first] if first else [], items):
            folder.add_sample(material, f"{kind}_{i:03d}", img, mask, defect_type=kind, source=f"synth:seed={seed}")
        folder.save()
    folder.root = dst
    return folder


def write_release_layout(dst: Path, *, materials: Sequence[str] | None = None, n_defective_per_type: int = 4,
                         n_good: int = 4, size: tuple[int, int] = (256, 256), seed: int = 0) -> Path:
    """Write the images of `write_ds_folder` in the Defect Spectrum release layout and return dst.

    `<material>/image/<folder>/<name>.png`, `<material>/mask/<folder>/<name>_mask.png` (class
    indices: `combined` images keep 2-3 classes), `rbg_mask/` colours for viewing, and a
    `classes.json` with `MATERIALS` as class maps, which the `ds-release` reader reads back.
    """
    from defectspectrum.data.formats.ds_release import export_ds_release

    dst = Path(dst)
    _refuse_non_empty(dst)
    with tempfile.TemporaryDirectory(prefix=".synth-", dir=dst.parent if dst.parent.is_dir() else None) as tmp:
        folder = write_ds_folder(Path(tmp) / "ds", materials=materials, n_defective_per_type=n_defective_per_type,
                                 n_good=n_good, size=size, seed=seed)
        return export_ds_release(folder, dst)
