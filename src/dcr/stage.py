"""Stage bookkeeping: skip finished stages, record a manifest (config, seed, versions, time, memory).

A stage writes its outputs into its own directory and, last of all, ``manifest.json`` with
``status: done`` and the stage key (a hash of its config and its inputs). A directory whose
manifest has the same key is complete and the stage is skipped; anything else is (re)run, so an
interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from dcr.config import config_hash
from dcr.io import read_json, write_json

MANIFEST = "manifest.json"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("dcr", "torch", "transformers", "peft", "trl", "accelerate", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class PeakMemory:
    """Peak resident memory (sampled) and peak CUDA memory over a block."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_rss = 0
        self.peak_cuda = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, _rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_rss = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, _rss_bytes())
        if torch.cuda.is_available():
            self.peak_cuda = int(torch.cuda.max_memory_allocated())


def stage_key(config: Any, inputs: dict[str, Any] | None = None) -> str:
    return config_hash(config, inputs)


def is_done(out_dir: str | Path, key: str) -> bool:
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return False
    try:
        manifest = read_json(path)
    except ValueError:
        return False
    return manifest.get("status") == "done" and manifest.get("key") == key


@contextmanager
def stage_log(out_dir: Path, name: str) -> Iterator[logging.Logger]:
    """A per-stage log file ``OUT/stage.log`` (plus whatever handlers the root logger has)."""
    logger = logging.getLogger(f"dcr.{name}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(out_dir / "stage.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def run_stage(
    name: str,
    config: Any,
    out_dir: str | Path,
    fn: Callable[[Path], dict[str, Any] | None],
    inputs: dict[str, Any] | None = None,
    force: bool = False,
) -> tuple[Path, bool]:
    """Run ``fn(out_dir)`` unless ``out_dir`` already holds a finished run of the same key.

    Returns ``(out_dir, skipped)``. ``fn`` may return a dict of summary values for the manifest.
    """
    out = Path(out_dir)
    key = stage_key(config, inputs)
    if not force and is_done(out, key):
        return out, True
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(config) if is_dataclass(config) else config
    write_json(out / MANIFEST, {"stage": name, "key": key, "status": "running", "config": cfg, "inputs": inputs})
    start = time.time()
    with PeakMemory() as mem, stage_log(out, name) as log:
        log.info("stage %s started, key %s", name, key)
        summary = fn(out) or {}
        log.info("stage %s finished in %.1fs", name, time.time() - start)
    write_json(
        out / MANIFEST,
        {
            "stage": name,
            "key": key,
            "status": "done",
            "config": cfg,
            "inputs": inputs,
            "seed": cfg.get("seed") if isinstance(cfg, dict) else None,
            "versions": versions(),
            "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
            "wall_time_s": round(time.time() - start, 3),
            "peak_rss_mb": round(mem.peak_rss / 2**20, 1),
            "peak_cuda_mb": round(mem.peak_cuda / 2**20, 1),
            "summary": summary,
        },
    )
    return out, False
