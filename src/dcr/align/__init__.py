"""STL / STL-aug safety-alignment LoRA SFT with refusal tracking (``dcr align``)."""

from dcr.align.config import AlignConfig
from dcr.align.stage import align

__all__ = ["AlignConfig", "align"]
