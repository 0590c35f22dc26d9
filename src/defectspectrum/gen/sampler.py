"""The two-stage sampler: ONE reverse trajectory, the large model for timesteps t >= switch and the
small model for t < switch (the paper's section 3.4.2).

(The official code runs the large model over the whole trajectory and then restarts the small model
from the clean result; here the small model continues the same noisy sample.)

```python
scheduler = make_scheduler(DiffusionConfig(), "ddpm")
x = two_stage_sample(large, small, scheduler, (4, 8, 64, 64), switch=50, generator=g)
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from defectspectrum.errors import InputError


def two_stage_sample(large: Any, small: Any, scheduler: Any, shape: tuple[int, ...], switch: int,
                     generator: torch.Generator | list[torch.Generator] | None = None, steps: int | None = None,
                     device: str | torch.device = "cpu",
                     on_step: Callable[[int, str], None] | None = None, known: torch.Tensor | None = None,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """Sample a batch of `shape` (N, 3 + C, H, W): start from Gaussian noise (drawn as diffusers'
    pipelines draw it), then for each of the scheduler's timesteps t (`steps` of them, default every
    training step) let `large` (t >= switch) or `small` (t < switch) predict and step the scheduler.
    Either model may be None where its stage is empty (switch 0: large only; switch > T: small only).
    `generator` may be a list, one per sample: each sample then depends on its own generator only.
    `on_step(t, "large" | "small")` is called before each model call."""
    from diffusers.utils.torch_utils import randn_tensor

    total = scheduler.config.num_train_timesteps
    if not 0 <= switch <= total:
        raise InputError(f"switch step {switch}: use 0 (large model only) to {total} (small model only)")
    if steps is not None and not 1 <= steps <= total:
        raise InputError(f"--steps {steps}: use 1 to {total} sampling steps (the training steps)")
    scheduler.set_timesteps(steps or total, device=device)
    stages = {"large": large, "small": small}
    needed = {("large" if int(t) >= switch else "small") for t in scheduler.timesteps}
    missing = [name for name in sorted(needed) if stages[name] is None]
    if missing:
        raise InputError(f"switch step {switch} needs the {missing[0]} model; give it, or a switch step that "
                         "leaves its stage empty")
    if (known is None) != (keep is None):
        raise InputError("inpainting needs both the known samples and where to keep them")
    x = randn_tensor(shape, generator=generator, device=torch.device(device))
    timesteps = list(scheduler.timesteps)
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            name = "large" if int(t) >= switch else "small"
            if on_step is not None:
                on_step(int(t), name)
            out = stages[name](x, t).sample
            x = scheduler.step(out, t, x, generator=generator).prev_sample
            if known is not None and keep is not None:
                if i + 1 < len(timesteps):
                    noise = randn_tensor(shape, generator=generator, device=torch.device(device))
                    level = timesteps[i + 1].reshape(1).repeat(shape[0]).to(known.device)
                    x = torch.where(keep, scheduler.add_noise(known, noise, level), x)
                else:
                    x = torch.where(keep, known, x)
    return x
