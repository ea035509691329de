"""``SteerConfig``: the knobs of the two activation-steering baselines (Surgical and SCANS), paper A.4 defaults."""

from __future__ import annotations

from dataclasses import dataclass

from dcr.config import StageConfig, check, field

METHODS = ("surgical", "scans")
HARMFUL_SOURCES = ("stl", "hh")


@dataclass(kw_only=True)
class SteerConfig(StageConfig):
    """Configuration of ``dcr steer surgical|scans`` (paper section 6 and appendix A.4)."""

    method: str = field("surgical", help="Steering method: surgical (Wang et al. 2024) or scans (Cao et al. 2025).",
        choices=METHODS)
    n_directions: int = field(64, help="Prompts sampled per set (harmful, harmless, seemingly toxic) for the means.",
        ge=2)
    harmful_source: str = field("stl", help="Harmful prompts: stl (STL refusal-pair instructions) or hh (HH-RLHF "
                                            "harmful first turns).", choices=HARMFUL_SOURCES)
    layer: int | None = field(None, help="Surgical: block whose output gives the directions and receives +w_h r_h; "
                                         "None = the block in the middle half that best separates harmful from "
                                         "harmless along r_h.", ge=0, layer="index")
    w_f: float = field(0.5, help="Surgical: ablation weight of the false-refusal direction (A.4 Qwen2.5-1.5B: 0.5).",
        ge=0, le=1)
    w_h: float = field(0.1, help="Surgical: weight of the added harmful-refusal direction (A.4 Qwen2.5-1.5B: 0.1).",
        ge=0)
    layers: list[int] | None = field(None, help="SCANS: steered blocks; None = the middle blocks "
                                                "[round(0.3 n), round(0.6 n)).", nonempty=True, ge=0, layer="index")
    classify_layers: list[int] | None = field(None, help="SCANS: blocks whose last-prompt-token states classify the "
                                                         "query; None = the steered blocks.", nonempty=True, ge=0,
                                                             layer="index")
    multiplier: float = field(1.0, help="SCANS: steering multiplier on the unit refusal vectors (A.4 Qwen2.5-1.5B: 1).",
        ge=0)
    threshold: float | None = field(None, help="SCANS: harmful if the mean cosine score >= threshold; None = "
                                               "calibrated on the extraction prompts (best balanced accuracy).",
                                                   ge=-1, le=1)
    add_for_harmful: bool = field(True, help="SCANS: add +multiplier*v for queries classified harmful (as the SCANS "
                                             "code does); false leaves them unsteered.")
    xstest_heldout_frac: float = field(0.2, help="Fraction of XSTest safe prompts held out (dcr.data.xstest_split); "
                                                 "only the in-distribution part is used.", ge=0, lt=1)
    split_seed: int = field(0, help="Seed of the XSTest held-out split (shared with refine, align and evaluate).", ge=0)
    batch_size: int = field(16, help="Prompts per forward during extraction.", ge=1)
    max_length: int = field(256, help="Maximum prompt length in tokens during extraction (longer ones keep the end).",
        ge=8)
    export: bool = field(False, help="Surgical: also write OUT/model/ with the ablation baked into the weights.")

    def data_sets(self) -> tuple[str, ...]:
        return ("refusal-pairs" if self.harmful_source == "stl" else "hh-rlhf", "alpaca-instructions", "xstest")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not (self.export and self.method == "scans"),
              "export: true is only possible for surgical; SCANS is conditional on each query and cannot be baked "
              "into weights. Fix: drop --set export=true, or use --method surgical")
