"""Convert a GGUF file to a safetensors HF directory one tensor at a time, in bounded memory.

``from_pretrained(gguf_file=...)`` dequantises every tensor of the file into one dict before it builds the model,
so converting a 1.5B GGUF held about 2x its fp32 size at once (BENCHMARKS.md, "Pull"). Here transformers still
does every model-specific step (config and tokenizer from the GGUF metadata, the GGUF -> HF name map, the
per-architecture tensor processors); dcr only streams: dequantise one tensor, process it, append it to the current
safetensors shard, flush shards of ``shard_bytes``. Peak memory is one shard plus one tensor.

Tied embeddings: a GGUF stores ``output.weight`` separately even when the original model ties it to
``token_embd.weight`` (Qwen2.5 <= 3B), often quantised at a different precision. ``retie=True`` keeps only the
more precise copy (more bits per weight; ties go to ``output.weight``), writes it as the input embedding and sets
``tie_word_embeddings: true``, as the original config does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcr.errors import ModelError

EMBED, HEAD = "token_embd.weight", "output.weight"


@dataclass
class _ShardWriter:
    """Accumulates tensors and writes ``model-NNNNN.safetensors`` shards of at most ``limit`` bytes."""

    out: Path
    limit: int
    pending: dict[str, torch.Tensor] = field(default_factory=dict)
    pending_bytes: int = 0
    files: list[list[str]] = field(default_factory=list)
    total: int = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.limit:
            self.flush()
        self.pending[name] = tensor.contiguous()
        self.pending_bytes += size
        self.total += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        save_file(self.pending, str(self.out / f"part-{len(self.files):05d}.safetensors"), metadata={"format": "pt"})
        self.files.append(list(self.pending))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> None:
        """Name the shards as ``save_pretrained`` does, and write the index when there is more than one."""
        self.flush()
        n = len(self.files)
        weight_map = {}
        for i, names in enumerate(self.files):
            final = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            (self.out / f"part-{i:05d}.safetensors").rename(self.out / final)
            weight_map.update({name: final for name in names})
        if n > 1:
            index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
            (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def bits_per_weight(tensor_type: Any) -> float:
    """Storage bits per weight of a GGML tensor type (F32 32, Q8_0 8.5, Q6_K 6.5625, Q4_K 4.5, ...)."""
    from gguf import GGML_QUANT_SIZES

    block, nbytes = GGML_QUANT_SIZES[tensor_type]
    return nbytes * 8 / block


def tie_choice(reader: Any) -> dict[str, Any] | None:
    """Which of the two embedding copies is kept when re-tying (None when the file has only one)."""
    types = {t.name: t.tensor_type for t in reader.tensors if t.name in (EMBED, HEAD)}
    if len(types) < 2:
        return None
    bits = {name: bits_per_weight(types[name]) for name in (EMBED, HEAD)}
    keep = HEAD if bits[HEAD] >= bits[EMBED] else EMBED
    return {"kept": keep, "dropped": EMBED if keep == HEAD else HEAD,
            "types": {name: types[name].name for name in types}, "bits_per_weight": bits}


def _processor_and_map(path: Path, parsed_config: dict[str, Any], config: Any, reader: Any) -> tuple[Any, dict]:
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        read_field,
    )

    arch = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=parsed_config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    config.architectures = [type(skeleton).__name__]
    return processor, get_gguf_hf_weights_map(skeleton, processor)


def convert_gguf(path: Path, out: Path, retie: bool = False, shard_bytes: int = 1 << 30,
                 advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write the GGUF ``path`` as an fp32 safetensors HF directory into the (empty) directory ``out``.

    ``advance(n)`` is called after each of the file's tensors (a progress bar). Returns what was done: the
    re-tie choice (None when nothing was re-tied) and the number of tensors written.
    """
    from gguf import GGUFReader, dequantize
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    reader = GGUFReader(str(path))
    parsed = load_gguf_checkpoint(str(path), return_tensors=False)  # metadata only: config and tokenizer
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    processor, mapping = _processor_and_map(path, parsed["config"], config, reader)
    choice = tie_choice(reader) if retie else None
    writer = _ShardWriter(out, shard_bytes)
    written = 0
    for tensor in reader.tensors:
        if advance is not None:
            advance(1)
        name = tensor.name
        if choice is not None and name == choice["dropped"]:
            continue
        side: dict[str, Any] = {"tensors": {}}
        result = processor.process(weights=dequantize(tensor.data, tensor.tensor_type), name=name,
                                   tensor_key_mapping=mapping, parsed_parameters=side)
        items = dict(side["tensors"])  # some processors store tensors themselves (GPT-2's lm_head)
        if result.name is not None and result.name in mapping:
            hf_name = mapping[EMBED] if choice is not None and name == HEAD else mapping[result.name]
            # a copy: memmapped F32 tensors are read-only
            items[hf_name] = torch.from_numpy(np.array(result.weights, dtype=np.float32))
        for hf_name, value in items.items():
            writer.add(hf_name, value.to(torch.float32))
            written += 1
    writer.finish()
    if not written:
        raise ModelError(f"{path}: no tensor of this GGUF maps to a {config.model_type} weight; nothing converted")
    if choice is not None:
        _set_tied(config)
    config.dtype = torch.float32
    config.save_pretrained(out)
    GenerationConfig.from_model_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(out)
    return {"retie": choice, "tensors": written}


def _set_tied(config: Any) -> None:
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "tie_word_embeddings"):
            cfg.tie_word_embeddings = True
