"""SmolLM2-135M-Instruct: the truncated forward at the default layer, and a very short refinement run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcr.io import read_json
from dcr.models import load_model
from dcr.refine import RefineConfig, refine
from dcr.refine.features import default_layer, encode_prompts, layer_forward

pytestmark = pytest.mark.integration


def test_smollm2_truncated_forward_matches_hidden_states(smollm2_dir: Path) -> None:
    model, tok = load_model(str(smollm2_dir), dtype="fp32")
    layer = default_layer(model)
    assert layer == 15
    batch = encode_prompts(tok, ["How do I kill a Python process?", "How do I kill my neighbour?"])
    with torch.no_grad():
        full = model(**batch, output_hidden_states=True).hidden_states[layer + 1]
        hidden, logits = layer_forward(model, batch["input_ids"], batch["attention_mask"], layer)
    assert logits is None
    torch.testing.assert_close(hidden, full)


def test_smollm2_short_refine_pushes_classes_apart(smollm2_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = RefineConfig(model=str(smollm2_dir), data_dir=str(data_dir), limit=8, epochs=2, batch_size=8,
                       nll_weight=0.0, xstest_heldout_frac=0.05, eval_batch_size=20, retention_n=0, confound_n=0)
    out = refine(cfg, tmp_path / "out")
    metrics = read_json(out / "metrics.json")
    hh = metrics["eval"]["hh"]
    assert metrics["train"]["steps"] == 4
    assert hh["after"]["cross_class_cosine"] < hh["before"]["cross_class_cosine"]
    model, _ = load_model(str(out), dtype="fp32")
    base, _ = load_model(str(smollm2_dir), dtype="fp32")
    saved = json.loads((out / "model" / "config.json").read_text())["dtype"]  # save_dtype auto: compute dtype
    if saved == "bfloat16":  # frozen weights are the originals rounded to bf16 (what a bf16 evaluation loads)
        base.to(torch.bfloat16).float()
    assert torch.equal(model.lm_head.weight, base.lm_head.weight)
    assert torch.equal(model.model.layers[16].mlp.up_proj.weight, base.model.layers[16].mlp.up_proj.weight)
    assert not torch.equal(model.model.layers[15].mlp.up_proj.weight, base.model.layers[15].mlp.up_proj.weight)
