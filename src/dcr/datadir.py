"""Which data directory dcr reads, and why: the one place that resolves it.

Precedence, highest first:

1. an explicit directory: ``--data-dir DIR`` on a verb, or ``data_dir:`` in a config file;
2. ``$DCR_DATA_DIR`` (when set and not empty);
3. the copy vendored inside the package, ``dcr/data/vendored`` (found by ``pip install -e .`` and by a plain
   ``pip install``; its files are checked with ``dcr data verify``).

Stage keys hash the resolved directory (``dcr.fingerprint.stage_key``) and stage manifests record the sha256 of
every file a stage read, so switching directories reruns a stage rather than reusing it silently. This module
imports nothing from dcr, so the fingerprinting code can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

VENDORED = Path(__file__).resolve().parent / "data" / "vendored"
MANIFEST = "SHA256SUMS"  # sha256sum format, in VENDORED; lists every vendored file but the README


def data_dir_source(explicit: str | Path | None = None) -> tuple[Path, str]:
    """(directory, what chose it: ``--data-dir`` | ``DCR_DATA_DIR`` | ``vendored``); the path is not checked."""
    if explicit:
        return Path(explicit).expanduser(), "--data-dir"
    env = os.environ.get("DCR_DATA_DIR")
    if env:
        return Path(env).expanduser(), "DCR_DATA_DIR"
    return VENDORED, "vendored"
