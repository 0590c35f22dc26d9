"""Defect-Gen: two-stage few-shot diffusion over image + one-hot mask (the paper's section 3.4).

`presets` (the UNet sizes, `configs/gen/`), `unet` (building them on diffusers' UNet2DModel, with
a truly local normalisation option), `receptive_field` (measured, not assumed), `diffusion`
(schedules, x0/eps targets and the loss) and `sampler` (one trajectory: the large model for
t >= u, the small one after).
"""
