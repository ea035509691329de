"""SCANS (Cao et al. 2025): classify each query from its hidden states, then steer away from refusal if benign.

Directions, from last-prompt-token activations, per block ``l``:

- steering vectors ``v_l = unit(mean(harmful) - mean(harmless))`` for the steered (middle) blocks;
- for the classifier, the same direction ``d_l`` and the midpoint ``m_l = (mean(harmful) + mean(harmless)) / 2``
  at the classification blocks; a query's score is ``mean_l cos(h_l - m_l, d_l)`` over those blocks, ``h_l`` its
  last-prompt-token state; it is *harmful* when the score >= ``threshold`` (calibrated on the extraction prompts).

(The SCANS code compares "transition vectors" between the instruction end and an appended "Sure" token with a
fixed cosine threshold of 0.75; this implementation uses the simpler hidden-state test with a calibrated
threshold, see docs/steer.md.)

Hooks (``ScansSteerer.apply``):

- a forward pre-hook on the model detects the *prompt pass* (the KV cache is empty) and runs one extra,
  unsteered forward of the same inputs that stops after the last classification block; the per-row decision
  is kept for all following decoding steps of that ``generate`` call;
- forward hooks on the steered blocks add ``sign * multiplier * v_l`` with sign ``-1`` for benign rows and
  ``+1`` (``add_for_harmful``) or ``0`` for harmful rows, as SCANS does from the instruction end on: on the
  prompt pass only at each row's last prompt token, then at every generated token.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from dcr.errors import ModelError
from dcr.hooks import hidden_of, hooks, replace_hidden
from dcr.models import get_layers
from dcr.steer.directions import capture_last, encode, last_index


def score_states(states: torch.Tensor, direction: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
    """Mean over classification blocks of ``cos(h - mid, direction)``: ``[L, N, d]`` -> ``[N]``."""
    centred = states.float() - mid.float().unsqueeze(1)
    return F.cosine_similarity(centred, direction.float().unsqueeze(1).expand_as(centred), dim=-1).mean(0)


def calibrate(harmful: torch.Tensor, harmless: torch.Tensor) -> tuple[float, float]:
    """The threshold with the best balanced accuracy on the two score sets, and that accuracy."""
    values = torch.cat([harmful, harmless]).sort().values
    cands = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
    best_t, best_acc = float(cands[0]), -1.0
    for t in cands.tolist():
        acc = 0.5 * (float((harmful >= t).float().mean()) + float((harmless < t).float().mean()))
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


def _past_length(kwargs: dict[str, Any]) -> int:
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        return 0
    if hasattr(cache, "get_seq_length"):
        return int(cache.get_seq_length())
    raise ModelError(f"SCANS hooks cannot read the KV cache of type {type(cache).__name__}. "
                     "Fix: use a transformers Cache object (the default in generate)")


@dataclass
class ScansSteerer:
    """Hooks for SCANS steering; ``apply(model)`` installs them for a ``with`` block."""

    vectors: torch.Tensor  # [len(layers), d], unit
    layers: list[int]
    cls_direction: torch.Tensor  # [len(classify_layers), d], unit
    cls_mid: torch.Tensor  # [len(classify_layers), d]
    classify_layers: list[int]
    threshold: float
    multiplier: float
    add_for_harmful: bool = True
    method: str = "scans"
    decisions: list[bool] = field(default_factory=list)  # harmful? per row of the latest prompt pass
    last_scores: list[float] = field(default_factory=list)  # their scores

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        return score_states(states, self.cls_direction, self.cls_mid)

    def classify(self, model: Any, tok: Any, prompts: Sequence[str], template: str = "auto",
                 batch_size: int = 16) -> list[bool]:
        """Harmful (True) or not for each prompt, as the hooks decide on the prompt pass."""
        out: list[bool] = []
        for start in range(0, len(prompts), batch_size):
            enc = encode(tok, prompts[start:start + batch_size], template)
            out += (self.scores(capture_last(model, enc, self.classify_layers)) >= self.threshold).tolist()
        return out

    @contextmanager
    def apply(self, model: Any) -> Iterator[ScansSteerer]:
        """Install the classifying pre-hook and the steering hooks; they are removed on exit (also on error)."""
        blocks = get_layers(model)
        top = max(self.layers + self.classify_layers)
        if top >= len(blocks):
            raise ModelError(f"SCANS block {top} out of range: the model has blocks 0..{len(blocks) - 1}")
        state: dict[str, Any] = {"busy": False, "sign": None, "last": None, "prompt": False}

        def pre(_m: Any, args: Any, kwargs: dict[str, Any]) -> None:
            if state["busy"]:
                return
            if _past_length(kwargs) > 0:
                if state["sign"] is None:
                    raise ModelError("SCANS hooks saw a decoding step before any prompt pass")
                state["prompt"] = False
                return
            state.update(self._decide(model, args, kwargs, state))

        mods = [blocks[i] for i in self.layers]
        fns = [self._steer_fn(j, state) for j in range(len(self.layers))]
        with hooks([model], [pre], pre=True, with_kwargs=True), hooks(mods, fns):
            yield self

    def _decide(self, model: Any, args: Any, kwargs: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        ids = kwargs.get("input_ids", args[0] if args else None)
        key = "input_ids" if ids is not None else "inputs_embeds"
        x = ids if ids is not None else kwargs.get("inputs_embeds")
        if x is None:
            raise ModelError("SCANS hooks need input_ids or inputs_embeds in the model call")
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 2:
            mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        inputs = {key: x, "attention_mask": mask}
        if kwargs.get("position_ids") is not None:
            inputs["position_ids"] = kwargs["position_ids"]
        state["busy"] = True
        try:
            scores = self.scores(capture_last(model, inputs, self.classify_layers))
        finally:
            state["busy"] = False
        harmful = scores >= self.threshold
        self.last_scores, self.decisions = scores.tolist(), harmful.tolist()
        sign = torch.where(harmful, torch.tensor(1.0 if self.add_for_harmful else 0.0), torch.tensor(-1.0))
        return {"sign": sign, "last": last_index(mask).cpu(), "prompt": True}

    def _steer_fn(self, j: int, state: dict[str, Any]) -> Any:
        def fn(_m: Any, _a: Any, out: Any) -> Any:
            if state["busy"]:
                return None
            h = hidden_of(out)
            sign = state["sign"]
            if sign is None or sign.shape[0] != h.shape[0]:
                raise ModelError(f"SCANS hooks: batch of {h.shape[0]} rows but {0 if sign is None else sign.shape[0]}"
                                 " decisions (beam search and batch changes inside generate are not supported)")
            delta = (self.multiplier * sign.unsqueeze(-1) * self.vectors[j].float()).to(device=h.device, dtype=h.dtype)
            if not state["prompt"]:
                return replace_hidden(out, h + delta.unsqueeze(1))
            rows = torch.arange(h.shape[0], device=h.device)
            cols = state["last"].to(h.device)
            new = h.clone()
            new[rows, cols] = h[rows, cols] + delta
            return replace_hidden(out, new)

        return fn
