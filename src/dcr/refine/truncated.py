"""Truncated refine: load only the embeddings and blocks ``0..l``, and save by splicing into the original shards.

When the forward stops at layer l (``nll_weight: 0``), the blocks after l, the final norm and the LM head are never
run. ``load_truncated`` then builds the model from its config with ``num_hidden_layers = l + 1``, so the tail is
never read from disk (safetensors are memory-mapped; keys of blocks > l are skipped) nor held in memory.
``splice_save`` writes the refined model: every original shard is copied tensor by tensor, with the tensors the
truncated model holds (embeddings and blocks 0..l) replaced by the trained ones; the original config, index and
tokenizer files are kept. Peak memory is the truncated model plus one shard.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from dcr.errors import ModelError

KEEP_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json")


def text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def truncated_config(ref: str, layer: int) -> Any:
    """The model's config with only blocks ``0..layer`` (per-layer lists such as ``layer_types`` cut too)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(ref)
    cfg = text_config(config)
    cfg.num_hidden_layers = layer + 1
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[: layer + 1]
    return config


def checkpoint_dir(ref: str) -> Path:
    """The local directory with the model's safetensors (a local model, or the hub cache of a hub id)."""
    path = Path(ref).expanduser()
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(ref, allow_patterns=["*.safetensors", "*.json", "*.model", "*.txt",
                                                             "*.jinja"]))
    if not any(path.glob("*.safetensors")):
        raise ModelError(f"{ref} has no .safetensors weights to splice into. Fix: set truncated_load: false")
    return path


def load_truncated(ref: str, layer: int, attention: str | None = None, dtype: torch.dtype = torch.float32) -> Any:
    """The model with blocks ``0..layer`` only (embeddings, those blocks, final norm and LM head), in eval mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ref, config=truncated_config(ref, layer), dtype=dtype,
                                                 attn_implementation=attention)
    return model.eval()


def _shards(src: Path) -> dict[str, str]:
    """Tensor name -> shard file name of a (possibly sharded) safetensors checkpoint."""
    index = src / "model.safetensors.index.json"
    if index.exists():
        return dict(json.loads(index.read_text())["weight_map"])
    from safetensors import safe_open

    out = {}
    for shard in sorted(src.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as fh:
            out.update({k: shard.name for k in fh.keys()})
    return out


def splice_save(model: Any, tok: Any, ref: str, target: str | Path, dtype: torch.dtype) -> Path:
    """Write the full refined model to ``target``: the original checkpoint of ``ref`` with every tensor the
    truncated ``model`` holds replaced by its trained value, all floating tensors in ``dtype``, atomically."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoConfig

    from dcr.io import atomic_dir

    src = checkpoint_dir(ref)
    weight_map = _shards(src)
    trained = {k: v.detach() for k, v in model.state_dict().items()}
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    extra = {k: v for k, v in trained.items()  # e.g. an untied LM head; a tied one is not a tensor of its own
             if k not in weight_map and not (tied and v.data_ptr() == head.weight.data_ptr())}
    shards = sorted(set(weight_map.values()))
    with atomic_dir(target) as tmp:
        for shard in shards:
            with safe_open(str(src / shard), "pt") as fh:
                tensors = {k: trained[k] if k in trained else fh.get_tensor(k) for k in fh.keys()}
            if shard == shards[-1]:
                tensors.update(extra)
                weight_map.update({k: shard for k in extra})
            save_file({k: _cast(v, dtype) for k, v in tensors.items()}, str(tmp / shard), metadata={"format": "pt"})
        if (src / "model.safetensors.index.json").exists():
            index = json.loads((src / "model.safetensors.index.json").read_text())
            index["weight_map"] = weight_map
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config = AutoConfig.from_pretrained(str(src))
        text_config(config).tie_word_embeddings = text_config(model.config).tie_word_embeddings
        config.tie_word_embeddings = model.config.tie_word_embeddings
        config.dtype = dtype
        config.save_pretrained(tmp)
        for name in KEEP_FILES:
            if (src / name).exists() and not (tmp / name).exists():
                shutil.copy2(src / name, tmp / name)
        tok.save_pretrained(tmp)
    return Path(target)


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).contiguous() if t.is_floating_point() else t.contiguous()
