"""One parser per kind of spec string, each rejecting an empty or missing part with a one-line ConfigError.

- ``hf:OWNER/NAME[:SPLIT[:COLUMN[:LABEL]]]``: a prompt set from the Hugging Face Hub (:func:`parse_hub`);
- ``http:BASE_URL[#MODEL_NAME]``: an OpenAI-compatible server (:func:`parse_http`), for judges and annotators;
- ``local:MODEL``: a local annotator model (:func:`parse_annotator`).
Judge specs (``keyword``, ``prefix``, ``guard:MODEL``, ``http:...``) are parsed by ``dcr.judges.base.parse_spec``,
which uses :func:`parse_http` for its ``http`` part.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcr.errors import ConfigError

LABELS = ("safe", "unsafe")


@dataclass(frozen=True)
class HubSpec:
    hub_id: str
    split: str = "train"
    column: str = "prompt"
    label: str = "safe"


def parse_hub(spec: str) -> HubSpec:
    """``hf:OWNER/NAME[:SPLIT[:COLUMN[:LABEL]]]``; every part given must be non-empty, LABEL safe or unsafe."""
    form = "hf:OWNER/NAME[:SPLIT[:COLUMN[:LABEL]]]"
    parts = spec.strip().removeprefix("hf:").split(":")
    if len(parts) > 4:
        raise ConfigError(f"hub spec {spec!r} has {len(parts)} parts after hf:. Fix: use {form}")
    owner, slash, name = parts[0].partition("/")
    if not (owner.strip() and slash and name.strip()) or "/" in name:
        raise ConfigError(f"hub spec {spec!r}: the dataset id must be OWNER/NAME, got {parts[0]!r}. Fix: use {form}")
    empty = [("SPLIT", "COLUMN", "LABEL")[i - 1] for i, p in enumerate(parts) if i and not p.strip()]
    if empty:
        raise ConfigError(f"hub spec {spec!r}: {empty[0]} is empty. Fix: give it, or leave it out with its colon "
                          f"({form})")
    out = HubSpec(parts[0].strip(), *(p.strip() for p in parts[1:]))
    if out.label not in LABELS:
        raise ConfigError(f"hub spec {spec!r}: LABEL {out.label!r} is not safe or unsafe. Fix: use {form}")
    return out


def parse_http(arg: str, what: str) -> tuple[str, str | None]:
    """``BASE_URL[#MODEL_NAME]`` (after ``http:``) -> (base_url, model name or None); both parts non-empty."""
    base_url, hash_, model = (p.strip() for p in arg.partition("#"))
    if not base_url:
        raise ConfigError(f"{what} http:{arg!r}: BASE_URL is empty. Fix: use http:BASE_URL[#MODEL_NAME]")
    if hash_ and not model:
        raise ConfigError(f"{what} http:{arg!r}: MODEL_NAME after # is empty. Fix: name the model, or drop the #")
    return base_url, model or None


def parse_annotator(spec: str) -> tuple[str, str, str | None]:
    """``http:BASE_URL[#MODEL_NAME]`` -> ("http", url, model) or ``local:MODEL`` -> ("local", model, None)."""
    kind, _, arg = spec.strip().partition(":")
    if kind == "http":
        return ("http", *parse_http(arg, "annotator"))
    if kind == "local" and arg.strip():
        return "local", arg.strip(), None
    raise ConfigError(f"annotator {spec!r} not understood. Fix: use http:BASE_URL[#MODEL_NAME] or local:MODEL")
