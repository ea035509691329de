"""Row types shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptRecord:
    """One prompt. ``label`` is ``safe`` (should be answered) or ``unsafe`` (should be refused)."""

    id: str
    prompt: str
    label: str
    type: str = ""
    source: str = ""


@dataclass(frozen=True)
class Pair:
    """An instruction with a reference response (SFT pair or reference output)."""

    id: str
    prompt: str
    response: str
    source: str = ""
