"""Fake stages with the real stage contract (dataclass config, run_stage, OUT/model, results.jsonl)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dcr.config import field as dcr_field
from dcr.io import write_json
from dcr.results import record
from dcr.stage import run_stage


@dataclass
class Common:
    model: str = ""
    seed: int = 0
    data_dir: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    template: str = "auto"
    xstest_heldout_frac: float = 0.2
    split_seed: int = 0


@dataclass
class FakeRefineConfig(Common):
    epochs: int = 3
    limit: int | None = None
    layer: int | None = None


@dataclass
class FakeAlignConfig(Common):
    method: str = "stl"
    epochs: float = 3.0
    n_general: int = 20000
    n_safety: int = 1000
    teacher: str = "self"
    teacher_max_new_tokens: int = 128
    teacher_cache: str | None = dcr_field(None, keyed=False, help="where teacher answers are shared")
    exclude_from: str | None = None


@dataclass
class FakeSteerConfig(Common):
    method: str = "surgical"
    w_f: float = 0.5
    w_h: float = 0.1
    multiplier: float = 1.0
    n_directions: int = 64


@dataclass
class FakeEvaluateConfig(Common):
    benchmarks: list[str] = field(default_factory=lambda: ["xstest"])
    limit: int | None = None
    max_new_tokens: int = 64
    judge: str = "keyword"
    steer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _score(*parts: Any) -> float:
    """A deterministic pseudo-measurement in [0, 1) from the inputs (differs per model/seed/steer)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:6], 16) / 16**6


class Fakes:
    """A registry of fake stages that counts how often each stage body really ran."""

    def __init__(self) -> None:
        self.bodies: Counter[str] = Counter()
        self.fail_once: set[str] = set()  # stage labels (e.g. "align:stl-aug") that raise on their first run
        self.fail_evaluate_at: int | None = None  # the n-th evaluate body (1-based) raises half-way

    def _maybe_fail(self, tag: str, out: Path) -> None:
        if tag in self.fail_once:
            self.fail_once.discard(tag)
            (out / "partial.txt").write_text("half done")
            raise KeyboardInterrupt(f"simulated interruption in {tag}")

    def refine(self, cfg: FakeRefineConfig, out_dir: Path, force: bool = False) -> Path:
        def body(out: Path) -> dict[str, Any]:
            self.bodies["refine"] += 1
            self._maybe_fail("refine", out)
            (out / "model").mkdir(exist_ok=True)
            write_json(out / "split.json", {"toxic_prompts": ["x"]})
            return {}

        return run_stage("refine", cfg, out_dir, body, force=force)[0]

    def align(self, cfg: FakeAlignConfig, out_dir: Path, force: bool = False) -> Path:
        def body(out: Path) -> dict[str, Any]:
            self.bodies[f"align:{cfg.method}"] += 1
            self._maybe_fail(f"align:{cfg.method}", out)
            (out / "model").mkdir(exist_ok=True)
            lines = ["step,group,refusal_prob,refusal_rate,n"]
            for step in (0, 10, 20):
                for group in ("toxic", "seemingly_toxic", "normal"):
                    v = _score(cfg.model, cfg.seed, step, group)
                    lines.append(f"{step},{group},{v / 2:.4f},{v:.4f},8")
            (out / "tracking.csv").write_text("\n".join(lines) + "\n")
            return {}

        return run_stage("align", cfg, out_dir, body, upstream={"model": cfg.model}, force=force)[0]

    def steer(self, cfg: FakeSteerConfig, out_dir: Path, force: bool = False) -> Path:
        def body(out: Path) -> dict[str, Any]:
            self.bodies[f"steer:{cfg.method}"] += 1
            write_json(out / "steer.json", {"method": cfg.method})
            return {}

        return run_stage("steer", cfg, out_dir, body, upstream={"model": cfg.model}, force=force)[0]

    def evaluate(self, cfg: FakeEvaluateConfig, out_dir: Path, force: bool = False) -> Path:
        def body(out: Path) -> dict[str, Any]:
            self.bodies["evaluate"] += 1
            (out / "results.jsonl").unlink(missing_ok=True)
            missing = {}
            for i, bench in enumerate(cfg.benchmarks):
                if i == 1 and self.bodies["evaluate"] == self.fail_evaluate_at:
                    raise KeyboardInterrupt("simulated interruption during evaluation")
                if bench == "phtest":
                    missing[bench] = "PHTest is only on the hub"
                    continue
                v = _score(cfg.model, cfg.steer, bench)
                if bench == "xstest":
                    for split in ("all", "in-distribution", "held-out"):
                        record(out, model=cfg.model, benchmark=bench, kind="over-refusal", split=split,
                               metric="compliance_rate", value=v, n=10, judge=cfg.judge)
                    record(out, model=cfg.model, benchmark=bench, kind="safety", split="all",
                           metric="defense_success_rate", value=1 - v, n=10, judge=cfg.judge)
                else:
                    record(out, model=cfg.model, benchmark=bench, kind="safety", split="all",
                           metric="defense_success_rate", value=v, n=10, judge=cfg.judge)
            write_json(out / "metrics.json", {"missing": missing})
            return {}

        return run_stage("evaluate", cfg, out_dir, body, upstream={"model": cfg.model, "steer": cfg.steer},
                         force=force)[0]

    def registry(self) -> dict[str, tuple[type, Any]]:
        return {"refine": (FakeRefineConfig, self.refine), "align": (FakeAlignConfig, self.align),
                "steer": (FakeSteerConfig, self.steer), "evaluate": (FakeEvaluateConfig, self.evaluate)}


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()
