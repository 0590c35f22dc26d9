"""The built-in models; importing this module registers them (`registry.model_names()` does)."""

from defectspectrum.seg.models import bisenet, mask2former, segmenter, smp_models  # noqa: F401
