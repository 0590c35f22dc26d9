"""defectspectrum: industrial defect inspection data, generation, segmentation and quality control."""

from defectspectrum.errors import DefectSpectrumError

__version__ = "0.1.0"

__all__ = ["DefectSpectrumError", "__version__"]
