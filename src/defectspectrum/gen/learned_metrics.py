"""Learned measures of generated images against the training images, offline from local weight files.

Nothing is downloaded: each network is built without weights and filled from a file the user gives,
read with `torch.load(weights_only=True)` (a file that asks to run code is refused).

- **FID and KID** (torchmetrics' `FrechetInceptionDistance` / `KernelInceptionDistance`) on the 2048-d
  pool features of torch-fidelity's InceptionV3, from torch-fidelity's
  `weights-inception-2015-12-05-6726825d.pth`. Each image goes in at its own size and is resized to
  299 x 299 inside the network (torch-fidelity's TensorFlow-1-compatible bilinear resize, as in the
  reference FID). The features are extracted once and given to both metrics. KID's subset size is
  min(1000, generated, training): few-shot sets hold 10-50 images, fewer than the default 1000, so a
  subset is then the whole smaller set; its subsets are drawn with a fixed seed.
- **IC-LPIPS** (Ojha et al. 2021): each generated image is assigned to its LPIPS-nearest training
  image; the mean pairwise LPIPS within each cluster of two or more members, averaged over those
  clusters (None where no cluster has two). LPIPS is the AlexNet variant (v0.1): the backbone from
  torchvision's `alexnet-owt-7be5be79.pth`, the linear heads from the copy that ships inside
  torchmetrics (or the `lpips` package). Images are compared at 256 x 256 (`LPIPS_SIDE`, the size
  the IC-LPIPS protocol uses): others are area-resized down or bilinearly up, aspect not kept.
  Distances come from per-image features (one backbone pass per image and per use), so the largest
  cluster's features (about 2.5 MB per image at 256) are held at once.
"""

from __future__ import annotations

import importlib.resources
import io
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from defectspectrum.errors import InputError
from defectspectrum.progress import track

INCEPTION_FILE = "torch-fidelity's weights-inception-2015-12-05-6726825d.pth"
ALEXNET_FILE = "torchvision's alexnet-owt-7be5be79.pth"
KID_SUBSET_SIZE = 1000  # torchmetrics' and torch-fidelity's default
KID_SUBSETS = 100
LPIPS_SIDE = 256
BATCH = 32

Images = Sequence[np.ndarray]
Device = str | torch.device


# ---------------------------------------------------------------- weight files


def _read_state(path: Path, kind: str, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a local state-dict file, read with weights_only=True; InputError naming `what` else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found; give {what}")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged, foreign or hostile files
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        if "weights_only" in reason or "Weights only" in reason:  # torch suggests an unsafe retry: never
            reason = "it holds objects other than tensors, which are never loaded"
        raise InputError(f"{path}: not {kind} ({reason}); give {what}") from None
    if not isinstance(loaded, dict) or not loaded or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()):
        raise InputError(f"{path}: not {kind} (no mapping of names to tensors); give {what}")
    return loaded


def _check_tensors(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], path: Path, kind: str,
                   what: str) -> None:
    """InputError unless every expected tensor is in `state` with its shape."""
    fits = sum(1 for key, shape in expected.items() if key in state and tuple(state[key].shape) == shape)
    if fits < len(expected):
        raise InputError(f"{path}: not {kind} ({fits} of {len(expected)} checked tensors found with their "
                         f"shapes); give {what}")


# Tensors only torch-fidelity's InceptionV3 has (torchvision's inception_v3 names and sizes differ).
_INCEPTION_MARKS = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
                    "fc.weight": (1008, 2048)}


def load_inception(path: Path, device: Device = "cpu") -> nn.Module:
    """torch-fidelity's InceptionV3 feature extractor (2048-d pool features) with the weights at `path`."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    kind, what = "an Inception state dict", f"that file ({INCEPTION_FILE})"
    path = Path(path)
    state = _read_state(path, kind, what)
    _check_tensors(state, _INCEPTION_MARKS, path, kind, what)
    # torch-fidelity reads its weights file itself, with weights_only=False (0.4): it gets these
    # already-checked tensors re-saved in memory, never the user's file.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer)
    except RuntimeError as exc:  # load_state_dict(strict=True): names or shapes differ
        reason = str(exc).splitlines()[1].strip()[:120] if len(str(exc).splitlines()) > 1 else "tensors differ"
        raise InputError(f"{path}: not {kind} ({reason}); give {what}") from None
    return net.to(device).eval()


def load_alexnet_features(path: Path, device: Device = "cpu") -> nn.Sequential:
    """torchvision AlexNet's convolutional part up to relu5 with the weights at `path` (no download)."""
    from torchvision.models import alexnet

    kind, what = "an AlexNet state dict", f"that file ({ALEXNET_FILE})"
    path = Path(path)
    state = _read_state(path, kind, what)
    features = alexnet(weights=None).features
    expected = {f"features.{key}": tuple(value.shape) for key, value in features.state_dict().items()}
    _check_tensors(state, expected, path, kind, what)  # the classifier tensors are not needed
    features.load_state_dict({key.removeprefix("features."): state[key] for key in expected})
    return nn.Sequential(*list(features)[:12]).to(device).eval()  # drop the last max-pool: LPIPS stops at relu5


