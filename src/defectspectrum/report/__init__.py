"""HTML reports shared by every stage: a small builder (`Report`), the plots it shows, and the report sections
(`report.sections`) that each stage registers and `defectspectrum report` writes."""

from defectspectrum.report.html import Report

__all__ = ["Report"]
