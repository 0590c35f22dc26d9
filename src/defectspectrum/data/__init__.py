"""Data: the DS folder, source readers and writers, and the tools that work on them."""

from defectspectrum.data.classes import BACKGROUND, ClassMap, GlobalClass
from defectspectrum.data.dsfolder import DSFolder
from defectspectrum.data.sample import Sample

__all__ = ["BACKGROUND", "ClassMap", "DSFolder", "GlobalClass", "Sample"]