def lpips_heads() -> list[torch.Tensor]:
    """The five LPIPS v0.1 AlexNet linear heads (per-channel weights, each (C,)), from the installed
    torchmetrics or lpips package: they are small and ship inside it."""
    places = (("torchmetrics.functional.image", "lpips_models/alex.pth"), ("lpips", "weights/v0.1/alex.pth"))
    for package, name in places:
        try:
            resource = importlib.resources.files(package).joinpath(name)
        except ModuleNotFoundError:
            continue
        if resource.is_file():
            with importlib.resources.as_file(resource) as file:
                state = torch.load(file, map_location="cpu", weights_only=True)
            return [state[f"lin{k}.model.1.weight"].flatten().float() for k in range(5)]
    raise InputError("the LPIPS heads (lpips_models/alex.pth) are not in the installed torchmetrics; "
                     "install it with `pip install 'defectspectrum[gen]'`")


# ---------------------------------------------------------------- FID and KID


def _check_images(images: Images, name: str, least: int) -> None:
    if len(images) < least:
        raise ValueError(f"{name}: {len(images)} images; at least {least} are needed")
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name}: images must be (H, W, 3) uint8 arrays, got {image.shape} {image.dtype}")


def _batches_by_size(images: Images, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, (n, H, W, 3) stack) batches of images that share a size, so none is resized here."""
    sizes: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        sizes.setdefault(image.shape, []).append(index)
    for indices in sizes.values():
        for start in range(0, len(indices), batch):
            chosen = np.array(indices[start:start + batch])
            yield chosen, np.stack([images[i] for i in chosen])


def inception_features(net: nn.Module, images: Images, description: str = "Inception features",
                       batch: int = BATCH) -> torch.Tensor:
    """(n, 2048) float64 pool features of `images` ((H, W, 3) uint8, any sizes), in their order."""
    device = next(net.parameters()).device
    out = torch.empty(len(images), 2048, dtype=torch.float64)
    batches = list(_batches_by_size(images, batch))
    with torch.inference_mode():
        for indices, stack in track(batches, description):
            x = torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous().to(device)
            out[torch.from_numpy(indices)] = net(x)[0].double().cpu()
    return out


class _Given(nn.Module):
    """Hands features extracted once to both torchmetrics metrics (their `feature=` module)."""

    num_features = 2048

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid_kid_from_features(generated: torch.Tensor, train: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """FID and KID (torchmetrics) between two (n, 2048) feature sets; see the module docstring."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(generated) < 2 or len(train) < 2:
        raise ValueError(f"FID/KID need at least two images on each side, got {len(generated)} and {len(train)}")
    subset = min(KID_SUBSET_SIZE, len(generated), len(train))
    fid = FrechetInceptionDistance(feature=_Given())
    with warnings.catch_warnings():  # "KID keeps all features in memory": 2048 floats an image
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Given(), subsets=KID_SUBSETS, subset_size=subset)
    for metric in (fid, kid):
        metric.update(train.double(), real=True)
        metric.update(generated.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from torch's global generator
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std),
            "kid_subset_size": subset, "kid_subsets": KID_SUBSETS, "generated": len(generated), "train": len(train)}


def fid_kid(generated_images: Images, train_images: Images, inception_weights: Path,
            device: Device = "cpu") -> dict[str, Any]:
    """FID and KID of generated against training images ((H, W, 3) uint8, any sizes), with the
    InceptionV3 weights at `inception_weights` (torch-fidelity's file). Returns {"fid", "kid_mean",
    "kid_std", "kid_subset_size", "kid_subsets", "generated", "train"}; kid_subset_size is
    min(1000, both set sizes), so with few-shot sets every KID subset is the whole smaller set."""
    _check_images(generated_images, "generated", 2)
    _check_images(train_images, "train", 2)
    net = load_inception(Path(inception_weights), device)
    generated = inception_features(net, generated_images, "Inception features (generated)")
    train = inception_features(net, train_images, "Inception features (training)")
    return fid_kid_from_features(generated, train)


# ---------------------------------------------------------------- LPIPS and IC-LPIPS

# LPIPS' input scaling of [-1, 1] images (the ImageNet statistics in that range).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_TAPS = (1, 4, 7, 9, 11)  # relu1..relu5 in torchvision AlexNet's `features`


