"""Generator presets: the UNet sizes of Defect-Gen, as YAML files in `configs/gen/` (or your own).

```python
preset = load_preset("small")                  # configs/gen/small.yaml
preset = load_preset(Path("my_unet.yaml"))     # a file of one's own
preset = preset.scaled(width=32, layers=1)     # narrower and shallower, e.g. for a CPU
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from defectspectrum.config_file import StrictModel, config_error, load_config
from defectspectrum.errors import InputError

PRESET_NAMES = ("large", "medium", "small")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "gen"  # shipped in the package (configs/ in the repo)

Positive = Annotated[int, Field(ge=1, strict=True)]


class Preset(StrictModel):
    """One UNet size: widths per level, depth, where attention runs and how features are normalised."""

    base_channels: Positive
    channel_mult: tuple[Positive, ...]
    layers_per_block: Positive = 2
    attention_levels: tuple[int, ...] = ()
    mid_block: bool = True
    mid_attention: bool = False
    norm: Literal["group", "local"] = "group"
    norm_groups: Positive = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Preset:
        if not 1 <= len(self.channel_mult) <= 8:
            raise config_error("give 1 to 8 levels (channel multipliers)", "channel_mult")
        bad = [level for level in self.attention_levels if not 0 <= level < len(self.channel_mult)]
        if bad:
            raise config_error(f"level {bad[0]} does not exist: levels are 0 to {len(self.channel_mult) - 1}",
                               "attention_levels")
        if self.norm == "local" and (self.attention_levels or self.mid_attention):
            raise config_error("a local model cannot use attention (it sees the whole image); drop attention_levels "
                               "and mid_attention, or use norm: group", "norm")
        if self.mid_attention and not self.mid_block:
            raise config_error("mid_attention needs mid_block: true", "mid_attention")
        return self

    @property
    def downsamplings(self) -> int:
        return len(self.channel_mult) - 1

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    def scaled(self, width: int | None = None, layers: int | None = None) -> Preset:
        """This preset with `base_channels` = `width` and/or `layers_per_block` = `layers`."""
        changes = {key: value for key, value in (("base_channels", width), ("layers_per_block", layers))
                   if value is not None}
        for key, value in changes.items():
            if value < 1:
                raise InputError(f"{key} {value}: use at least 1")
        return self.model_copy(update=changes)


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name (`large`, `medium`, `small`: configs/gen/<name>.yaml) or from a YAML file."""
    if isinstance(name_or_path, str) and name_or_path in PRESET_NAMES:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise InputError(f"preset {name_or_path!r}: {path} is missing; reinstall, or give a preset file")
        return load_config(path, Preset)
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise InputError(f"preset {name_or_path!r}: choose {', '.join(PRESET_NAMES)} or give a YAML file")
    return load_config(path, Preset)
