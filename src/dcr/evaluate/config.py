"""``EvaluateConfig``: what ``dcr evaluate`` measures, on which model, with which judges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dcr.config import StageConfig, check, field
from dcr.errors import ConfigError

# AlpacaEval reference outputs shipped in the data directory (alpaca-eval/<name>_outputs.json).
ALPACA_REFERENCES = ("gpt4", "text_davinci_003", "gpt4_1106_preview")
# the alpaca-eval reference "the experiment's STL model" (the paper's); `dcr run` puts the STL model's path here
STL_REFERENCE = "stl"
RESERVED_TAGS = frozenset({"model", "benchmark", "kind", "split", "metric", "value", "n", "judge", "time"})


@dataclass(kw_only=True)
class EvaluateConfig(StageConfig):
    """Configuration of ``dcr evaluate`` (over-refusal, safety, general ability, refusal probability, quality)."""

    benchmarks: list[str] = field(default_factory=lambda: ["xstest"], help=(
        "Benchmarks: registered names (xstest, coconot, ...), groups all | over-refusal | safety-all (the five "
        "safety sets, each reported) | safety (pooled 938) | general (mmlu, arc-easy, arc-challenge, openbookqa, "
        "piqa), heldout-nll, alpaca-eval (win rate), or hf:OWNER/NAME[:SPLIT[:COL[:LABEL]]]."), nonempty=True)
    limit: int | None = field(None, help="At most this many items per benchmark, a seeded subsample (None = all).",
        ge=1)
    judge: str = field("keyword", help="Refusal judge for compliance and refusal rates: keyword | guard:MODEL | "
                                       "http:BASE_URL[#MODEL_NAME]; a refusal judge may add +unrelated:MODEL "
                                       "(dcr.judges.unrelated).", nonempty=True)
    safety_judge: str | None = field(None, help="Judge of defense success on unsafe prompts (the paper: a guard "
                                                "model); None = the refusal judge (defense = refusal).", nonempty=True)
    extra_judges: list[str] = field(default_factory=list, help="More refusal judges run on the same completions "
                                    "(e.g. prefix, http:URL, keyword+unrelated:smollm2-135m); each one's "
                                    "disagreement rate with --judge (on refusal / compliance / degenerate) is "
                                    "reported per benchmark (judge_disagreement).")
    steer: str | None = field(None, help="A `dcr steer` output directory whose hooks are applied while evaluating.",
        nonempty=True, path="dir")
    max_new_tokens: int = field(64, help="Greedy tokens generated per prompt; 64 covers the opening sentences the "
                                         "keyword judge reads (raise it for guard/LLM judges).", ge=1)
    stop_at_judge_window: bool = field(True, legacy=False, help=(
        "Stop generating a row once every judge has read all it reads (the keyword judge: its window of 2 "
        "sentences / 300 characters); such rows are marked truncated_for_judge. Any judge that reads whole "
        "answers (guard, http, prefix) turns it off, and the generation cache is keyed on it, so whole-answer "
        "judges always get full generations. False = the behaviour before this field (finished stages keep "
        "their keys)."))
    batch_size: int = field(128, help="Prompts per generation batch (length-sorted; part of the generation cache key; "
                                       "a resume unit). Prompts are read 25 at a time, so memory grows little with "
                                       "it; a decode step of 100 rows costs 1.4x one of 64 at 1.5B (BENCHMARKS.md).",
                                           ge=1)
    score_batch_size: int = field(8, help="Sequences per forward when scoring log-probabilities.", ge=1)
    xstest_heldout_frac: float = field(0.2, help="Fraction of XSTest safe prompts held out (dcr.data.xstest_split); "
                                                 "labels the in-distribution / held-out splits (0: all "
                                                 "in-distribution, no held-out split).", ge=0, lt=1)
    split_seed: int = field(0, help="Seed of the XSTest held-out split (shared with refine, align and steer).", ge=0)
    refusal_prob: bool = field(False, help="Also report the A.5 refusal probability (mean) per benchmark "
                                           "(31 teacher-forced continuations per prompt).")
    mmlu_shots: int = field(0, help="MMLU in-context examples from the dev split (0-5; lm-eval's default is 0).",
        ge=0, le=5)
    nll_n: int = field(100, help="heldout-nll: AlpacaEval reference answers scored (a seeded subset; --limit caps).",
        ge=1)
    nll_max_tokens: int = field(256, help="heldout-nll: reference answers are cut to this many tokens.", ge=1)
    nll_reference: str = field("gpt4", help=f"heldout-nll: AlpacaEval outputs used ({', '.join(ALPACA_REFERENCES)}).",
        choices=ALPACA_REFERENCES)
    quality_n: int = field(50, help="alpaca-eval: instructions in the seeded subset (--limit caps).", ge=1)
    reference: str = field(STL_REFERENCE, help="alpaca-eval reference answers: stl = the experiment's STL model "
                           f"(the paper; `dcr run` fills it in), a model (answers generated by the same code), or "
                           f"{', '.join(ALPACA_REFERENCES)} (outputs in the data dir).", nonempty=True)
    annotator: str | None = field(None, help="alpaca-eval annotator: http:BASE_URL[#MODEL_NAME] (an LLM judge; the "
                                             "paper: GPT-4o-mini), or local:MODEL only if you ask for it (log-prob "
                                             "of 'A' vs 'B'; a small model is a weak judge). None = not measured.",
                                                 nonempty=True)
    quality_max_new_tokens: int = field(256, help="alpaca-eval: tokens generated per answer.", ge=1)
    answer_chars: int = field(1500, help="alpaca-eval: each answer is cut to this many characters for the annotator.",
        ge=1)
    tags: dict[str, str] = field(default_factory=dict, help="Extra fields added to every results.jsonl record "
                                                            "(the pipeline sets method and seed).")

    def __post_init__(self) -> None:
        from dcr.judges.base import parse_spec
        from dcr.specs import parse_annotator, parse_hub

        super().__post_init__()  # bounds, choices and non-empty fields (dcr.validate)
        check(all(b.strip() for b in self.benchmarks),
              "benchmarks holds an empty name. Fix: pass --benchmark NAME[,NAME...] (e.g. xstest, or all)")
        for name in (n.strip() for b in self.benchmarks for n in b.split(",")):
            if name.startswith("hf:"):
                parse_hub(name)
        for spec in (self.judge, self.safety_judge, *self.extra_judges):
            if spec is not None:
                parse_spec(spec)
        check(self.judge not in self.extra_judges, f"extra_judges repeats --judge {self.judge!r}. Fix: drop it")
        if self.annotator is not None:
            parse_annotator(self.annotator)
        self.tags = {str(k): str(v) for k, v in (self.tags or {}).items()}
        clash = sorted(set(self.tags) & RESERVED_TAGS)
        check(not clash, f"tags {clash} clash with result fields. Fix: rename them (reserved: {sorted(RESERVED_TAGS)})")

    def check_benchmarks(self) -> None:
        """Every benchmark name is known (its offline rows are read by ``check_inputs``, :meth:`data_sets`)."""
        from dcr.evaluate.suite import expand_benchmarks

        expand_benchmarks(self.benchmarks)

    def data_sets(self) -> tuple[str, ...]:
        from dcr.data import BENCHMARKS
        from dcr.evaluate.general import GENERAL
        from dcr.evaluate.suite import expand_benchmarks

        out: list[str] = []
        for name in expand_benchmarks(self.benchmarks):
            if name in BENCHMARKS and not BENCHMARKS[name].hub_id or name in GENERAL:
                out.append(name)  # hub-only sets load (or not) when run
            elif name == "heldout-nll":
                out.append(f"alpaca-eval-{self.nll_reference}")
            elif name == "alpaca-eval":
                out += ["alpaca-eval-gpt4", *([f"alpaca-eval-{self.reference}"]
                                              if self.reference in ALPACA_REFERENCES else [])]
        return tuple(out)

    def check_inputs(self) -> None:
        super().check_inputs()
        self.check_benchmarks()
        if self.steer is not None and not (Path(self.steer).expanduser() / "steer.json").is_file():
            raise ConfigError(f"--steer {self.steer}: no steer.json there. Fix: pass a `dcr steer` output directory")
