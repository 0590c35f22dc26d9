"""Shared pieces of the Defect-Click model tests: a tiny ClickNet config and the seg tests' procedural folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seg"))

from seg_helpers import split_synth

from defectspectrum.click.model import ClickModelConfig

TINY = ClickModelConfig("tu-mobilenetv3_small_050", width=0.125)  # ~0.33M parameters
TINY_ARGS = ["--encoder", "tu-mobilenetv3_small_050", "--width", "0.125"]

__all__ = ["TINY", "TINY_ARGS", "split_synth"]
