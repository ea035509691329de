"""Configs of the ``dcr probe`` verbs: eNTK group matrix, eNTK tracking, layer separability and MDS maps."""

from __future__ import annotations

from dataclasses import dataclass

from dcr.config import StageConfig, check, field
from dcr.data import BENCHMARKS, data_dir
from dcr.models import resolve_model

METHODS = ("gram", "fd", "jvp")
GROUPS = ("s-toxic", "toxic", "normal")


@dataclass(kw_only=True)
class ProbeConfig(StageConfig):
    """Fields and checks shared by the probe configs."""

    batch_size: int = field(16, help="Prompts per forward pass.", ge=1)
    max_length: int = field(256, help="Maximum prompt length in tokens (longer prompts keep their end).", ge=8)

    def __post_init__(self) -> None:
        super().__post_init__()


@dataclass(kw_only=True)
class NtkConfig(ProbeConfig):
    """``dcr probe ntk``: mean normalised ||K_t(x', x)||_F between prompt groups (paper 4.2, 7.3, A.6)."""

    model_after: str | None = field(None, help="Optional second model (e.g. after DCR) shown beside the first.",
        nonempty=True)
    n_per_group: int = field(25, help="Prompts per group (paper: 25): S-toxic, toxic (XSTest), normal (I-Alpaca).",
        ge=2)
    top_k: int = field(5, help="Size of the top-k token sets S_u, S_o at the last prompt position.", ge=1)
    ntk_layers: int = field(2, help="Parameter subset: the last N decoder layers (plus the LM head).", ge=0,
        layer="count")
    include_head: bool = field(True, help="Include the LM head in the parameter subset (tied embeddings once).")
    method: str = field("gram", help="How K = J J^T is computed: gram (each prompt's top-k gradients once, every pair "
                                     "a dot product; exact, fast), jvp (exact forward-mode JVPs) or fd (central "
                                     "finite differences, the paper's A.6 scheme).", choices=METHODS)
    gram_budget_gb: float = field(6.0, help="method gram: memory for the stored gradients, GB. fp32 when they fit, "
                                            "else bf16; a bf16 store beyond it is streamed in passes over ranges "
                                            "of the parameters (each pass recomputes the gradients).", gt=0)
    fd_eps: float = field(1e-3, help="Finite-difference step epsilon (A.6: 1e-3).", gt=0)
    fd_unit_step: bool = field(False, help="Step along w/||w|| (then rescale) instead of the raw gradient w.")
    batch_size: int = field(32, help="Prompts x' per forward on the JVP side.", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ntk_layers > 0 or self.include_head, "the parameter subset is empty. Fix: ntk_layers >= 1 "
                                                        "or include_head=true")
        check(not (self.method == "fd" and self.dtype in ("bf16", "bfloat16", "fp16", "float16")),
              f"method fd with dtype {self.dtype}: a 1e-3 step is lost in half precision. Fix: use dtype fp32 "
              "(or auto) or method jvp")

    def data_sets(self) -> tuple[str, ...]:
        from dcr.probe.inputs import GROUP_SOURCES

        return tuple(GROUP_SOURCES.values())

    def check_inputs(self) -> None:
        super().check_inputs()
        if self.model_after is not None:
            resolve_model(self.model_after)


@dataclass(kw_only=True)
class NtkTrackConfig(NtkConfig):
    """``dcr probe ntk-track``: the group means of ||K_t|| across alignment checkpoints (paper Fig. 3)."""

    checkpoints: list[str] = field(default_factory=list, help="Checkpoint dirs (HF or PEFT adapter), or one "
                                                               "dir of checkpoint subdirs; sorted by step.",
                                                                   nonempty=True, path="dir")
    base_model: str | None = field(None, help="Base model of PEFT adapter checkpoints (default: the base named "
                                              "in adapter_config.json).", nonempty=True)

    def __post_init__(self) -> None:
        check(bool(self.checkpoints), "NtkTrackConfig.checkpoints is empty. Fix: pass --checkpoints DIR [DIR ...]")
        if not self.model:
            self.model = self.checkpoints[0]
        super().__post_init__()

    def check_inputs(self) -> None:
        from dcr.validate import validate_paths

        validate_paths(self)  # every checkpoint an existing, readable directory
        if self.base_model is not None:
            resolve_model(self.base_model)
        from dcr.data.catalog import check_sets

        check_sets(self.data_sets(), data_dir(self.data_dir))


