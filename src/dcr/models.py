"""Resolve and load models: embedded GGUF models from PyPI (:mod:`dcr.embedded`), local HF dirs, or hub ids."""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import torch

from dcr.embedded import EMBEDDED, EmbeddedModel, cache_dir, measured_refine_layer, pull, sha256_file, weights_for
from dcr.errors import ModelError

__all__ = ["EMBEDDED", "EmbeddedModel", "cache_dir", "measured_refine_layer", "pull", "sha256_file", "weights_for"]


def checkpointing_prefix(obj: Any) -> str:
    """transformers' name for activation checkpointing on ``obj`` (a model, or the TrainingArguments class):
    ``activation_checkpointing`` since the 5.x rename (the ``gradient_checkpointing*`` aliases warn there), else
    ``gradient_checkpointing``. Callers add ``_enable`` / ``_disable`` / ``_kwargs``."""
    new = hasattr(obj, "activation_checkpointing_enable") or hasattr(obj, "activation_checkpointing")
    return "activation_checkpointing" if new else "gradient_checkpointing"


def saved_dtype(save_dtype: str, compute: torch.dtype) -> torch.dtype:
    """The dtype a stage writes its model in: ``auto`` = the training ``compute`` dtype (fp16 compute saves bf16,
    whose range fp16 weights could overflow), else ``fp32``/``bf16``."""
    if save_dtype == "auto":
        return torch.bfloat16 if compute in (torch.bfloat16, torch.float16) else torch.float32
    return pick_dtype(save_dtype)


def save_model(model: Any, tok: Any, target: str | Path, dtype: torch.dtype | None = None,
               notes: dict[str, str] | None = None) -> Path:
    """Write ``model`` (cast to ``dtype`` if given) + ``tok`` as an HF directory at ``target``, atomically.

    ``notes`` are extra text files written into the directory (provenance). Nothing is half-written: the
    directory is built beside ``target`` and renamed over it.
    """
    from dcr.io import atomic_dir

    if dtype is not None:
        model = model.to(dtype)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        for name, text in (notes or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return Path(target)


def resolve_model(name_or_path: str) -> str:
    """Map an embedded name, a local directory or a hub id to something ``from_pretrained`` takes."""
    if name_or_path in EMBEDDED:
        return str(pull(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists() and not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        path = path / "model"  # a dcr stage directory (refine, align, steer export) holds its model here
    if path.exists():
        if not (path / "config.json").exists():
            if (path / "manifest.json").is_file():
                raise ModelError(
                    f"{path}: a dcr stage directory without its weights (an archive from `dcr archive`, or stages "
                    "copied back from one). Fix: delete that stage directory so `dcr run` recomputes it"
                )
            raise ModelError(
                f"{path}: not a Hugging Face model directory (no config.json). "
                "Fix: pass an embedded name, a directory written by save_pretrained, or a hub id"
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        raise ModelError(
            f"{name_or_path!r}: no such directory, and not an embedded model ({', '.join(EMBEDDED)}) "
            "or a hub id of the form owner/name"
        )
    check_hub_model(name_or_path)
    return name_or_path


@functools.cache
def hub_reachable(timeout: float = 3.0) -> str | None:
    """None when the Hugging Face Hub answers a TCP connect within ``timeout``, else the reason (checked once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or type(exc).__name__})"
    return None


def check_hub_model(repo_id: str) -> None:
    """A hub id must be in the local Hugging Face cache or the hub reachable: fail in seconds, not after retries."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    reason = hub_reachable()
    if reason is not None:
        raise ModelError(f"hub model {repo_id!r} is not in the local cache and the hub is unavailable ({reason}). "
                         f"Fix: use an embedded model ({', '.join(EMBEDDED)}) or a local model directory")


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


def pick_dtype(dtype: str = "auto", device: str | None = None) -> torch.dtype:
    """bf16 on GPU or on a CPU with AMX/avx512_bf16, else fp32; ``dtype`` overrides."""
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if dtype != "auto":
        if dtype not in table:
            raise ModelError(f"dtype {dtype!r} not understood. Fix: use auto, fp32, bf16 or fp16")
        return table[dtype]
    device = pick_device(device or "auto")  # "auto" must mean the real device here too, not CPU
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def pick_device(device: str = "auto") -> str:
    """The torch device of ``device``; ``shard`` (a model split by ``device_map="auto"``) starts on cuda or cpu."""
    if device not in ("auto", "shard"):
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_attention(device: str) -> str | None:
    """Attention kernel for training: ``eager`` on CPU, where PyTorch's SDPA backward with a padding or packing
    mask measured 10-25 % slower per step on SmolLM2 (BENCHMARKS.md); the model's default (SDPA) elsewhere."""
    return "eager" if pick_device(device) == "cpu" else None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name_or_path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(
    name_or_path: str,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    attention: str | None = None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) in eval mode on the chosen device and dtype (``attention``: an
    ``attn_implementation``, default the model's)."""
    from transformers import AutoModelForCausalLM

    ref = resolve_model(name_or_path)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            weights_for(ref, dt), dtype=dt, trust_remote_code=trust_remote_code, attn_implementation=attention,
            device_map="auto" if device == "shard" else None,  # split over every visible GPU (accelerate)
        )
    except OSError as exc:
        raise ModelError(
            f"could not load {name_or_path!r}: {exc}. Fix: if this is a hub id, check the network "
            "(or set HF_HUB_OFFLINE=1 with a cached copy); otherwise pass a local directory"
        ) from None
    if device != "shard":
        model.to(dev)
    model.eval()
    return contiguous_head(model), load_tokenizer(ref, trust_remote_code)


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].contiguous(), *args[1:])


# dcr's own forward hooks that change no value and need no whole batch: dcr.generate.fast_path ignores them
BENIGN_HOOKS = (_contiguous_input,)


def contiguous_head(model: Any) -> Any:
    """Give the LM head a contiguous input. Generation and prefix scoring keep only the last position
    (``logits_to_keep=1``), a strided ``[B, 1, H]`` view; under CPU autocast torch then multiplies it with the head
    by ``bmm`` on a copy of the ``[V, H]`` head for every row (1.4 GB for 24 SmolLM2 prompts, a third of a
    tracking pass). Copying the ``[B, 1, H]`` view instead costs nothing and gives the same logits."""
    head = model.get_output_embeddings()
    if head is not None and _contiguous_input not in head._forward_pre_hooks.values():
        head.register_forward_pre_hook(_contiguous_input)
    return model


def num_layers(model: Any) -> int:
    """Decoder blocks of a loaded model, or of a model config (``AutoConfig``)."""
    config = getattr(model, "config", model)
    cfg = getattr(config, "text_config", None) or config
    return int(cfg.num_hidden_layers)


def model_config(name_or_path: str) -> Any:
    """The ``AutoConfig`` of a model, without loading its weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve_model(name_or_path))


def get_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder blocks of any HF causal LM (no per-family code): the ModuleList of num_layers."""
    n = num_layers(model)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n and "layers" in name.split(".")[-1]:
            return module
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ModelError(f"could not find the {n} decoder layers of {type(model).__name__}")


def own_storage(model: Any) -> Any:
    """Give every parameter its own memory. transformers loads a safetensors file as views of one memory map per
    shard, so freeing or recasting a single weight frees nothing until every tensor of its shard is gone: at 1.5B,
    refine's bf16 cast of the frozen tail left the fp32 tail resident (+2.6 GB). Tied parameters stay tied (the
    same Parameter object gets the copy)."""
    with torch.no_grad():
        for param in model.parameters():  # unique parameters: a tied weight is visited once
            param.data = param.data.clone()
    return model
