"""DCR stage 1: contrastive refinement with Circle Loss at an intermediate layer (``dcr refine``)."""

from dcr.refine.config import RefineConfig
from dcr.refine.loss import circle_loss
from dcr.refine.stage import refine

__all__ = ["RefineConfig", "circle_loss", "refine"]
