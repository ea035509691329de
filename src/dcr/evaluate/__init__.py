"""Evaluation suite (``dcr evaluate``): over-refusal, safety, general ability, refusal probability, quality."""

from dcr.evaluate.config import EvaluateConfig
from dcr.evaluate.refusal_prob import refusal_prob
from dcr.evaluate.stage import evaluate
from dcr.evaluate.suite import expand_benchmarks

__all__ = ["EvaluateConfig", "evaluate", "expand_benchmarks", "refusal_prob"]
