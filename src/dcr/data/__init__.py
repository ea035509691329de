"""Benchmark and training data: a registry over a local data directory, with validated loaders."""

from dcr.data.records import Pair, PromptRecord
from dcr.data.registry import (
    BENCHMARKS,
    OVER_REFUSAL_SETS,
    SAFETY_SETS,
    BenchmarkMissing,
    BenchmarkSpec,
    data_dir,
    hub_dataset,
    load_benchmark,
    load_hub,
    subsample,
)
from dcr.data.training import (
    ALPACA_HUB,
    load_alpaca_eval,
    load_alpaca_hub,
    load_alpaca_instructions,
    load_hh_harmful,
    load_refusal_pairs,
    xstest_split,
)

__all__ = [
    "ALPACA_HUB", "BENCHMARKS", "OVER_REFUSAL_SETS", "SAFETY_SETS", "BenchmarkMissing", "BenchmarkSpec", "Pair",
    "PromptRecord", "data_dir", "hub_dataset", "load_alpaca_eval", "load_alpaca_hub", "load_alpaca_instructions",
    "load_benchmark", "load_hh_harmful", "load_hub", "load_refusal_pairs", "subsample", "xstest_split",
]
