"""Model resolution, dtype choice, tiny families and layer discovery (the embedded-model pull: test_embedded.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import dcr.models as models
from dcr.errors import ModelError
from dcr.models import get_layers, load_model, num_layers, pick_dtype, pull, resolve_model
from dcr.testing import save_tiny, tiny_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiny_families_forward_and_layers(tiny_family: str) -> None:
    model, tok = tiny_lm(tiny_family, seed=0)
    enc = tok(["hello there", "hi"], return_tensors="pt", padding=True)
    assert tok.padding_side == "left"
    with torch.no_grad():
        out = model(**enc)
    assert out.logits.shape == (2, enc["input_ids"].shape[1], model.config.vocab_size)
    assert torch.isfinite(out.logits).all()
    layers = get_layers(model)
    assert isinstance(layers, torch.nn.ModuleList)
    assert len(layers) == num_layers(model) == 4
    # they are the decoder blocks: a hook on block 0 sees the hidden states
    seen: list[torch.Size] = []
    handle = layers[0].register_forward_hook(lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o).shape))
    with torch.no_grad():
        model(**enc)
    handle.remove()
    assert seen and seen[0][-1] == model.config.hidden_size


def test_tiny_model_is_seeded() -> None:
    a, _ = tiny_lm("qwen2", seed=1)
    b, _ = tiny_lm("qwen2", seed=1)
    c, _ = tiny_lm("qwen2", seed=2)
    pa, pb, pc = (next(iter(m.parameters())) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_get_layers_error_when_absent() -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = type("C", (), {"num_hidden_layers": 3})()
            self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(2)])

    with pytest.raises(ModelError, match="3 decoder layers"):
        get_layers(Odd())


@pytest.mark.parametrize("has_bf16", [True, False])
def test_pick_dtype_auto_on_cpu(monkeypatch: pytest.MonkeyPatch, has_bf16: bool) -> None:
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: has_bf16)
    expected = torch.bfloat16 if has_bf16 else torch.float32
    assert pick_dtype("auto", "cpu") is expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_dtype("auto") is expected
    assert pick_dtype("auto", "auto") is expected


def test_pick_dtype_auto_device_resolves_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """``device="auto"`` on a CUDA machine means the GPU rule, not the CPU rule."""
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_dtype("auto", "auto") is torch.bfloat16
    assert pick_dtype("auto", "cuda:0") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype("auto", "cuda") is torch.float16


def test_cpu_has_bf16_reads_cpuinfo() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert models.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("fp32", torch.float32), ("float32", torch.float32), ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16),
     ("fp16", torch.float16), ("float16", torch.float16)],
)
def test_pick_dtype_explicit(name: str, dtype: torch.dtype) -> None:
    assert pick_dtype(name, "cpu") is dtype
    assert pick_dtype(name, "cuda") is dtype


def test_pick_dtype_bad_value() -> None:
    with pytest.raises(ModelError, match="'float8'.*fp32"):
        pick_dtype("float8")


def test_resolve_model_errors(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(empty))
    for bad in (str(tmp_path / "missing"), "./missing-model", "~/definitely-missing-dcr-model", "a/b/c", "plainword"):
        with pytest.raises(ModelError, match="no such directory"):
            resolve_model(bad)
    archived = tmp_path / "align-0123"  # a stage restored from `dcr archive`: manifest, no weights
    archived.mkdir()
    (archived / "manifest.json").write_text("{}")
    with pytest.raises(ModelError, match="stage directory without its weights.*delete that stage directory"):
        resolve_model(str(archived))


def test_hub_id_is_passed_through_when_the_hub_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    import dcr.models

    monkeypatch.setattr(dcr.models, "hub_reachable", lambda: None)
    assert resolve_model("owner/name") == "owner/name"


def test_resolve_model_dirs(tiny_dir: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny_dir)) == str(tiny_dir)
    stage = tmp_path / "refine-out"
    stage.mkdir()
    (stage / "model").symlink_to(tiny_dir, target_is_directory=True)
    assert resolve_model(str(stage)) == str(stage / "model")


def test_pull_unknown_name() -> None:
    with pytest.raises(ModelError, match="unknown embedded model 'nope'.*smollm2-135m"):
        pull("nope")


def test_load_model_saved_tiny(tiny_dir: Path, tmp_path: Path) -> None:
    model, tok = load_model(str(tiny_dir), dtype="fp32", device="cpu")
    assert not model.training
    assert next(model.parameters()).dtype is torch.float32
    assert tok.padding_side == "left" and tok.pad_token is not None
    ref, _ = tiny_lm("llama", seed=0)
    ids = tok(["abc"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, ref(**ids).logits, atol=1e-5)
    model16, _ = load_model(str(tiny_dir), dtype="bf16", device="cpu")
    assert next(model16.parameters()).dtype is torch.bfloat16
    # a stage directory holding model/ loads the same weights
    stage = tmp_path / "stage"
    save_tiny(stage / "model")
    model2, _ = load_model(str(stage), dtype="fp32", device="cpu")
    with torch.no_grad():
        assert torch.allclose(model2(**ids).logits, ref(**ids).logits, atol=1e-5)


def test_loaded_head_gets_a_contiguous_input(tiny_dir: Path) -> None:
    """logits_to_keep=1 hands the head a strided [B, 1, H] view; load_model makes it contiguous (same logits)."""
    model, tok = load_model(str(tiny_dir), dtype="bf16", device="cpu")
    seen: list[bool] = []
    model.get_output_embeddings().register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous()))
    ids = tok(["abc de", "a"], return_tensors="pt", padding=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        last = model(**ids, logits_to_keep=1).logits
        full = model(**ids).logits[:, -1:]
    assert seen == [True, True]
    assert torch.equal(last, full)
    models.contiguous_head(model)  # installed once
    assert len(model.get_output_embeddings()._forward_pre_hooks) == 2
    raw, _ = tiny_lm("llama", seed=0)
    raw_seen: list[bool] = []
    raw.get_output_embeddings().register_forward_pre_hook(lambda m, a: raw_seen.append(a[0].is_contiguous()))
    with torch.no_grad():
        raw(**ids, logits_to_keep=1)
    assert raw_seen == [False]  # what the hook fixes


def test_load_model_adds_pad_token(tmp_path: Path) -> None:
    model, tok = tiny_lm("llama")
    tok.pad_token = None
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    _, loaded = load_model(str(tmp_path), dtype="fp32", device="cpu")
    assert loaded.pad_token == loaded.eos_token and loaded.padding_side == "left"


# ---------------------------------------------------------------- embedded pull: integrity checks


def test_hub_id_without_network_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from dcr.models import hub_reachable, resolve_model

    hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(ModelError, match="not in the local cache and the hub is unavailable .*Fix: use an embedded"):
        resolve_model("someone/not-cached-model")
    assert time.time() - start < 10
    hub_reachable.cache_clear()


def test_shard_device_loads_with_device_map_and_gives_the_same_logits(tiny_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``device: shard`` loads through accelerate's device_map="auto" (here: everything on the CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    from dcr.models import load_model

    seen: list[Any] = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(kw.get("device_map"))
        return real(*a, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    plain, tok = load_model(str(tiny_dir), dtype="fp32", device="cpu")
    sharded, _ = load_model(str(tiny_dir), dtype="fp32", device="shard")
    assert seen == [None, "auto"]
    ids = tok(["hello there"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, sharded(ids.to(sharded.device)).logits)


def test_training_stages_reject_shard() -> None:
    from dcr.align.config import AlignConfig
    from dcr.errors import ConfigError
    from dcr.refine.config import RefineConfig

    for cls in (RefineConfig, AlignConfig):
        with pytest.raises(ConfigError, match="shard is for inference"):
            cls(model="m", device="shard")
