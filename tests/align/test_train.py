"""LoRA SFT on a tiny model: masking, which parameters move, outputs, tracking CSV, resume after a kill."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from dcr.align import AlignConfig, align
from dcr.align.train import IGNORE, Collator, encode
from dcr.models import load_model
from dcr.prompts import format_prompt, response_suffix


def _cfg(tiny_dir: Path, data_dir: Path, tmp_path: Path, **kw: Any) -> AlignConfig:
    gen = tmp_path / "general.jsonl"
    gen.write_text("".join(json.dumps({"prompt": f"add {i} and 1", "response": f"{i + 1}"}) + "\n" for i in range(8)))
    base: dict[str, Any] = dict(model=str(tiny_dir), data_dir=str(data_dir), general_file=str(gen), n_general=8,
                                n_safety=8, epochs=2, micro_batch=4, grad_accum=1, max_length=96, lr=5e-3,
                                track_every=0, save_every=2, dtype="fp32", teacher_max_new_tokens=4)
    base.update(kw)
    return AlignConfig(**base)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_encode_masks_prompt_tokens(tiny: tuple) -> None:
    _, tok = tiny
    row = {"prompt": "How are you?", "response": "Fine, thanks.", "complete": True}
    n_prompt = len(tok(format_prompt(tok, row["prompt"]), add_special_tokens=False)["input_ids"])
    enc = encode(tok, row, "auto", 512)
    assert enc is not None and set(enc["labels"][:n_prompt]) == {IGNORE}
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert tok.decode(enc["input_ids"][n_prompt:]) == "Fine, thanks." + response_suffix(tok)
    full = encode(tok, row, "auto", 512, loss_on_prompt=True)
    assert full is not None and full["labels"] == full["input_ids"]
    cut = encode(tok, {**row, "complete": False}, "auto", 512)
    assert cut is not None and tok.decode(cut["input_ids"][n_prompt:]) == "Fine, thanks."
    assert encode(tok, row, "auto", n_prompt) is None  # nothing of the response survives truncation
    batch = Collator(tok.pad_token_id)([enc, cut])
    assert batch["labels"][1, -1] == IGNORE and batch["attention_mask"][1, -1] == 0


class Snapshot(TrainerCallback):
    """Copies of LoRA and base parameters at the start and end of training."""

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self.start = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        self.end = {n: p.detach().clone() for n, p in model.named_parameters()}


def test_align_trains_lora_only_and_writes_outputs(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    snap = Snapshot()
    cfg = _cfg(tiny_dir, data_dir, tmp_path, track_every=2, track_n=2, track_max_new_tokens=4)
    out = align(cfg, tmp_path / "out", callbacks=[snap])
    lora = [n for n in snap.start if "lora_" in n]
    base = [n for n in snap.start if "lora_" not in n]
    assert any(".mlp." in n for n in lora) and any("_proj" in n and ".self_attn." in n for n in lora)
    assert all(not torch.equal(snap.start[n], snap.end[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(snap.start[n], snap.end[n]) for n in base)
    for sub in ("adapter/adapter_config.json", "model/config.json", "model/model.safetensors", "train_log.csv"):
        assert (out / sub).exists(), sub
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["summary"]["n_total"] == 16
    # the merged model differs from the base and loads like any other dcr model
    merged, _ = load_model(str(out), dtype="fp32")
    orig, _ = load_model(str(tiny_dir), dtype="fp32")
    diff = [not torch.equal(a, b) for a, b in zip(merged.state_dict().values(), orig.state_dict().values())]
    assert any(diff)
    track = _rows(out / "tracking.csv")
    assert list(track[0]) == ["step", "group", "refusal_prob", "refusal_rate", "n"]
    steps = sorted({int(r["step"]) for r in track})
    assert steps == [0, 2, 4, 6, 8] and {r["group"] for r in track} == {"toxic", "seemingly_toxic", "normal"}
    assert all(0.0 <= float(r["refusal_rate"]) <= 1.0 and float(r["refusal_prob"]) > 0 for r in track)
    assert align(cfg, out) == out and json.loads((out / "manifest.json").read_text()) == manifest  # skipped


class Boom(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"killed at step {self.at}")


def test_killed_run_resumes_from_checkpoint(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_dir, data_dir, tmp_path, epochs=3)  # 16 pairs / 4 = 4 steps per epoch, 12 in all
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        align(cfg, out, callbacks=[Boom(5)])
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    seen: list[int] = []

    class Steps(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen.append(state.global_step)

    align(cfg, out, callbacks=[Steps()])
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary["resumed_from"].endswith("checkpoint-4") and summary["global_step"] == 12
    assert seen == list(range(5, 13))
    log_steps = [int(r["step"]) for r in _rows(out / "train_log.csv")]
    assert log_steps == sorted(set(log_steps)) and log_steps[-1] == 12


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _losses(out: Path) -> list[tuple[int, str]]:
    return [(int(r["step"]), r["loss"]) for r in _rows(out / "train_log.csv") if r.get("loss")]


def test_same_seed_same_curve_and_weights_and_resume_matches(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_dir, data_dir, tmp_path, epochs=3)
    a, b = align(cfg, tmp_path / "a"), align(cfg, tmp_path / "b")
    assert _losses(a) == _losses(b) and len(_losses(a)) == 12
    wa, wb = _adapter(a), _adapter(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(KeyboardInterrupt):
        align(cfg, tmp_path / "c", callbacks=[Boom(5)])
    c = align(cfg, tmp_path / "c")
    # the Trainer restores weights, optimizer, scheduler and RNG from checkpoint-4: same curve and weights
    assert [float(v) for _, v in _losses(c)] == pytest.approx([float(v) for _, v in _losses(a)], abs=1e-5)
    wc = _adapter(c)
    assert all(torch.allclose(wc[k], wa[k], atol=1e-5) for k in wa)


def test_label_loss_equals_the_models_own_loss(tiny_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dcr.align.train import label_loss
    from dcr.models import load_tokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    tok = load_tokenizer(str(tiny_dir))
    rows = [{"prompt": "say hi", "response": "hi there"}, {"prompt": "count to three please", "response": "1 2 3"}]
    batch = Collator(tok.pad_token_id)([encode(tok, r, "auto", 64) for r in rows])
    ours, theirs = label_loss(model, batch), model(**batch).loss
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert float(label_loss(model, batch, n)) == pytest.approx(float(theirs), rel=1e-6)
    assert float(label_loss(model, batch, 2 * n)) == pytest.approx(float(theirs) / 2, rel=1e-6)


def test_bf16_base_loss_and_gradients_match_fp32(tiny_dir: Path) -> None:
    """A bf16 base (``base_dtype: auto``) runs LoRA under autocast without peft's fp32 input casts; its loss and
    LoRA gradients stay within bf16 rounding of the all-fp32 path (the adapters themselves stay fp32)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from dcr.align.train import label_loss
    from dcr.models import load_tokenizer

    tok = load_tokenizer(str(tiny_dir))
    rows = [{"prompt": "say hi", "response": "hi there"}, {"prompt": "count to three please", "response": "1 2 3"}]
    batch = Collator(tok.pad_token_id)([encode(tok, r, "auto", 64) for r in rows])
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=dtype),
                               LoraConfig(r=4, init_lora_weights=False, target_modules="all-linear",
                                          task_type="CAUSAL_LM"))
        loss = label_loss(model, batch)
        loss.backward()
        grads = [p.grad.float() for n, p in model.named_parameters() if p.requires_grad]
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
        out[dtype] = (float(loss), torch.cat([g.flatten() for g in grads]))
    assert out[torch.bfloat16][0] == pytest.approx(out[torch.float32][0], rel=2e-2)
    g32, g16 = out[torch.float32][1], out[torch.bfloat16][1]
    assert float(torch.nn.functional.cosine_similarity(g32, g16, dim=0)) > 0.99


