"""What a stage's result depends on, as one key: config, upstream stages, the data it read, and the code.

- :func:`stage_key` hashes the config, the fingerprints of the upstream models (:func:`model_fingerprint`: the
  stage key of a dcr stage directory, size + mtime of a plain local model directory's files, or the name of an
  embedded or hub model), the resolved data directory (``--data-dir``, ``$DCR_DATA_DIR`` or the vendored copy;
  ``dcr.datadir``) and the dcr version. A changed value of any of them gives a new key, so the finished stage
  is not reused.
- The data files a stage reads are noted while it runs (:func:`track_reads`; the readers in ``dcr.data`` call
  :func:`note_read`) and stored in its manifest with :func:`file_fingerprint`; :func:`files_unchanged` checks
  them again before a finished stage is skipped, so an edited data file reruns the stage.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import dcr
from dcr.datadir import data_dir_source

SMALL_FILE = 8 << 20  # files up to this size are hashed (sha256); larger ones are compared by size and mtime
MODEL_FILES = (".safetensors", ".json", ".bin", ".model", ".txt", ".gguf")
_READS: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("dcr_reads", default=None)


def code_version() -> str:
    """The dcr version that enters every stage key (an upgrade reruns stages instead of reusing them). The source
    itself (:func:`source_hash`) does not enter keys, so a long run resumes across a fix elsewhere in the code; it is
    recorded in every manifest, and a stage reused under other source says so (``dcr.stage.run_stage``)."""
    return dcr.__version__


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """A 16-hex-digit sha256 of the installed dcr package's Python source (relative paths and contents): which code
    built a stage, whatever the version number says."""
    root = Path(dcr.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def short_hash(payload: Any) -> str:
    """A 16-hex-digit sha256 of ``payload`` as canonical JSON."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def resolved_data_dir(explicit: str | None) -> str:
    """The data directory a stage would read (``dcr.datadir``: explicit, ``$DCR_DATA_DIR``, vendored), absolute."""
    return str(data_dir_source(explicit)[0].resolve())


def read_stage_key(path: str | Path | None) -> str | None:
    """The key of the finished dcr stage that ``path`` (a stage directory or its ``model/``) belongs to."""
    from dcr.stage import read_manifest

    manifest = read_manifest(path) if path else None
    return manifest.get("key") if manifest and manifest.get("status") == "done" else None


def model_fingerprint(ref: str | None) -> dict[str, Any] | None:
    """What identifies a model input: its stage key, the files of a local directory, or its name."""
    if not ref:
        return None
    key = read_stage_key(ref)
    if key is not None:
        return {"stage_key": key}
    path = Path(ref).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MODEL_FILES)
        stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return {"dir": str(path.resolve()), "files": short_hash(stats)}
    return {"name": ref}


def stage_key(config: Any, upstream: dict[str, str | None] | None = None) -> str:
    """The key of a stage run: config + upstream model fingerprints + data directory + dcr version."""
    from dcr.config import keyed_dict

    cfg = keyed_dict(config) if is_dataclass(config) else config
    data = resolved_data_dir(cfg.get("data_dir")) if isinstance(cfg, dict) else None
    payload = {"config": cfg, "upstream": {k: model_fingerprint(v) for k, v in (upstream or {}).items()},
               "data_dir": data, "version": code_version()}
    return short_hash(payload)


def file_fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    out: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if stat.st_size <= SMALL_FILE:
        out["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def files_unchanged(recorded: dict[str, dict[str, Any]]) -> bool:
    """True when every recorded file still has the same content (sha256, else size + mtime)."""
    for name, old in recorded.items():
        path = Path(name)
        if not path.is_file():
            return False
        stat = path.stat()
        if stat.st_size != old.get("size"):
            return False
        if stat.st_mtime_ns == old.get("mtime_ns"):
            continue
        if "sha256" not in old or file_fingerprint(path).get("sha256") != old["sha256"]:
            return False
    return True


def note_read(path: str | Path) -> None:
    """Record that the running stage read ``path`` (no-op outside :func:`track_reads`)."""
    reads = _READS.get()
    if reads is not None:
        reads.add(str(Path(path).resolve()))


@contextmanager
def track_reads() -> Iterator[set[str]]:
    """Collect the paths passed to :func:`note_read` inside the block."""
    reads: set[str] = set()
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def fingerprint_files(paths: set[str]) -> dict[str, dict[str, Any]]:
    return {p: file_fingerprint(Path(p)) for p in sorted(paths) if Path(p).is_file()}
