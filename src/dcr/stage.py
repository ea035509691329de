"""Stage bookkeeping: one manifest per stage directory that never misreports the stage's state.

``run_stage(name, cfg, out_dir, fn)`` runs ``fn(out_dir)`` and records the outcome in ``OUT/manifest.json``:

- ``done``: finished; ``key`` (``dcr.fingerprint.stage_key``: config, upstream stages, data directory, dcr
  version) and the fingerprints of the data files it read. A later call with the same key, while those files
  are unchanged, skips the stage and logs ``skipped (finished, key …)``.
- ``incomplete``: finished, but a part depended on a transient condition (``fn`` returned
  ``{"transient": {...}}``, e.g. a hub benchmark without network): not reused, the next call runs again.
- ``failed`` / ``interrupted``: ``error_type`` and ``error`` in the manifest, the traceback in ``OUT/stage.log``;
  every output except the resumable caches named in ``keep`` is removed.
- ``running``: only while a process holds ``OUT/.dcr.lock``. A second process gets a clear error; a lock left by
  a dead process is taken over (an ``flock`` dies with its process).
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import logging
import os
import platform
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from dcr.config import StageConfig
from dcr.dist import barrier, from_main, is_main, launched
from dcr.errors import DcrError
from dcr.fingerprint import (
    files_unchanged,
    fingerprint_files,
    resolved_data_dir,
    source_hash,
    stage_key,
    track_reads,
)
from dcr.io import read_json, write_json

MANIFEST = "manifest.json"
LOG = "stage.log"
LOCK = ".dcr.lock"
HEARTBEAT = ".dcr.heartbeat.json"  # the running stage's peak memory so far (what a killed run leaves behind)
BOOKKEEPING = (MANIFEST, LOG, LOCK, HEARTBEAT)
log = logging.getLogger("dcr.stage")


class StageLocked(DcrError):
    """Another live process is running a stage in the same directory."""


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "dcr_source": source_hash()}
    for pkg in ("dcr", "torch", "transformers", "peft", "trl", "accelerate", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class PeakMemory:
    """Peak resident memory (sampled) and peak CUDA memory over a block. With ``heartbeat``, the peak so far is
    also written there every ``every`` seconds, so a run that is killed (out of memory, SIGKILL) leaves it for
    the next run to report."""

    def __init__(self, interval: float = 0.05, heartbeat: Path | None = None, every: float = 5.0) -> None:
        self.interval, self.heartbeat, self.every = interval, heartbeat, every
        self.peak_rss = 0
        self.peak_cuda = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        beat = 0.0
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes())
            if self.heartbeat is not None and time.time() - beat >= self.every:
                beat = time.time()
                try:
                    write_json(self.heartbeat, {"pid": os.getpid(), "time": beat,
                                                "peak_rss_mb": round(self.peak_rss / 2**20, 1)})
                except OSError:  # the directory is being replaced or removed: the next beat tries again
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.peak_rss = rss_bytes()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (and heartbeat writes); idempotent, so ``__exit__`` may follow."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self.peak_rss = max(self.peak_rss, rss_bytes())
        if torch.cuda.is_available():
            self.peak_cuda = int(torch.cuda.max_memory_allocated())


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc keeps it otherwise), so that one stage's peak
    is not carried as resident memory into the next stage of the same process (``dcr run``)."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Return glibc's free heap pages to the OS (``malloc_trim``; a no-op elsewhere); see :class:`HeapGuard`."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


class HeapGuard:
    """Keep a CPU training loop's resident set near one step's peak. glibc keeps the blocks freed by each step's
    activations (a new shape every micro-batch), so the resident set creeps up step after step (SmolLM2
    quickstart align: 2.5 -> 4.2 GB over 16 steps). Call :meth:`step` after each optimizer step: once the
    resident set has grown ``slack`` over its level after the first step, the free heap goes back to the OS
    (:func:`trim_heap`). Trimming after every step instead costs about 8 % of the step time in page faults."""

    def __init__(self, slack: float = 1.15) -> None:
        self.slack, self.base, self.trims = slack, 0, 0

    def step(self) -> None:
        rss = rss_bytes()
        if not self.base:
            self.base = rss
        elif rss > self.slack * self.base:
            trim_heap()
            self.trims += 1


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of the stage directory ``path`` (or of the stage whose ``model/`` ``path`` is); None if none."""
    p = Path(path).expanduser()
    for cand in (p / MANIFEST, p.parent / MANIFEST if p.name == "model" else None):
        if cand is not None and cand.is_file():
            try:
                manifest = read_json(cand)
            except (ValueError, OSError):
                return None
            return manifest if isinstance(manifest, dict) else None
    return None


def is_done(out_dir: str | Path, key: str) -> bool:
    """``out_dir`` holds a finished run with ``key`` whose data files are unchanged."""
    manifest = read_manifest(out_dir)
    return (manifest is not None and manifest.get("status") == "done" and manifest.get("key") == key
            and files_unchanged(manifest.get("data_files") or {}))


