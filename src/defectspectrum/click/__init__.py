"""Defect-Click (the paper's section 3.5): interactive segmentation of defects from positive and
negative clicks, and its automatic evaluation by the field's NoC protocol (RITM / FocalClick).

- `clicks`: a click, its disk maps (a model's extra input channels) and its text form `x,y,+`.
- `objects`: how a DS mask becomes the instances that are clicked on, one at a time.
- `simulator`: the simulated user, who clicks the centre of the largest error.
- `noc`: the evaluation loop and its metrics (NoC@85/90, NoF@85/90, IoU@k).
- `baselines`: GrabCut and random walker, driven by the same clicks.
- `plots`: mean IoU against clicks, a line per model.
- `model`: ClickNet (smp UNet on image + click disks + previous mask) and its config.
- `focus`: FocalClick's focus crop rule and merge; `predictor`: the model as a `Segmenter`.
- `session`: `ClickSession` (add_click / undo / reset), the annotation app's API.
- `train`: training with multi-level crops and clicks simulated from the model's own errors.
- `cli`: `defectspectrum click ...`.

The model-free modules import no torch; `model`, `focus`'s users, `predictor`, `session` and `train` do.
"""