@dataclass(kw_only=True)
class TwoSetConfig(ProbeConfig):
    """Last-token features of two prompt sets at chosen layers (separability and MDS)."""

    set_a: str = field("xstest-safe", help="First prompt set (a dcr.data benchmark name; seemingly toxic), label 0.",
        nonempty=True)
    set_b: str = field("xstest-unsafe", help="Second prompt set (a dcr.data benchmark name; toxic), label 1.",
        nonempty=True)
    n: int | None = field(None, help="Prompts per set (seeded subsample); None = all.", ge=2)
    layers: list[int] = field(default_factory=list, help="Blocks (0-based) to evaluate; empty = the verb's default.",
        ge=0, layer="index")

    def data_sets(self) -> tuple[str, ...]:
        return tuple(n for n in (self.set_a, self.set_b) if not n.startswith("hf:"))

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.set_a != self.set_b, "set_a and set_b are the same set. Fix: name two different prompt sets")
        for name in (self.set_a, self.set_b):
            check(name in BENCHMARKS or name.startswith("hf:"),
                  f"prompt set {name!r} unknown. Fix: use a benchmark name ({', '.join(BENCHMARKS)}) or hf:OWNER/NAME")

    @property
    def min_per_set(self) -> int:
        """The fewest prompts each set must hold for this probe to be computed."""
        return 2


@dataclass(kw_only=True)
class SeparabilityConfig(TwoSetConfig):
    """``dcr probe separability``: per-layer k-means and linear-probe accuracy (paper A.9, Fig. 7)."""

    cv_folds: int = field(5, help="Cross-validation folds of the logistic-regression probe.", ge=2)
    kmeans_init: int = field(10, help="k-means restarts (n_init).", ge=1)
    middle_band: list[float] = field(default_factory=lambda: [0.25, 0.75], nonempty=True, ge=0, le=1,
                                     help="Relative depth band [lo, hi] where the DCR layer is suggested.")
    saturation_tol: float = field(0.02, help="Probe accuracy within this of the band's best counts as saturated.",
        ge=0, lt=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n is None or self.n >= max(4, self.cv_folds),
              f"n must be >= max(4, cv_folds) prompts per set, got {self.n}")
        check(len(self.middle_band) == 2 and 0.0 <= self.middle_band[0] <= self.middle_band[1] <= 1.0,
              f"middle_band must be [lo, hi] with 0 <= lo <= hi <= 1, got {self.middle_band}")

    @property
    def min_per_set(self) -> int:
        """Both classes in every cross-validation fold."""
        return max(2, self.cv_folds)


@dataclass(kw_only=True)
class MdsConfig(TwoSetConfig):
    """``dcr probe mds``: 2-D MDS maps of last-token activations at chosen layers (paper A.9, Fig. 8)."""

    mds_method: str = field("smacof", help="smacof (sklearn.manifold.MDS) or classical (Torgerson).",
        choices=("smacof", "classical"))


@dataclass(kw_only=True)
class ConfoundConfig(StageConfig):
    """``dcr probe confound``: a finished refine stage's confound diagnostic (``dcr.refine.confound``: probe
    accuracy on class within one source, and on source within one class) measured on any model, e.g. the STL
    and DCR + STL models, to ask whether STL undoes what refinement did (issue 29, item 5). Data are read from
    this config's ``data_dir`` (default ``$DCR_DATA_DIR``, else the vendored copy), the directory checked and keyed,
    not from the one the refine stage named."""

    refine_stage: str = field("", help="A finished refine stage directory. Its config.yaml fixes the prompts (its "
                                       "training prompts left out), the layer, pooling, template, length and seed, "
                                       "so the numbers compare with its own before/after.", nonempty=True,
                              path="dir")
    seed: int | None = field(None, help="Seed of the probe's prompt samples and folds; None = the refine stage's "
                                        "(the same prompts as its before/after numbers). The training prompts "
                                        "left out stay the refine stage's either way.", ge=0)
    dtype: str = field("auto", help="Compute dtype: auto = the refine stage's (its features were taken at it), or "
                                    "fp32, bf16, fp16.")

    def __post_init__(self) -> None:
        seed = self.seed
        self.seed = 0 if seed is None else seed  # StageConfig's own checks read an int
        try:
            super().__post_init__()
        finally:
            self.seed = seed
        check(self.template == "auto", f"ConfoundConfig.template {self.template!r}: the confound probe reads prompts "
                                       "with the refine stage's template. Fix: leave template at auto")

    def data_sets(self) -> tuple[str, ...]:
        """Those of the refine stage (its data, the overlap scan's sets, the confound families); the paper's
        refine sets while the refine stage cannot be read yet (:meth:`check_inputs` then says why)."""
        from dcr.errors import ConfigError
        from dcr.probe.confound import refine_setup
        from dcr.refine.config import RefineConfig

        try:
            return refine_setup(self)[0].data_sets()
        except ConfigError:
            return RefineConfig(model=self.model or "m").data_sets()

    def check_inputs(self) -> None:
        """Also: the refine stage finished (its config.yaml and metrics.json read as a refine stage's), and its
        layer exists in the model to score."""
        super().check_inputs()
        from dcr.models import model_config, num_layers
        from dcr.probe.confound import refine_setup

        _, metrics = refine_setup(self)
        n = num_layers(model_config(self.model))
        check(int(metrics["layer"]) < n, f"the refine stage's layer {metrics['layer']} is not in {self.model} "
                                         f"(blocks 0..{n - 1}). Fix: score a model of the refine stage's family")
