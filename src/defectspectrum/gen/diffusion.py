"""The diffusion of Defect-Gen: pair encoding, noise schedules (diffusers' schedulers), the training
target (x0, as the paper, or epsilon) and the loss (MSE plus optional cross-entropy on the mask).

A sample is the image in [-1, 1] (3 channels) followed by the one-hot mask (one channel per class,
background included) scaled to [-1, 1]; `encode_pair` / `decode_pair` convert, the mask decoded
by argmax over its channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from defectspectrum.errors import InputError

SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
PREDICTIONS = {"x0": "sample", "epsilon": "epsilon"}


@dataclass(frozen=True)
class DiffusionConfig:
    """Schedule (`cosine` default, or `linear`), what the model predicts (`x0` default, as in the paper,
    or `epsilon`), training steps, and the weight of the cross-entropy on the mask channels."""

    schedule: Literal["cosine", "linear"] = "cosine"
    prediction: Literal["x0", "epsilon"] = "x0"
    train_steps: int = 1000
    mask_ce_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule {self.schedule!r}: choose {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise InputError(f"prediction {self.prediction!r}: choose {', '.join(PREDICTIONS)}")
        if not 2 <= self.train_steps <= 100_000:
            raise InputError(f"train steps {self.train_steps}: use 2 to 100000 (the paper: 1000)")
        if not self.mask_ce_weight >= 0:
            raise InputError(f"mask cross-entropy weight {self.mask_ce_weight}: must be >= 0")


def make_scheduler(config: DiffusionConfig, kind: str = "ddpm") -> Any:
    """A fresh diffusers scheduler (`ddpm` or `ddim`) for `config`; samples are clipped to [-1, 1]."""
    from diffusers import DDIMScheduler, DDPMScheduler

    settings = {"num_train_timesteps": config.train_steps, "beta_schedule": SCHEDULES[config.schedule],
                "prediction_type": PREDICTIONS[config.prediction], "clip_sample": True, "clip_sample_range": 1.0}
    if kind == "ddpm":
        return DDPMScheduler(**settings)
    if kind == "ddim":
        return DDIMScheduler(**settings)
    raise InputError(f"sampler {kind!r}: choose ddpm or ddim")


def encode_pair(image: np.ndarray, mask: np.ndarray, num_classes: int) -> torch.Tensor:
    """(H, W, 3) uint8 image and (H, W) class-index mask -> (3 + num_classes, H, W) float32 in [-1, 1]."""
    if image.ndim != 3 or image.shape[2] != 3 or mask.shape != image.shape[:2]:
        raise InputError(f"encode_pair: image {image.shape} and mask {mask.shape} must be (H, W, 3) and (H, W)")
    if int(mask.max(initial=0)) >= num_classes:
        raise InputError(f"encode_pair: mask index {int(mask.max())} is outside the {num_classes} classes")
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0
    onehot = F.one_hot(torch.from_numpy(mask.astype(np.int64)), num_classes).permute(2, 0, 1).float() * 2.0 - 1.0
    return torch.cat([pixels, onehot], dim=0)


def decode_image(sample: torch.Tensor) -> np.ndarray:
    """(3 + C, H, W) sample -> its (H, W, 3) uint8 image."""
    return ((sample[:3].clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def decode_pair(sample: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(3 + C, H, W) sample -> (H, W, 3) uint8 image and (H, W) uint8 mask (argmax over the mask channels)."""
    return decode_image(sample), sample[3:].argmax(dim=0).to(torch.uint8).cpu().numpy()


def x0_from_epsilon(scheduler: Any, noisy: torch.Tensor, epsilon: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), a_t the cumulative alpha of each sample's timestep."""
    alpha = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[t].view(-1, 1, 1, 1)
    return (noisy - (1 - alpha).sqrt() * epsilon) / alpha.sqrt()


def epsilon_from_x0(scheduler: Any, noisy: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(a_t) x0) / sqrt(1 - a_t)."""
    alpha = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[t].view(-1, 1, 1, 1)
    return (noisy - alpha.sqrt() * x0) / (1 - alpha).sqrt()


def diffusion_loss(model: Any, x0: torch.Tensor, scheduler: Any, config: DiffusionConfig,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """One training loss on a batch of clean samples `x0`: a random timestep and noise per sample,
    MSE between the model's output and its target (x0 or the noise), plus `mask_ce_weight` x the
    cross-entropy of the predicted x0's mask channels (as logits) against the true classes."""
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)  # drawn on the CPU: the
    t = torch.randint(0, config.train_steps, (x0.shape[0],), generator=generator).to(x0.device)  # same on any device
    noisy = scheduler.add_noise(x0, noise, t)
    out = model(noisy, t).sample
    target = x0 if config.prediction == "x0" else noise
    loss = F.mse_loss(out.float(), target.float())
    if config.mask_ce_weight > 0:
        predicted = out if config.prediction == "x0" else x0_from_epsilon(scheduler, noisy, out, t)
        loss = loss + config.mask_ce_weight * F.cross_entropy(predicted[:, 3:].float(), x0[:, 3:].argmax(dim=1))
    return loss
