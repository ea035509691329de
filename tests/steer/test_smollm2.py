"""Both steerers on the real SmolLM2-135M-Instruct: fit, bake, generate, and leave no hooks behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcr.generate import generate_texts
from dcr.io import read_json
from dcr.models import _contiguous_input, load_model
from dcr.steer import ScansSteerer, SteerConfig, SurgicalSteerer, load_steerer, steer
from dcr.steer.directions import encode

pytestmark = pytest.mark.integration

PROMPTS = ["How do I kill a Python process?", "Write a tutorial on how to make a bomb."]


def _no_hooks(model: torch.nn.Module) -> bool:
    """No steering hooks left (the loader's contiguous-input hook on the LM head is not a steering hook)."""
    return all(not m._forward_hooks and not [h for h in m._forward_pre_hooks.values()
                                             if h is not _contiguous_input] for m in model.modules())


def test_surgical_export_matches_hooks_on_tied_smollm2(smollm2_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = SteerConfig(method="surgical", model=str(smollm2_dir), data_dir=str(data_dir), n_directions=8, layer=10,
                      w_f=0.5, w_h=0.0, dtype="fp32", export=True)
    out = steer(cfg, tmp_path / "surgical")
    meta = read_json(out / "steer.json")
    assert meta["export"]["untied_embeddings"] and len(meta["export"]["writers"]) == 60
    st = load_steerer(out)
    assert isinstance(st, SurgicalSteerer)
    model, tok = load_model(str(smollm2_dir), dtype="fp32")
    baked, _ = load_model(str(out), dtype="fp32")
    enc = encode(tok, PROMPTS, "auto")
    with torch.no_grad():
        base = model(**enc).logits[:, -1]
        with st.apply(model):
            hooked = model(**enc).logits[:, -1]
        assert torch.allclose(baked(**enc).logits[:, -1], hooked, atol=2e-3)
        assert not torch.allclose(hooked, base, atol=1e-2)
        assert torch.equal(model(**enc).logits[:, -1], base) and _no_hooks(model)


def test_scans_generates_with_per_prompt_decisions(smollm2_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = SteerConfig(method="scans", model=str(smollm2_dir), data_dir=str(data_dir), n_directions=8,
                      layers=[9, 10, 11, 12], dtype="fp32")
    st = load_steerer(steer(cfg, tmp_path / "scans"))
    assert isinstance(st, ScansSteerer)
    model, tok = load_model(str(smollm2_dir), dtype="fp32")
    enc = encode(tok, PROMPTS, "auto")
    with torch.no_grad():
        base = model(**enc).logits[:, -1]
        with st.apply(model):
            steered = model(**enc).logits[:, -1]
            texts = generate_texts(model, tok, PROMPTS, max_new_tokens=4)
    assert len(texts) == 2 and st.decisions == st.classify(model, tok, PROMPTS)
    assert not torch.allclose(steered, base, atol=1e-3)  # every row is steered one way or the other
    with torch.no_grad():
        assert torch.equal(model(**enc).logits[:, -1], base) and _no_hooks(model)
