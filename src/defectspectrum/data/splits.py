"""Train/val split assignment: the paper's first-k rule, or a seeded stratified random split.

Groups are (object, defect_type); samples without a defect_type form one group per object
("unknown"), and defect-free ("good") samples are a group like any other, so first-k also puts
the first k good images of each object in train. Synthetic samples (synthetic=True) always go
to train and neither count towards k nor take part in the random draw: generated data is for
training only and must not be evaluated on.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np

from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample
from defectspectrum.errors import InputError

RULES = ("first-k", "random")
TRAIN, VAL = "train", "val"
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key in which digit runs compare as numbers: "img2" before "img10" (case-insensitive)."""
    parts = _DIGITS.split(text)
    return tuple((1, int(part)) if index % 2 else (0, part.lower()) for index, part in enumerate(parts))


def _groups(samples: Iterable[Sample]) -> dict[tuple[str, str], list[Sample]]:
    """Real samples per (object, defect_type), each group in natural order of sample names."""
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[(sample.object, sample.defect_type or "unknown")].append(sample)
    return {key: sorted(members, key=lambda s: (natural_key(s.name), s.name))
            for key, members in sorted(groups.items())}


def _first_k(members: list[Sample], k: int) -> list[str]:
    return [TRAIN if position < k else VAL for position in range(len(members))]


def val_quotas(sizes: list[int], val_fraction: float, rng: np.random.Generator) -> list[int]:
    """Validation images per group: round(total * val_fraction) in all, shared out by largest
    remainder (ties drawn with `rng`), so many small groups still give a validation set; a group
    of two or more keeps at least one training image."""
    caps = [n - 1 if n >= 2 else n for n in sizes]
    exact = [n * val_fraction for n in sizes]
    quotas = [min(int(np.floor(q)), cap) for q, cap in zip(exact, caps)]
    target = min(int(np.floor(sum(sizes) * val_fraction + 0.5)), sum(caps))
    ties = rng.random(len(sizes))
    order = sorted(range(len(sizes)), key=lambda g: (-(exact[g] - np.floor(exact[g])), ties[g]))
    while sum(quotas) < target:
        grown = False
        for g in order:
            if sum(quotas) < target and quotas[g] < caps[g]:
                quotas[g] += 1
                grown = True
        if not grown:
            break
    return quotas


def _random(members: list[Sample], n_val: int, rng: np.random.Generator) -> list[str]:
    val = set(rng.permutation(len(members))[:n_val].tolist())
    return [VAL if position in val else TRAIN for position in range(len(members))]


def assign_splits(folder: DSFolder, rule: str = "first-k", k: int = 5, val_fraction: float = 0.2,
                  seed: int = 0) -> dict[str, int]:
    """Set every sample's split (train/val) in `folder` via `folder.update`; the caller saves.

    first-k: per (object, defect_type), in natural order of sample names, the first `k` train
    and the rest validate (the paper's and the maintainers' DS-MVTec rule). random: stratified by
    group, round(total * val_fraction) samples validate (see `val_quotas`), drawn with numpy's
    Generator seeded by `seed`. Existing splits are replaced.
    Returns the number of samples per split.
    """
    if rule not in RULES:
        raise InputError(f"split rule {rule!r} is unknown; choose one of {', '.join(RULES)}")
    if rule == "first-k" and k < 1:
        raise InputError(f"k={k}: first-k needs at least one training image per defect type")
    if not 0.0 <= val_fraction <= 1.0:
        raise InputError(f"val_fraction={val_fraction}: must lie between 0 and 1")
    rng = np.random.default_rng(seed)
    samples = list(folder)
    updated = [s.replace(split=TRAIN) for s in samples if s.synthetic]
    groups = list(_groups(s for s in samples if not s.synthetic).values())
    quotas = val_quotas([len(g) for g in groups], val_fraction, rng) if rule == "random" else []
    for index, members in enumerate(groups):
        splits = _first_k(members, k) if rule == "first-k" else _random(members, quotas[index], rng)
        updated.extend(sample.replace(split=split) for sample, split in zip(members, splits))
    folder.update(updated)
    folder.meta["split"] = {"rule": rule, "k": k} if rule == "first-k" else {
        "rule": rule, "val_fraction": val_fraction, "seed": seed}
    counts = Counter(s.split for s in updated)
    return {TRAIN: counts[TRAIN], VAL: counts[VAL]}