def test_gradient_checkpointing_gives_the_same_curve(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_dir, data_dir, tmp_path, epochs=1, lora_dropout=0.0)
    plain = align(cfg, tmp_path / "plain")
    ckpt = align(dataclasses.replace(cfg, gradient_checkpointing=True), tmp_path / "ckpt")
    assert [float(v) for _, v in _losses(ckpt)] == pytest.approx([float(v) for _, v in _losses(plain)], abs=1e-5)


def test_save_dtype(tiny_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from dcr.models import saved_dtype

    assert saved_dtype("auto", torch.bfloat16) == saved_dtype("auto", torch.float16) == torch.bfloat16
    assert saved_dtype("auto", torch.float32) == torch.float32 and saved_dtype("fp32", torch.bfloat16) == torch.float32
    out = align(_cfg(tiny_dir, data_dir, tmp_path, epochs=1, save_dtype="bf16"), tmp_path / "bf16")
    assert json.loads((out / "model" / "config.json").read_text())["dtype"] == "bfloat16"


def test_checkpointing_args_use_the_installed_name_without_a_deprecation_warning(tmp_path: Path) -> None:
    import warnings

    from transformers import TrainingArguments

    from dcr.align.train import _checkpointing_args

    kwargs = _checkpointing_args(TrainingArguments, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **kwargs)
    assert args.gradient_checkpointing is True
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}

    @dataclasses.dataclass
    class OldArgs:
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    assert _checkpointing_args(OldArgs, False) == {
        "gradient_checkpointing": False, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
