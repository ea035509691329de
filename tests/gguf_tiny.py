"""A tiny Qwen2 GGUF (2 blocks, hidden 32, byte-level BPE tokenizer, chat template) written with gguf-py, so
pull and conversion run end to end in CI without the real 0.5B/1.5B files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, quants

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 32, 64, 2, 4, 2
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet: the 256 base tokens of a byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tiny_qwen2_gguf(path: Path, embd_type: str = "Q8_0", head_type: str = "F16", seed: int = 0) -> Path:
    """Write the GGUF; ``embd_type``/``head_type`` (F32, F16, Q8_0) are the storage types of the two embedding
    copies, which hold the same matrix plus a little noise, as a re-quantised tied matrix would."""
    rng = np.random.default_rng(seed)
    tokens = _byte_tokens() + ["Ġt", "he"] + list(SPECIALS)
    vocab = len(tokens)
    w = GGUFWriter(str(path), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (vocab - len(SPECIALS)) + [3] * len(SPECIALS))
    w.add_token_merges(["Ġ t", "h e"])
    w.add_eos_token_id(vocab - 1)
    w.add_pad_token_id(vocab - 3)
    w.add_bos_token_id(vocab - 3)
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)

    def add(name: str, arr: np.ndarray, kind: str = "F32") -> None:
        arr = arr.astype(np.float32)
        if kind == "F16":
            w.add_tensor(name, arr.astype(np.float16))
        elif kind == "Q8_0":
            q = GGMLQuantizationType.Q8_0
            w.add_tensor(name, quants.quantize(arr, q), raw_shape=quants.quant_shape_to_byte_shape(arr.shape, q),
                         raw_dtype=q)
        else:
            w.add_tensor(name, arr)

    def mat(rows: int, cols: int) -> np.ndarray:
        return rng.normal(0, 0.05, (rows, cols))

    emb = mat(vocab, HIDDEN)
    add("token_embd.weight", emb, embd_type)
    head_dim = HIDDEN // HEADS
    for i in range(LAYERS):
        add(f"blk.{i}.attn_norm.weight", 1 + rng.normal(0, 0.01, HIDDEN))
        add(f"blk.{i}.attn_q.weight", mat(HIDDEN, HIDDEN))
        add(f"blk.{i}.attn_q.bias", rng.normal(0, 0.01, HIDDEN))
        add(f"blk.{i}.attn_k.weight", mat(KV_HEADS * head_dim, HIDDEN))
        add(f"blk.{i}.attn_k.bias", rng.normal(0, 0.01, KV_HEADS * head_dim))
        add(f"blk.{i}.attn_v.weight", mat(KV_HEADS * head_dim, HIDDEN))
        add(f"blk.{i}.attn_v.bias", rng.normal(0, 0.01, KV_HEADS * head_dim))
        add(f"blk.{i}.attn_output.weight", mat(HIDDEN, HIDDEN))
        add(f"blk.{i}.ffn_norm.weight", 1 + rng.normal(0, 0.01, HIDDEN))
        add(f"blk.{i}.ffn_gate.weight", mat(FFN, HIDDEN))
        add(f"blk.{i}.ffn_up.weight", mat(FFN, HIDDEN))
        add(f"blk.{i}.ffn_down.weight", mat(HIDDEN, FFN))
    add("output_norm.weight", 1 + rng.normal(0, 0.01, HIDDEN))
    add("output.weight", emb + rng.normal(0, 0.002, emb.shape), head_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
