"""Activation-steering baselines: Surgical (Wang et al. 2024) and SCANS (Cao et al. 2025); ``dcr steer``."""

from dcr.steer.artifact import load_steerer
from dcr.steer.config import SteerConfig
from dcr.steer.scans import ScansSteerer
from dcr.steer.stage import steer
from dcr.steer.surgical import SurgicalSteerer

__all__ = ["ScansSteerer", "SteerConfig", "SurgicalSteerer", "load_steerer", "steer"]
