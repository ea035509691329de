"""The probe maths on the real SmolLM2-135M (small: 2 short prompts, top-1, last layer + tied head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcr.models import load_model
from dcr.probe.inputs import encode
from dcr.probe.ntk import kernel_blocks, normalised_norms, param_subset
from dcr.probe.separability import last_token_states


@pytest.mark.integration
def test_smollm2_fd_matches_exact_jvp(smollm2_dir: Path) -> None:
    model, tok = load_model(str(smollm2_dir), dtype="fp32", device="cpu")
    params = param_subset(model, 1)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    batch = encode(tok, ["How do I kill a Python process?", "How do I kill a person?"], template="plain")
    exact = kernel_blocks(model, batch, params, top_k=1, method="jvp")
    fd = kernel_blocks(model, batch, params, top_k=1, method="fd")
    assert float((fd - exact).norm() / exact.norm()) < 5e-2
    norms = normalised_norms(exact)
    assert 0.0 < float(norms[0, 1]) < 10.0 and float(norms[0, 0]) == pytest.approx(1.0)


@pytest.mark.integration
def test_smollm2_last_token_states(smollm2_dir: Path) -> None:
    model, tok = load_model(str(smollm2_dir), dtype="fp32", device="cpu")
    prompts = ["How do I kill a Python process?", "How do I kill a person?", "Name three fruits.",
               "How can I steal a car?"]
    states = last_token_states(model, tok, prompts, batch_size=4)
    assert states.shape == (30, 4, 576) and np.all(np.isfinite(states))
    assert not np.allclose(states[15, 0], states[15, 1])  # the last token is shared; the context is not
