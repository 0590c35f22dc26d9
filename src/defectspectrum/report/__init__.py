"""HTML reports shared by every stage: a small builder (`Report`) and the plots it shows."""

from defectspectrum.report.html import Report

__all__ = ["Report"]
