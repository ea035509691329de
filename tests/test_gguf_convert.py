"""Streaming GGUF conversion: the same tensors as transformers' own ``from_pretrained(gguf_file=)``, shards with
an index, and re-tying to the more precise of the two embedding copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gguf import GGUFReader, dequantize
from gguf_tiny import write_tiny_qwen2_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

from dcr.gguf_convert import bits_per_weight, convert_gguf, tie_choice

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reference(gguf: Path) -> AutoModelForCausalLM:
    return AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)


def test_streamed_conversion_equals_transformers(tmp_path: Path) -> None:
    gguf = write_tiny_qwen2_gguf(tmp_path / "m.gguf")
    out = tmp_path / "hf"
    out.mkdir()
    done = convert_gguf(gguf, out, retie=False, shard_bytes=20_000)  # tiny shards: several files and an index
    assert done["retie"] is None and done["tensors"] == 27
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    ours = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ref = _reference(gguf)
    assert not ours.config.tie_word_embeddings and ours.config.architectures == ["Qwen2ForCausalLM"]
    theirs = ref.state_dict()
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs[name]), name
    tok, ref_tok = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    assert tok("the cat")["input_ids"] == ref_tok("the cat")["input_ids"] and tok.chat_template == ref_tok.chat_template


@pytest.mark.parametrize(("embd", "head", "kept"), [
    ("Q8_0", "F16", "output.weight"), ("F16", "Q8_0", "token_embd.weight"), ("Q8_0", "Q8_0", "output.weight"),
    ("F32", "F16", "token_embd.weight")])
def test_retie_keeps_the_more_precise_copy(tmp_path: Path, embd: str, head: str, kept: str) -> None:
    gguf = write_tiny_qwen2_gguf(tmp_path / "m.gguf", embd_type=embd, head_type=head)
    reader = GGUFReader(str(gguf))
    choice = tie_choice(reader)
    assert choice is not None and choice["kept"] == kept
    out = tmp_path / "hf"
    out.mkdir()
    assert convert_gguf(gguf, out, retie=True)["retie"] == choice
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    tensor = next(t for t in reader.tensors if t.name == kept)
    expected = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy())
    assert torch.equal(model.model.embed_tokens.weight, expected)
    # every other weight is what transformers converts
    ref = _reference(gguf).state_dict()
    for name, value in model.state_dict().items():
        if "embed_tokens" not in name and "lm_head" not in name:
            assert torch.equal(value, ref[name]), name


def test_bits_per_weight_of_the_qwen_types() -> None:
    from gguf import GGMLQuantizationType as Q

    assert [bits_per_weight(t) for t in (Q.F32, Q.F16, Q.Q8_0, Q.Q6_K, Q.Q5_0, Q.Q4_K)] == [32, 16, 8.5, 6.5625,
                                                                                                5.5, 4.5]


def test_no_retie_without_two_copies(tmp_path: Path) -> None:
    class Reader:
        tensors = []

    assert tie_choice(Reader()) is None