@dataclass
class Lpips:
    """LPIPS (AlexNet, v0.1) as per-image features and distances between them, so that an n x m
    matrix of distances takes n + m backbone passes instead of n x m."""

    backbone: nn.Sequential
    heads: list[torch.Tensor]  # per layer, (C,) on the backbone's device
    side: int = LPIPS_SIDE

    @classmethod
    def load(cls, alexnet_weights: Path, device: Device = "cpu", side: int = LPIPS_SIDE) -> Lpips:
        backbone = load_alexnet_features(Path(alexnet_weights), device)
        return cls(backbone, [head.to(device) for head in lpips_heads()], side)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if (height, width) == (self.side, self.side):
            return image
        shrink = height >= self.side and width >= self.side
        return cv2.resize(image, (self.side, self.side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def features(self, images: Images) -> list[torch.Tensor]:
        """Per tapped layer, the (n, C, h, w) channel-normalised activations of `images`."""
        device = self.heads[0].device
        x = torch.from_numpy(np.stack([self._prepare(image) for image in images])).to(device)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
        shift = torch.tensor(_SHIFT, device=device).view(1, 3, 1, 1)
        scale = torch.tensor(_SCALE, device=device).view(1, 3, 1, 1)
        x = (x - shift) / scale
        out = []
        with torch.inference_mode():
            for index, layer in enumerate(self.backbone):
                x = layer(x)
                if index in _TAPS:
                    out.append(x / torch.sqrt(1e-8 + (x * x).sum(1, keepdim=True)))  # as LPIPS: eps inside
        return out

    def batched_features(self, images: Images, description: str | None = None,
                         batch: int = BATCH) -> list[torch.Tensor]:
        """`features` in batches; a progress bar where `description` is given (bars do not nest)."""
        starts: Iterable[int] = range(0, len(images), batch)
        if description is not None:
            starts = track(starts, description, total=-(-len(images) // batch))
        chunks = [self.features(images[start:start + batch]) for start in starts]
        return [torch.cat(layer) for layer in zip(*chunks)]

    def distances(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        """(n, m) LPIPS between feature sets `a` and `b`: per layer, the spatial mean of the
        head-weighted squared difference, expanded as |a|_w^2 + |b|_w^2 - 2 <a, b>_w; summed."""
        total = torch.zeros(len(a[0]), len(b[0]), dtype=torch.float64, device=a[0].device)
        for fa, fb, head in zip(a, b, self.heads):
            w = head.view(1, -1, 1, 1)
            spatial = fa.shape[2] * fa.shape[3]
            qa = (fa * fa * w).sum((1, 2, 3)).double() / spatial
            qb = (fb * fb * w).sum((1, 2, 3)).double() / spatial
            cross = ((fa * w).flatten(1) @ fb.flatten(1).T).double() / spatial
            total += qa[:, None] + qb[None, :] - 2 * cross
        return total.clamp_min(0)


def lpips_matrix(images_a: Images, images_b: Images, alexnet_weights: Path, device: Device = "cpu",
                 side: int = LPIPS_SIDE) -> np.ndarray:
    """(len a, len b) LPIPS distances between two image lists, images compared at side x side."""
    _check_images(images_a, "images_a", 1)
    _check_images(images_b, "images_b", 1)
    lpips = Lpips.load(alexnet_weights, device, side)
    return lpips.distances(lpips.batched_features(images_a, "LPIPS features"),
                           lpips.batched_features(images_b, "LPIPS features")).cpu().numpy()


def ic_lpips(generated_images: Images, train_images: Images, alexnet_weights: Path, device: Device = "cpu",
             side: int = LPIPS_SIDE, batch: int = BATCH) -> float | None:
    """Intra-cluster LPIPS (Ojha et al. 2021) of generated images around the training images; None
    where no training image is the nearest of two generated ones. See the module docstring."""
    _check_images(generated_images, "generated", 1)
    _check_images(train_images, "train", 1)
    lpips = Lpips.load(alexnet_weights, device, side)
    train = lpips.batched_features(train_images, "LPIPS features (training)", batch)
    nearest = np.empty(len(generated_images), dtype=np.int64)
    for start in track(range(0, len(generated_images), batch), "LPIPS: nearest training image",
                       total=-(-len(generated_images) // batch)):
        chunk = lpips.features(generated_images[start:start + batch])
        nearest[start:start + batch] = lpips.distances(chunk, train).argmin(1).cpu().numpy()
    clusters = [members for k in range(len(train_images)) if len(members := np.flatnonzero(nearest == k)) >= 2]
    spreads = []
    for members in track(clusters, "LPIPS: within clusters"):
        feats = lpips.batched_features([generated_images[i] for i in members.tolist()], batch=batch)
        within = lpips.distances(feats, feats)
        pairs = torch.triu_indices(len(members), len(members), 1, device=within.device)
        spreads.append(float(within[pairs[0], pairs[1]].mean()))
    return float(np.mean(spreads)) if spreads else None
