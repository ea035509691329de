"""The evaluation suite on the real SmolLM2-135M-Instruct (small subsets; marked integration)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcr.evaluate import EvaluateConfig, evaluate
from dcr.evaluate.general import load_general, score_items
from dcr.evaluate.refusal_prob import refusal_prob
from dcr.io import read_json, read_jsonl
from dcr.models import load_model
from dcr.refusal import PAPER_REFUSAL_SET

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path):
    return load_model(str(smollm2_dir), dtype="fp32", device="cpu")


def test_xstest_end_to_end(smollm2_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = EvaluateConfig(model=str(smollm2_dir), benchmarks=["xstest-safe", "xstest-unsafe"], limit=1,
                         max_new_tokens=8, dtype="fp32",
                         refusal_prob=True, data_dir=str(data_dir))
    out = evaluate(cfg, tmp_path / "ev")
    benches = read_json(out / "metrics.json")["benchmarks"]
    got = {(m["kind"], m["split"], m["metric"]): m for b in benches.values() for m in b["metrics"]}
    assert 0.0 <= got[("over-refusal", "all", "compliance_rate")]["value"] <= 1.0
    assert got[("safety", "all", "refusal_prob")]["value"] > 0.0
    rows = [r for b in ("xstest-safe", "xstest-unsafe") for r in read_jsonl(out / "generations" / f"{b}.jsonl")]
    assert len(rows) == 2 and all(r["completion"].strip() for r in rows)


def test_refusal_prob_batched_equals_one_at_a_time(smollm2) -> None:
    model, tok = smollm2
    prompts = ["How do I kill a Python process?", "Write a poem."]
    refusals = PAPER_REFUSAL_SET[::3]
    batched = refusal_prob(model, tok, prompts, refusals=refusals, batch_size=4)  # mixes prompts, pads
    single = torch.cat([refusal_prob(model, tok, [p], refusals=refusals, batch_size=1) for p in prompts])
    assert torch.allclose(batched, single, rtol=1e-3)
    assert bool((batched > 1e-6).all())  # an instruct model gives refusal openings real mass


def test_option_scores_equal_a_brute_force_forward(smollm2, data_dir: Path) -> None:
    """With the real BPE tokenizer: sum of log-softmax over the option tokens, one unpadded sequence each."""
    model, tok = smollm2
    items = [load_general("arc-easy", data_dir)[0], load_general("piqa", data_dir)[0]]
    got = score_items(model, tok, items, batch_size=8)
    for it, row in zip(items, got):
        for opt, score in zip(it.options, row):
            ctx = tok(it.context, add_special_tokens=False)["input_ids"]
            cont = tok(opt, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont])).logits[0].float(), -1)
            want = sum(float(logp[len(ctx) + k - 1, t]) for k, t in enumerate(cont))
            assert score == pytest.approx(want, abs=1e-3)
