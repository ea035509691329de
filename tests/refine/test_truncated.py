"""Truncated refine: only blocks 0..l are loaded, and the saved model is the original with those blocks spliced in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dcr.refine import RefineConfig, refine
from dcr.refine.truncated import load_truncated, splice_save
from dcr.testing import tiny_lm

FAST = dict(limit=6, epochs=1, batch_size=6, eval_batch_size=64, xstest_heldout_frac=0.05, nll_weight=0.0,
            dtype="fp32", save_dtype="fp32", layer=1, retention_n=0, confound_n=0)  # the weights are what is compared


def _weights(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(path.glob("*.safetensors")):
        out.update(load_file(str(shard)))
    return out


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama saved in several safetensors shards with an index (as 7B checkpoints are)."""
    model, tok = tiny_lm("llama", seed=3)
    path = tmp_path_factory.mktemp("sharded") / "model"
    model.save_pretrained(path, max_shard_size="20KB")
    tok.save_pretrained(path)
    assert (path / "model.safetensors.index.json").exists()
    return path


def test_load_truncated_holds_only_blocks_up_to_l(sharded: Path) -> None:
    model = load_truncated(str(sharded), 1)
    assert len(model.model.layers) == 2 and not any(".layers.2." in k for k in model.state_dict())


@pytest.mark.parametrize("which", ["tiny", "sharded"])
def test_truncated_refine_equals_full_load_and_keeps_the_tail(which: str, sharded: Path, tiny_dir: Path,
                                                              data_dir: Path, tmp_path: Path) -> None:
    src = sharded if which == "sharded" else tiny_dir
    cfg = RefineConfig(model=str(src), data_dir=str(data_dir), **FAST)
    cut = refine(cfg, tmp_path / "cut")
    full = refine(dataclasses.replace(cfg, truncated_load=False), tmp_path / "full")
    assert "truncated load" in (cut / "stage.log").read_text()
    a, b, orig = _weights(cut / "model"), _weights(full / "model"), _weights(src)
    assert set(a) == set(orig)
    for k in orig:
        assert torch.equal(a[k], b[k]), k  # the same training, whether or not the tail was loaded
        if ".layers.0." in k or ".layers.1." in k or "embed_tokens" in k:  # trained (untied embeddings too)
            continue
        assert torch.equal(a[k], orig[k]), k  # blocks > l, final norm, LM head: the original tensors
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], orig["model.layers.0.mlp.up_proj.weight"])
    config = json.loads((cut / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 4
    if which == "sharded":
        index = json.loads((cut / "model" / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(orig)


def test_untied_head_is_added_to_the_last_shard(sharded: Path, tmp_path: Path) -> None:
    model = load_truncated(str(sharded), 1)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() + 1)
    model.config.tie_word_embeddings = False
    state = _weights(sharded)
    if "lm_head.weight" in state:  # an untied original: the trained head replaces it in place
        del state["lm_head.weight"]
    _, tok = tiny_lm("llama")
    out = splice_save(model, tok, str(sharded), tmp_path / "m", torch.float32)
    got = _weights(out)
    assert torch.equal(got["lm_head.weight"], model.lm_head.weight.detach())
    assert set(got) >= set(state)
