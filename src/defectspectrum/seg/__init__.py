"""Segmentation benchmark: the paper's eight lightweight models, mmseg-exact mIoU, training,
tiled prediction into DS folders, benchmark tables and the synthetic-data study.

Needs the `seg` extra (`pip install defectspectrum[seg]`): torch, torchvision,
segmentation-models-pytorch, timm, transformers, accelerate, onnx, onnxruntime. Nothing here
is imported by `defectspectrum data ...`; import the modules you need (`seg.models`,
`seg.dataset`, `seg.metrics`, ...).
"""