@contextmanager
def stage_lock(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT/.dcr.lock`` (flock + pid) for the block; StageLocked if a live process holds it."""
    path = out_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StageLocked(f"{out_dir} is in use by another dcr process (pid {pid}, lock file {path}). Fix: "
                              "wait for it to finish, or pass another --out") from None
        try:  # the holder may have removed the file between our open and our lock: lock the file on disk
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def stage_log(out_dir: Path, name: str) -> Iterator[logging.Logger]:
    """Every ``dcr.*`` log record of the block goes to ``OUT/stage.log``; yields the logger ``dcr.<name>``."""
    handler = logging.FileHandler(out_dir / LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("dcr")
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield logging.getLogger(f"dcr.{name}")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _clean_failed(out: Path, keep: Iterable[str]) -> list[str]:
    """Remove what a failed run left, except bookkeeping and resumable caches; returns the removed names."""
    spared = {*BOOKKEEPING, *keep}
    removed = []
    for entry in sorted(out.iterdir()):
        if entry.name in spared:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    return removed


def make_out_dir(out: Path) -> None:
    """Create the output directory, or a one-line DcrError saying why it cannot be one."""
    if out.exists() and not out.is_dir():
        raise DcrError(f"--out {out} is an existing file. Fix: pass a directory path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DcrError(f"--out {out}: cannot create the directory ({exc.strerror}). Fix: pass a writable "
                       "directory path") from None
    if not os.access(out, os.W_OK):
        raise DcrError(f"--out {out}: the directory is not writable. Fix: pass a writable directory path")


def _base_manifest(name: str, key: str, cfg: Any, upstream: dict[str, Any] | None) -> dict[str, Any]:
    return {"stage": name, "key": key, "config": cfg, "upstream": upstream or {},
            "data_dir": resolved_data_dir(cfg.get("data_dir")) if isinstance(cfg, dict) else None,
            "seed": cfg.get("seed") if isinstance(cfg, dict) else None, "versions": versions(), "pid": os.getpid()}


def _earlier_attempts(out: Path, key: str) -> list[dict[str, Any]]:
    """The unfinished earlier attempts at this stage (same key), whose work a resumable stage picks up
    (checkpoints, cached generations): [{status, wall_time_s}], oldest first. A process that was killed never
    rewrote its "running" manifest; its attempt is counted from that manifest's start (``started``, else the
    file's mtime) to the last write of stage.log, which can only undercount."""
    old = read_manifest(out) if (out / MANIFEST).is_file() else None
    if not old or old.get("key") != key or old.get("status") == "done":
        return []
    wall = old.get("wall_time_s")
    if wall is None:
        begun = float(old.get("started", (out / MANIFEST).stat().st_mtime))
        last = (out / LOG if (out / LOG).is_file() else out / MANIFEST).stat().st_mtime
        wall = max(0.0, last - begun)
    attempt: dict[str, Any] = {"status": old.get("status", "unknown"), "wall_time_s": round(wall, 3)}
    if attempt["status"] == "running":  # we hold the lock, so that process is gone: killed, never told us
        attempt.update(_killed(out, old))
    return [*old.get("attempts", []), attempt]


def _killed(out: Path, old: dict[str, Any]) -> dict[str, Any]:
    """What a killed attempt left: its pid, peak memory (heartbeat) and last log line; logged as a warning."""
    try:
        beat = read_json(out / HEARTBEAT) if (out / HEARTBEAT).is_file() else {}
    except (OSError, ValueError):
        beat = {}
    peak = beat.get("peak_rss_mb") if beat.get("pid") == old.get("pid") else None
    lines = [ln for ln in (out / LOG).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()] \
        if (out / LOG).is_file() else []
    last = lines[-1][:300] if lines else ""
    log.warning("%s: an earlier attempt (pid %s) was killed without finishing (out of memory, or a signal); "
                "peak memory %s; its last log line: %s. Resuming from what it kept (%s)", out.name, old.get("pid"),
                f"{peak:.0f} MB" if peak is not None else "not recorded", last or "(none)",
                ", ".join(sorted(p.name for p in out.iterdir() if p.name not in BOOKKEEPING)) or "nothing")
    return {"status": "killed", "pid": old.get("pid"), "peak_rss_mb": peak, "last_log_line": last}


def host_record() -> dict[str, Any]:
    """Where a stage ran. ``auto_dtype``: what ``dtype: auto`` computes in here (bf16 on a GPU or on a CPU with
    AMX / avx512_bf16, else fp32). Stage ids key the configured ``auto``, not this, so a stage's numbers depend on
    the machine that ran it: seeds run on machines that resolve ``auto`` differently must not be pooled unread."""
    from dcr.models import pick_dtype

    return {"machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processes": launched(),  # under a launcher: torch_threads is per process
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "auto_dtype": str(pick_dtype("auto")).removeprefix("torch.")}


def _finish(out: Path, head: dict[str, Any], summary: dict[str, Any], reads: set[str], checked: set[str],
            mem: PeakMemory, start: float) -> str:
    transient = summary.pop("transient", None) or {}
    status = "incomplete" if transient else "done"
    wall = round(time.time() - start, 3)
    write_json(out / MANIFEST, {
        **head, "status": status, "transient": transient, "data_files": fingerprint_files(reads),
        # read by the stage but not by its validation first (check_inputs; StageConfig.data_sets)
        "data_files_unchecked": sorted(reads - checked),
        "host": host_record(),
        "wall_time_s": wall, "wall_time_total_s": round(wall + sum(a["wall_time_s"] for a in head["attempts"]), 3),
        "peak_rss_mb": round(mem.peak_rss / 2**20, 1),
        "peak_cuda_mb": round(mem.peak_cuda / 2**20, 1), "summary": summary})
    return status


def _run_body(name: str, key: str, out: Path, fn: Callable[[Path], dict[str, Any] | None], head: dict[str, Any],
              keep: Iterable[str], start: float, checked: set[str]) -> str:
    """Run ``fn`` under the stage log and the memory sampler; record failure or success; returns the status."""
    try:
        with track_reads() as reads, PeakMemory(heartbeat=out / HEARTBEAT) as mem, stage_log(out, name) as slog:
            slog.info("stage %s started, key %s", name, key)
            try:
                summary = dict(fn(out) or {})
            except BaseException as exc:
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                slog.error("stage %s %s: %s: %s (traceback in %s)", name, status, type(exc).__name__, exc, out / LOG)
                with open(out / LOG, "a", encoding="utf-8") as fh:  # the traceback goes to the file only
                    fh.write(traceback.format_exc())
                mem.stop()  # no heartbeat write (a temporary file, then a rename) while the directory is cleaned
                removed = _clean_failed(out, keep)
                write_json(out / MANIFEST, {**head, "status": status, "error_type": type(exc).__name__,
                                            "error": str(exc), "removed": removed,
                                            "wall_time_s": round(time.time() - start, 3)})
                raise
            status = _finish(out, head, summary, reads, checked, mem, start)
            release_memory()
            slog.info("stage %s finished (%s) in %.1fs", name, status, time.time() - start)
    finally:  # PeakMemory has stopped, so nothing writes it again; only a killed process leaves it behind
        (out / HEARTBEAT).unlink(missing_ok=True)
    return status


def _note_other_source(name: str, out: Path) -> None:
    """Warn when a reused stage was built by other dcr source than this process runs (same version, same key)."""
    built = ((read_manifest(out) or {}).get("versions") or {}).get("dcr_source")
    if built and built != source_hash():
        log.warning("%s: reused a stage built by other dcr source (%s; this code is %s) in %s. Fix: pass --force "
                    "(or delete the directory) if the change should rebuild it", name, built, source_hash(), out)


def run_stage(
    name: str,
    config: Any,
    out_dir: str | Path,
    fn: Callable[[Path], dict[str, Any] | None],
    upstream: dict[str, str | None] | None = None,
    force: bool = False,
    keep: Iterable[str] = (),
) -> tuple[Path, bool]:
    """Run ``fn(out_dir)`` unless ``out_dir`` already holds a finished run with the same key.

    ``upstream`` names the models/stage directories the stage reads (``{"model": cfg.model}``); ``keep`` names
    the entries of ``out_dir`` that are resumable caches and survive a failure. Returns ``(out_dir, skipped)``.
    Under a multi-process launch (``dcr.dist``) every rank runs ``fn``; only the main process locks, checks
    and writes the manifest.
    """
    out = Path(out_dir)
    key = stage_key(config, upstream)
    skip = from_main(not force and is_done(out, key))
    if not is_main():  # another rank of a multi-process launch: the main process keeps the books
        if not skip:
            barrier()  # the main process has checked the inputs and made OUT
            fn(out)
        return out, skip
    if skip:
        log.info("%s: skipped (finished, key %s) in %s", name, key, out)
        _note_other_source(name, out)
        return out, True
    checked: set[str] = set()
    if isinstance(config, StageConfig):
        with track_reads() as checked:
            config.check_inputs()
    make_out_dir(out)
    barrier()
    release_memory()  # the peak below is this stage's own
    cfg = asdict(config) if is_dataclass(config) else config
    head = _base_manifest(name, key, cfg, upstream)
    head["data_files_checked"] = len(checked)
    with stage_lock(out):
        start = time.time()
        head.update(attempts=_earlier_attempts(out, key), started=start)
        write_json(out / MANIFEST, {**head, "status": "running"})
        status = _run_body(name, key, out, fn, head, keep, start, checked)
    if status == "incomplete":
        log.warning("%s: finished without %s; not cached as done, the next run retries", name,
                    ", ".join(sorted(read_manifest(out)["transient"])))  # type: ignore[index]
    return out, False
