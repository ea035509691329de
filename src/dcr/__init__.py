"""dcr: Discernment via Contrastive Refinement (ICLR 2026) and the evaluation around it."""

__version__ = "0.1.0"
