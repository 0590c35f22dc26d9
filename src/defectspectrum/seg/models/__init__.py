"""The segmentation model zoo: `create_model(name, num_classes)`, `model_names()`."""

from defectspectrum.seg.models.registry import ModelInfo, create_model, model_info, model_names, register_model

__all__ = ["ModelInfo", "create_model", "model_info", "model_names", "register_model"]
