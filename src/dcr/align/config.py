"""``AlignConfig``: the STL / STL-aug safety-alignment SFT stage (paper appendix A.3)."""

from __future__ import annotations

from dataclasses import dataclass

from dcr.config import SAVE_DTYPES, StageConfig, check, field

METHODS = ("stl", "stl-aug")
GENERAL_SOURCES = ("teacher", "alpaca-hub")


@dataclass(kw_only=True)
class AlignConfig(StageConfig):
    """LoRA SFT on general instruction pairs + toxic prompts with safe responses (+ XSTest for STL-aug)."""

    method: str = field("stl", help="stl (general + safety pairs) or stl-aug (adds in-distribution XSTest safe)",
        choices=METHODS)
    # data mix
    n_general: int = field(20000, help="general instruction pairs (paper: 20k Alpaca)", ge=0)
    n_safety: int = field(1000, help="toxic prompts paired with safe responses (paper: 1k)", ge=0)
    n_aug: int | None = field(None, help="STL-aug: XSTest in-distribution safe prompts to add (None = all)", ge=0)
    limit: int | None = field(None, help="cap the total number of training pairs, scaling each part proportionally",
        ge=1)
    exclude_from: str | None = field(None, help="a dcr refine output dir; its split.json toxic_prompts are dropped",
        nonempty=True, path="dir")
    general_file: str | None = field(None, help="JSONL with prompt/response general pairs, instead of the teacher",
        nonempty=True, path="file")
    general_source: str = field("teacher", help="answers of the general pairs: teacher (greedy answers of "
                                "--teacher) or alpaca-hub (tatsu-lab/alpaca's own outputs, as in the paper; "
                                "falls back to the teacher, with a warning, when the hub cannot be reached)",
                                    choices=GENERAL_SOURCES)
    teacher: str = field("self", help="model answering the Alpaca (and STL-aug XSTest) prompts; 'self' = --model",
        nonempty=True)
    teacher_max_new_tokens: int = field(128, help="max new tokens of teacher answers (greedy)", ge=1)
    teacher_batch_size: int = field(64, help="generation batch size of the teacher (length-sorted)", ge=1)
    teacher_cache: str | None = field(None, keyed=False, help="directory of teacher answers shared by align "
                                      "stages (one subdirectory per teacher and generation settings; `dcr run` "
                                      "uses RUN_DIR/teacher-cache); None = OUT/teacher of this stage", nonempty=True,
                                          path="cache-dir")
    xstest_heldout_frac: float = field(0.2, help="fraction of XSTest safe prompts held out (never trained on)",
        ge=0, lt=1)
    split_seed: int = field(0, help="seed of the XSTest in-distribution / held-out split", ge=0)
    # optimisation (A.3)
    epochs: float = field(3.0, help="training epochs (paper: 3 for Qwen2.5-1.5B, 4 for 7B/8B)", gt=0)
    lr: float = field(1e-4, help="peak learning rate (AdamW)", gt=0)
    warmup_ratio: float = field(0.03, help="fraction of steps with linear warmup", ge=0, lt=1)
    micro_batch: int = field(4, help="per-device micro-batch size", ge=1)
    grad_accum: int = field(32, help="gradient accumulation steps (paper: 4 x 32 = 128)", ge=1)
    sampling: str = field("rebalance", legacy="random", help="how examples form micro-batches: rebalance = each "
                          "optimizer step takes a seeded random set of micro_batch x grad_accum x processes "
                          "examples (as a shuffle does) and splits it into micro-batches of similar length, sized "
                          "to balance their cost (transformers' BatchRebalanceSampler; the step's loss and "
                          "gradient are unchanged, padding shrinks); random = the Trainer's shuffled "
                          "micro-batches of micro_batch examples (the only order before this field existed; stages "
                          "trained then keep their keys under it)", choices=("rebalance", "random"))
    max_length: int = field(512, help="max tokens per training example (prompt + response), longer ones truncated",
        ge=8)
    loss_on_prompt: bool = field(False, help="also train on prompt tokens (default: loss on response tokens only)")
    lora_r: int = field(8, help="LoRA rank", ge=1)
    lora_alpha: int = field(32, help="LoRA alpha", gt=0)
    lora_dropout: float = field(0.05, help="LoRA dropout", ge=0, lt=1)
    lora_targets: str = field("all-linear", help="peft target_modules: all-linear (every attention+MLP projection)",
        nonempty=True)
    weight_decay: float = field(0.0, help="AdamW weight decay", ge=0)
    save_every: int = field(50, help="checkpoint every N optimizer steps (for resume)", ge=1)
    log_every: int = field(1, help="log loss / lr every N optimizer steps to train_log.csv", ge=1)
    base_dtype: str = field("auto", help="dtype of the frozen base weights while training: auto = bf16 when "
                                         "training computes in bf16 (no per-step weight casts), fp32 = keep fp32. "
                                         "LoRA adapters and optimizer state stay fp32; the merge uses the fp32 base.",
                                             choices=("auto", "fp32"))
    save_dtype: str = field("auto", help="dtype of the merged OUT/model (the merge itself is done in fp32): auto = "
                                         "the training compute dtype (bf16 on bf16 hardware), fp32 or bf16",
                                             choices=SAVE_DTYPES)
    fused_lora: bool = field(True, legacy=False, help=(
        "cheaper LoRA SFT passes, the same function up to float rounding (so not bit-identical to false): each "
        "LoRA linear scales its rank-r activations and adds their lora_B product into the base output in place "
        "(dcr.align.fused), and the SFT loss takes the frozen LM head's gradient in the forward "
        "(dcr.chunked, frozen=True) instead of recomputing its logits; false = peft's forward and a recomputed "
        "head"))
    gradient_checkpointing: bool = field(False, help="recompute block activations in the backward pass instead of "
                                                     "storing them (less memory, about 1.3x the compute)")
    # tracking (A.5)
    track_every: int = field(10, help="track refusal every N optimizer steps (also at step 0 and at the end); 0 = off",
        ge=0)
    track_n: int = field(32, help="prompts per probe group", ge=1)
    track_toxic: str = field("advbench", help="benchmark of held-out harmful probe prompts", nonempty=True)
    track_normal: str = field("i-alpaca", help="benchmark of normal probe prompts", nonempty=True)
    track_max_new_tokens: int = field(32, help="greedy tokens generated for the keyword refusal rate", ge=1)
    track_batch_size: int = field(32, help="generation batch size of tracking (all probe groups batched together)",
        ge=1)
    track_prefix_cache: bool = field(True, help="share the prompt's KV cache across the refusal phrases (faster)")
    judge: str = field("keyword", help="judge spec for the tracked refusal rate (dcr.judges.get_judge)", nonempty=True)

    def __post_init__(self) -> None:
        super().__post_init__()  # every field's type and declared range / choices (dcr.validate)
        check(self.device != "shard", "device shard is for inference (evaluate, probe, judges). Fix: train on one "
                                       "device, or data-parallel under torchrun (docs/scale.md)")
        check(self.n_general + self.n_safety > 0, "n_general + n_safety must be > 0. Fix: set one of them")
        check(self.general_file is None or self.general_source == "teacher",
              "general_file and general_source alpaca-hub both name the general pairs. Fix: keep one of them")

    def check_inputs(self) -> None:
        from dcr.align.data import excluded_toxic, general_from_file
        from dcr.models import resolve_model

        super().check_inputs()
        if self.teacher != "self":
            resolve_model(self.teacher)
        excluded_toxic(self.exclude_from)  # split.json read and checked
        if self.general_file is not None:  # a readable file: validate_paths, in super().check_inputs()
            general_from_file(self.general_file, 0, self.seed)  # every row, before any weights load

    def data_sets(self) -> tuple[str, ...]:
        tracking = [self.track_toxic, self.track_normal] if self.track_every else []
        return ("refusal-pairs", "alpaca-instructions", "alpaca-eval-gpt4", "xstest",
                *(s for s in tracking if not s.startswith("hf:")))

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum
