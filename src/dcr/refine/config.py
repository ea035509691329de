"""``RefineConfig``: every knob of the DCR contrastive refinement stage, with the paper's A.2 defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dcr.config import SAVE_DTYPES, StageConfig, check, field
from dcr.refine.loss import VARIANTS

POOLINGS = ("last", "mean")
TIED = ("freeze", "untie")
EVAL_TOXIC = ("hh", "xstest-unsafe", "both")
FROZEN_DTYPES = ("auto", "fp32", "bf16")
RETENTION_ACTIONS = ("fail", "warn")
CENTERS = ("none", "base")
BALANCES = ("class", "class-and-source")
MAX_ANSWER_DROP = 0.25  # retention_max_answer_drop's default, also read for summaries written before it existed


@dataclass(kw_only=True)
class RefineConfig(StageConfig):
    """Configuration of ``dcr refine`` (paper appendix A.2 defaults).

    ``dtype`` auto/bf16 trains under bf16 autocast over fp32 weights; there is no fp16 path.
    """

    dtypes: ClassVar[tuple[str, ...]] = ("auto", "bf16", "bfloat16", "fp32", "float32")

    layer: int | None = field(None, help="Target layer l = output of decoder block l (0-based). None = the layer "
                                         "dcr measured for an embedded model (smollm2-135m: 22, "
                                         "results/ablations-smollm2), else the middle block, layers // 2 (the "
                                         "paper's rule; pass it explicitly to get it on smollm2-135m: 15).", ge=0,
                                             layer="index")
    pooling: str = field("last", help="Feature pooling over the prompt: last (last prompt token) or mean.",
        choices=POOLINGS)
    center: str = field(
        "none", legacy="none", help=(
        "What Circle Loss compares: none = the pooled layer-l features, normalised (the paper's wording); base = "
        "those features minus a fixed vector, the base model's mean feature over the training prompts (the mean "
        "of the two class means, taken once before training), then normalised. A few massive dimensions make "
        "up most of every raw feature, so raw cosines between any two prompts are 0.90-0.99 and the margin can "
        "only be met by erasing them, which the frozen tail needs to write (docs/refine.md)."
        ), choices=CENTERS)
    circle_variant: str = field("paper", help="Circle weights: paper (eq. 5, A.8) or original (Sun et al. 2020).",
        choices=VARIANTS)
    margin: float = field(0.25, help="Circle loss margin m (A.2: 0.25).", gt=0, lt=1)
    gamma: float = field(16.0, help="Circle loss scale gamma (A.2: 16).", gt=0)
    nll_weight: float = field(0.001, help="Weight lambda of the NLL regulariser on the prompts (A.2: 0.001); 0 = off.",
        ge=0)
    anchor_weight: float = field(
        0.0, legacy=0.0, help=(
        "Weight of a response-side regulariser: the mean per-token NLL of the base model's own greedy answers to "
        "anchor_n seeded Alpaca instructions, anchor_batch of them added at every step (dcr.refine.anchor); "
        "0 = off (the paper has only the prompt NLL)."
        ), ge=0)
    anchor_n: int = field(64, legacy=64, help="Alpaca instructions the base model answers for the anchor term.", ge=1)
    anchor_batch: int = field(8, legacy=8, help="Anchor pairs per step.", ge=1)
    anchor_max_new_tokens: int = field(64, legacy=64, help="Greedy tokens per anchor answer.", ge=1)
    batch_size: int = field(32, help="Prompts per batch, both classes in every batch (A.2: 32).", ge=4)
    lr: float | None = field(None, help=(
        "AdamW learning rate. None = 1e-5 for full-parameter refine, 1e-4 with lora (A.2's value). A.2's 1e-4 "
        "on the full blocks made Qwen2.5-Coder-0.5B stop writing; 1e-5 kept it writing and reached a lower "
        "Circle Loss (results/refine-collapse)."), gt=0)
    epochs: int = field(3, help="Training epochs (A.2: 3 for Qwen2.5-1.5B and Llama-3-8B).", ge=1)
    weight_decay: float = field(0.0, help="AdamW weight decay.", ge=0)
    max_grad_norm: float = field(1.0, help="Gradient clipping norm; 0 = no clipping.", ge=0)
    warmup_steps: int = field(0, help="Linear learning-rate warm-up steps (then constant).", ge=0)
    seemingly_frac: float = field(0.5, help="Fraction of each batch drawn from the seemingly toxic class.", gt=0, lt=1)
    seemingly_sources: list[str] | None = field(
        None, legacy=None, help=(
        "Prompt sources of the seemingly toxic class, each NAME or NAME:COUNT (a seeded sample): xstest-safe "
        "(in-distribution split), coconot-pref, physical-safe (dcr.refine.sources). None = the paper's: XSTest "
        "safe, sized by limit. Set it with toxic_sources; limit and toxic_ratio then do not apply."
        ), nonempty=True)
    toxic_sources: list[str] | None = field(
        None, legacy=None, help=(
        "Prompt sources of the toxic class, NAME or NAME:COUNT: hh-rlhf, xstest-unsafe (in-distribution split), "
        "coconot-original, physical-unsafe. None = the paper's: HH-RLHF, toxic_ratio x the seemingly prompts. "
        "Prompts found in an evaluation benchmark other than the source's own are dropped and logged."
        ), nonempty=True)
    balance: str = field(
        "class", legacy="class", help=(
        "Batch composition: class (each class a fixed share of every batch, the paper's) or class-and-source "
        "(also each source of each class a fixed share, in proportion to its size, so within a batch the "
        "source cannot predict the class)."
        ), choices=BALANCES)
    toxic_ratio: float = field(2.0, help="Toxic prompts per seemingly toxic training prompt (paper 500:250 = 2).", gt=0)
    limit: int | None = field(None, help="Cap on training prompts per class (None = all).", ge=2)
    xstest_heldout_frac: float = field(0.2, help="Fraction of XSTest safe prompts held out (dcr.data.xstest_split); "
                                                 "0 = train on all 250 (the paper) and skip the held-out metrics.",
                                                     ge=0, lt=1)
    split_seed: int = field(0, help="Seed of the XSTest held-out split (shared with align and evaluate).", ge=0)
    eval_toxic: str = field("hh", help="Held-out toxic prompts for metrics: hh (unused HH-RLHF), xstest-unsafe, both.",
        choices=EVAL_TOXIC)
    lora: bool = field(False, help="Train LoRA adapters on layers <= l (merged before saving) instead of full weights.")
    lora_r: int = field(16, help="LoRA rank.", ge=1)
    lora_alpha: int = field(32, help="LoRA alpha.", ge=1)
    lora_dropout: float = field(0.0, help="LoRA dropout.", ge=0, lt=1)
    tied_embeddings: str = field("freeze", help="If embeddings are tied to the LM head: freeze them, or untie "
                                                "(train a copy; the LM head keeps the original weights).", choices=TIED)
    max_length: int = field(256, help="Maximum prompt length in tokens (longer prompts keep their end).", ge=8)
    eval_batch_size: int = field(32, help="Batch size for feature extraction in the metrics.", ge=1)
    truncate_forward: bool = field(True, help="Stop the forward after layer l when the NLL term is off.")
    save_every: int = field(50, help="Save a resumable checkpoint (OUT/checkpoints/) every N steps; 0 = never.", ge=0)
    save_dtype: str = field("auto", help="dtype of OUT/model: auto = the training compute dtype (bf16 under bf16 "
                                         "autocast: what evaluation loads anyway, half the disk), fp32 or bf16.",
                                             choices=SAVE_DTYPES)
    truncated_load: bool = field(True, help="When the forward stops at layer l (nll_weight 0, truncate_forward), "
                                            "load only the embeddings and blocks 0..l and write OUT/model by "
                                            "splicing them into the original safetensors shards (the tail is "
                                            "never in memory).")
    gradient_checkpointing: bool = field(False, help="Recompute block activations in the backward pass instead "
                                                     "of storing them (less memory, about 1.3x the compute).")
    micro_batch: int | None = field(
        None, legacy=None, help=(
        "Gradient caching: prompts per forward. The batch's layer-l features are computed in micro-batches "
        "without a graph, Circle Loss is taken on the whole batch, then each micro-batch is backpropagated "
        "with its share; loss and gradients are those of batch_size (tested). None = the whole batch in one "
        "forward."
        ), ge=1)
    nll_chunk: int = field(
        256, legacy=256, help=(
        "Tokens per LM-head chunk in the NLL term: at most this many tokens' full-vocabulary logits exist at "
        "once (same loss; tested)."
        ), ge=1)
    frozen_dtype: str = field(
        "auto", legacy="auto", help=(
        "dtype of the frozen weights: auto = bf16 when the model is saved in bf16 (and, full-parameter, "
        "trained under bf16 autocast), else fp32; or fp32 / bf16. Full-parameter: only the frozen linear "
        "weights (blocks above l) are cast, which is exact under autocast (it rounds them to bf16 anyway); "
        "norms and embeddings stay fp32. LoRA: the whole base model."
        ), choices=FROZEN_DTYPES)
    fused_adamw: bool = field(
        True, legacy=False, help=(
        "Update with torch's fused AdamW kernel (one pass over each weight and its state; the same update up to "
        "float rounding, so results are not bit-identical to false); false = torch's per-tensor loop."
        ))
    retention_n: int = field(
        32, keyed=False, help=(
        "What refine must preserve: the per-token NLL of this many seeded AlpacaEval reference answers, scored "
        "before and after training (dcr.refine.retention); 0 = off. Measurement only: not in the stage key."
        ), ge=0)
    retention_generations: int = field(
        8, keyed=False, help="Greedy answers to that many of those instructions, before and after, kept in "
                             "OUT/retention.jsonl (0 = none).", ge=0)
    retention_max_new_tokens: int = field(64, keyed=False, help="New tokens per retention answer.", ge=1)
    retention_max_rise: float = field(
        0.5, keyed=False, help=(
        "Largest rise of that NLL (nats per token) the stage accepts; above it, retention_action applies. 0.5 "
        "is a perplexity 1.65x the base model's: far beyond what a refinement that keeps the model's language "
        "moves (BENCHMARKS.md), far below what text that loops moves."
        ), ge=0)
    retention_max_answer_drop: float = field(
        MAX_ANSWER_DROP, keyed=False, help=(
        "Largest drop in the share of those greedy answers that comply (keyword judge: not a refusal, empty or "
        "degenerate) the stage accepts without a warning in its log and at the top of the report; never a "
        "reason to fail (8 answers are few). The NLL alone missed Qwen2.5-Coder-1.5B's refined model answering "
        "2 of 8 ordinary instructions instead of 7 (3 empty, 3 refusals) at +0.11 nats per token."
        ), ge=0, le=1)
    retention_action: str = field(
        "fail", keyed=False, help="Above retention_max_rise: fail (the stage stops with an error, so no DCR + STL "
                                  "number is computed on it) or warn (logged, recorded in metrics.json and named "
                                  "at the top of the report).",
                                      choices=RETENTION_ACTIONS)
    confound_n: int = field(
        50, keyed=False, help=(
        "The confound diagnostic (dcr.refine.confound), before and after training: linear-probe accuracy on "
        "class within one source and on source within one class, up to this many never-trained prompts per "
        "side; 0 = off. Measurement only: not in the stage key."
        ), ge=0)
    memory_check: bool = field(
        True, keyed=False, help=(
        "Estimate peak memory from the model's config before loading it, and refuse (naming settings that "
        "fit) when it exceeds the memory available."
        ))
    memory_limit_gb: float | None = field(
        None, keyed=False, help=(
        "Memory the estimate is checked against, in GB (None = MemAvailable, or the cgroup limit when lower)."
        ), gt=0)

    def __post_init__(self) -> None:
        super().__post_init__()  # every field's type and declared range / choices (dcr.validate)
        if self.lr is None:  # resolved here, so the stage key names the learning rate that is used
            self.lr = 1e-4 if self.lora else 1e-5
        if self.layer is None:  # resolved here, so the stage key names the layer that is trained
            from dcr.models import measured_refine_layer

            self.layer = measured_refine_layer(self.model)
        check(self.device != "shard", "device shard is for inference (evaluate, probe, judges). Fix: train on one "
                                       "device, or data-parallel under torchrun (docs/scale.md)")
        self._check_sources()
        check(self.frozen_dtype != "bf16" or self.lora or self.dtype not in ("fp32", "float32"),
              "frozen_dtype bf16 needs bf16 autocast in full-parameter refine. Fix: --dtype auto/bf16, or "
              "--frozen-dtype fp32")
        check(self.retention_n == 0 or self.retention_generations <= self.retention_n,
              f"retention_generations ({self.retention_generations}) must be <= retention_n ({self.retention_n}): "
              "the answers are to the first of those instructions")

    def _check_sources(self) -> None:
        if self.seemingly_sources is None and self.toxic_sources is None:
            return
        from dcr.refine.sources import SEEMINGLY, TOXIC, parse_sources

        check(self.seemingly_sources is not None and self.toxic_sources is not None,
              "seemingly_sources and toxic_sources go together. Fix: set both (e.g. seemingly_sources "
              "[xstest-safe, coconot-pref], toxic_sources [xstest-unsafe, coconot-original]), or neither")
        check(self.limit is None, f"limit ({self.limit}) does not apply with seemingly_sources / toxic_sources. "
                                  "Fix: give counts as NAME:COUNT and set limit (refine_limit) to null")
        parse_sources(self.seemingly_sources or [], SEEMINGLY, "seemingly_sources")
        parse_sources(self.toxic_sources or [], TOXIC, "toxic_sources")

    def data_sets(self) -> tuple[str, ...]:
        from dcr.data.catalog import offline_benchmarks

        sources = {spec.split(":")[0] for spec in [*(self.seemingly_sources or []), *(self.toxic_sources or [])]}
        return (*offline_benchmarks(),  # the sources, and every evaluation set the overlap scan reads
                "refine-coconot-original",  # the confound diagnostic's CoCoNot side
                *(["refine-coconot-pref"] if "coconot-pref" in sources else []),
                "alpaca-eval-gpt4",  # retention's reference answers
                *(["alpaca-instructions"] if self.anchor_weight else []))

    def check_inputs(self) -> None:
        super().check_inputs()  # the layer against the model's config too (field(layer="index"))
        if self.memory_check:
            from dcr.refine.memory import check_fits

            check_fits(self)
