"""Defect-Gen foundations: presets, UNets, measured receptive fields, pair encoding, x0/eps
conversions, the loss, and the two-stage sampler's one trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from defectspectrum.errors import InputError  # noqa: E402
from defectspectrum.gen.diffusion import (  # noqa: E402
    DiffusionConfig,
    decode_pair,
    diffusion_loss,
    encode_pair,
    epsilon_from_x0,
    make_scheduler,
    x0_from_epsilon,
)
from defectspectrum.gen.presets import load_preset  # noqa: E402
from defectspectrum.gen.receptive_field import effective_receptive_field  # noqa: E402
from defectspectrum.gen.sampler import two_stage_sample  # noqa: E402
from defectspectrum.gen.unet import build_unet  # noqa: E402


def tiny(name: str, norm: str = "group"):
    preset = load_preset(name).scaled(width=8, layers=1)
    return preset.model_copy(update={"norm": norm}) if norm != preset.norm else preset


def test_presets_follow_the_paper() -> None:
    large, medium, small = (load_preset(name) for name in ("large", "medium", "small"))
    assert (large.downsamplings, medium.downsamplings, small.downsamplings) == (5, 3, 2)
    assert large.attention_levels and large.mid_attention
    assert not small.attention_levels and not small.mid_attention and not medium.attention_levels
    assert large.channels == (128, 128, 256, 256, 512, 512) and small.channels == (128, 128, 256)


def test_preset_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("base_channels: 32\nchannel_mult: [1, 2]\nnorm: local\nattention_levels: [1]\n")
    with pytest.raises(InputError, match=r"mine.yaml:3: norm: a local model cannot use attention"):
        load_preset(path)
    path.write_text("base_channels: 32\nchannel_mult: [1, 2]\nattention_levels: [2]\n")
    with pytest.raises(InputError, match="level 2 does not exist"):
        load_preset(path)
    with pytest.raises(InputError, match="choose large, medium, small"):
        load_preset("huge")


@pytest.mark.parametrize("name", ["large", "medium", "small"])
def test_unets_keep_channels_and_any_size(name: str) -> None:
    model = build_unet(tiny(name), channels=3 + 4)
    out = model(torch.randn(2, 7, 64, 96), torch.tensor([3, 900])).sample
    assert out.shape == (2, 7, 64, 96)


@pytest.mark.parametrize("seed", [0, 1])
def test_receptive_fields_grow_small_medium_large(seed: int) -> None:
    # small and medium truly local (with GroupNorm every model's statistics span the image, which blurs
    # the difference: see the next test); large as it is, with attention
    torch.manual_seed(seed)
    fields = [effective_receptive_field(build_unet(preset, 6), 6, size=128)
              for preset in (tiny("small", "local"), tiny("medium", "local"), tiny("large"))]
    radii = [field.radius for field in fields]
    assert radii[0] < radii[1] < radii[2], radii
    assert fields[0].extent < fields[1].extent or not fields[0].covers_image
    assert fields[2].covers_image


def test_groupnorm_sees_the_whole_image_and_local_norm_does_not() -> None:
    torch.manual_seed(0)
    grouped = effective_receptive_field(build_unet(tiny("small"), 6), 6, size=128)
    local = effective_receptive_field(build_unet(tiny("small", "local"), 6), 6, size=128)
    assert grouped.covers_image and not local.covers_image
    assert local.gradient[0, 0] == 0.0 and grouped.gradient[0, 0] > 0.0
    assert local.radius < grouped.radius


def test_pairs_encode_and_decode() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (8, 10)).astype(np.uint8)
    sample = encode_pair(image, mask, 4)
    assert sample.shape == (7, 8, 10) and sample.min() >= -1 and sample.max() <= 1
    assert set(sample[3:].unique().tolist()) == {-1.0, 1.0}
    back_image, back_mask = decode_pair(sample)
    assert np.array_equal(back_image, image) and np.array_equal(back_mask, mask)
    with pytest.raises(InputError, match="outside the 3 classes"):
        encode_pair(image, mask, 3)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_x0_and_epsilon_conversions_agree_with_the_scheduler(schedule: str) -> None:
    scheduler = make_scheduler(DiffusionConfig(schedule=schedule))
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 5, 8, 8, generator=generator), torch.randn(3, 5, 8, 8, generator=generator)
    early, late = torch.tensor([0, 300, 700]), torch.tensor([300, 700, 999])  # each well conditioned there
    assert torch.allclose(x0_from_epsilon(scheduler, scheduler.add_noise(x0, noise, early), noise, early), x0,
                          atol=1e-3)
    assert torch.allclose(epsilon_from_x0(scheduler, scheduler.add_noise(x0, noise, late), x0, late), noise,
                          atol=1e-3)
    # the scheduler's own x0 from an epsilon prediction agrees with ours
    from diffusers import DDPMScheduler

    base = make_scheduler(DiffusionConfig(schedule=schedule, prediction="epsilon"))
    eps_scheduler = DDPMScheduler.from_config(base.config, clip_sample=False)
    eps_scheduler.set_timesteps(1000)
    noisy = eps_scheduler.add_noise(x0[:1], noise[:1], torch.tensor([400]))
    theirs = eps_scheduler.step(noise[:1], 400, noisy).pred_original_sample
    assert torch.allclose(x0_from_epsilon(eps_scheduler, noisy, noise[:1], torch.tensor([400])), theirs, atol=1e-5)
    expected = {"cosine": "squaredcos_cap_v2", "linear": "linear"}[schedule]
    assert scheduler.config.beta_schedule == expected and scheduler.config.prediction_type == "sample"


def test_the_loss_targets_x0_or_epsilon_and_adds_mask_cross_entropy() -> None:
    @dataclass
    class Out:
        sample: torch.Tensor

    x0 = encode_pair(np.zeros((4, 4, 3), np.uint8), np.eye(4, dtype=np.uint8), 2)[None].repeat(2, 1, 1, 1)
    perfect = lambda x, t: Out(x0.clone())  # noqa: E731 - predicts the clean sample exactly
    config = DiffusionConfig(prediction="x0")
    assert diffusion_loss(perfect, x0, make_scheduler(config), config).item() == 0.0
    with_ce = DiffusionConfig(prediction="x0", mask_ce_weight=0.5)
    assert diffusion_loss(perfect, x0, make_scheduler(with_ce), with_ce).item() > 0.0  # CE of +-1 logits
    eps = DiffusionConfig(prediction="epsilon")
    assert diffusion_loss(perfect, x0, make_scheduler(eps), eps).item() > 0.5  # x0 is not the noise


class Recorder(torch.nn.Module):
    """A stub denoiser that records (name, t, input) and predicts a fixed shrink of its input."""

    def __init__(self, name: str, calls: list) -> None:
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, x, t):
        self.calls.append((self.name, int(t), x.clone()))

        @dataclass
        class Out:
            sample: torch.Tensor

        return Out(0.5 * x)


def test_two_stage_sampler_is_one_trajectory() -> None:
    calls: list = []
    config = DiffusionConfig(train_steps=100)
    seen: list = []
    out = two_stage_sample(Recorder("large", calls), Recorder("small", calls), make_scheduler(config, "ddim"),
                           (1, 4, 6, 6), switch=40, generator=torch.Generator().manual_seed(0),
                           on_step=lambda t, name: seen.append((t, name)))
    names = [(name, t) for name, t, _ in calls]
    assert [t for _, t in names] == list(range(99, -1, -1))
    assert all(name == ("large" if t >= 40 else "small") for name, t in names)
    assert seen == [(t, name) for name, t in names]
    # the small model continues the large model's sample (no restart from noise or from a clean image):
    # its first input is the (deterministic DDIM) step from the large model's last one
    check = make_scheduler(config, "ddim")
    check.set_timesteps(100)
    last_large = next(x for name, t, x in calls if t == 40)
    first_small = next(x for name, t, x in calls if t == 39)
    assert torch.equal(check.step(0.5 * last_large, 40, last_large).prev_sample, first_small)
    assert out.shape == (1, 4, 6, 6)


def test_the_sampler_needs_the_model_of_each_stage() -> None:
    scheduler = make_scheduler(DiffusionConfig(train_steps=10))
    with pytest.raises(InputError, match="needs the small model"):
        two_stage_sample(Recorder("large", []), None, scheduler, (1, 4, 4, 4), switch=5)
    calls: list = []
    two_stage_sample(Recorder("large", calls), None, scheduler, (1, 4, 4, 4), switch=0)
    assert {name for name, _, _ in calls} == {"large"}
    with pytest.raises(InputError, match="switch step 11"):
        two_stage_sample(None, Recorder("small", []), scheduler, (1, 4, 4, 4), switch=11)


def test_large_only_sampling_equals_diffusers_ddpm_pipeline() -> None:
    from diffusers import DDPMPipeline

    torch.manual_seed(0)
    unet = build_unet(tiny("small"), channels=3, sample_size=16).eval()
    config = DiffusionConfig(train_steps=20)
    ours = two_stage_sample(unet, None, make_scheduler(config), (2, 3, 16, 16), switch=0,
                            generator=torch.Generator().manual_seed(7))
    pipe = DDPMPipeline(unet=unet, scheduler=make_scheduler(config))
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(7), num_inference_steps=20,
                  output_type="np").images
    assert np.allclose((ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy(), theirs, atol=1e-5)


def test_inpainting_keeps_the_known_area_exactly() -> None:
    torch.manual_seed(0)
    unet = build_unet(tiny("small"), channels=5, sample_size=16).eval()
    known = torch.rand(2, 5, 16, 16) * 2 - 1
    keep = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    keep[:, :, 4:10, 5:12] = False  # the hole to generate
    inputs: list = []

    class Spy(torch.nn.Module):
        def forward(self, x, t):
            inputs.append((int(t), x.clone()))
            return unet(x, t)

    config = DiffusionConfig(train_steps=20)
    out = two_stage_sample(Spy(), None, make_scheduler(config), (2, 5, 16, 16), switch=0,
                           generator=torch.Generator().manual_seed(1), known=known, keep=keep.expand(2, 5, 16, 16))
    kept = keep.expand(2, 5, 16, 16)
    assert torch.equal(out[kept], known[kept])
    assert not torch.allclose(out[~kept], known[~kept], atol=1e-2)
    # before the last step the model saw the known area forward-noised to t = 0: sqrt(a) known + sqrt(1 - a) noise
    last_t, last_input = inputs[-1]
    alpha = make_scheduler(config).alphas_cumprod[0]
    residual = (last_input[kept] - alpha.sqrt() * known[kept]) / (1 - alpha).sqrt()
    assert last_t == 0 and abs(float(residual.std()) - 1.0) < 0.1 and abs(float(residual.mean())) < 0.1
    with pytest.raises(InputError, match="needs both"):
        two_stage_sample(unet, None, make_scheduler(config), (1, 5, 16, 16), switch=0, known=known[:1])
