"""The index store before append-only segments (commit fcfacc3), kept only so bench/index_append_bench.py
can measure "before": every save rewrites and fsyncs the whole index, readers reload the whole file.
Not used by the application."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from recommend.index.config import IndexConfig
from recommend.index.vector_index import VectorIndex

MANIFEST_NAME = "manifest.json"
LOCK_NAME = "writer.lock"
FORMAT_VERSION = 1


class IndexNotFoundError(FileNotFoundError):
    """No index has been saved in this directory yet."""


class StaleIndexError(RuntimeError):
    """The index was loaded from a version that is no longer the current one on disk."""


class WriterLockTimeout(TimeoutError):
    """Another process holds the writer lock."""


@dataclass(frozen=True)
class Manifest:
    version: int
    file: str
    kind: str
    dim: int
    n_live: int
    n_stored: int
    config: dict[str, Any]
    saved_at: float

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown manifest format {data.get('format')!r}")
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


class IndexStore:
    """Saves and loads versions of a VectorIndex in one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock_file: Any = None

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    # ---- reading ----------------------------------------------------------------------------------

    def manifest(self) -> Manifest | None:
        try:
            return Manifest.read(self.manifest_path)
        except FileNotFoundError:
            return None

    def current_version(self) -> int:
        """The version on disk, 0 when nothing was saved yet."""
        manifest = self.manifest()
        return manifest.version if manifest else 0

    def load(self, *, config: IndexConfig | None = None, attempts: int = 5) -> tuple[VectorIndex, int]:
        """The current index and its version.

        `config` overrides search-time settings (threads, GPU, efSearch, nprobe) but must have the
        saved dimension. Retries when a save replaced the file between reading the manifest and
        opening it (the writer deletes versions older than the previous one).
        """
        for attempt in range(attempts):
            manifest = self.manifest()
            if manifest is None:
                raise IndexNotFoundError(f"no index saved in {self.directory}")
            try:
                faiss_index = faiss.read_index(str(self.directory / manifest.file))
            except RuntimeError:
                if attempt + 1 < attempts and self.current_version() != manifest.version:
                    continue
                raise
            saved_config = IndexConfig.from_dict(manifest.config)
            use_config = config or saved_config
            if use_config.dim != manifest.dim:
                raise ValueError(f"config has dim {use_config.dim}, the saved index has dim {manifest.dim}")
            index = VectorIndex(faiss_index, use_config, manifest.kind)  # type: ignore[arg-type]
            _apply_search_settings(index)
            index.version = manifest.version
            index.source = str(self.directory)
            return index, manifest.version
        raise AssertionError("unreachable")

    # ---- writing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self, timeout: float = 30.0) -> Iterator[None]:
        """Hold the single-writer lock; hold it across load -> modify -> save to avoid lost updates."""
        if self._lock_file is not None:  # already held by this store: re-entrant
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.directory / LOCK_NAME, "a+")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock_file.close()
                    raise WriterLockTimeout(f"another process is writing the index in {self.directory}")
                time.sleep(0.05)
        self._lock_file = lock_file
        try:
            yield
        finally:
            self._lock_file = None
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
            lock_file.close()

    def save(self, index: VectorIndex, *, force: bool = False) -> int:
        """Write `index` as the next version and return that version number.

        Refuses (StaleIndexError) when `index` was loaded from, or saved as, a version that another
        save has since replaced, unless force=True (a full rebuild from the database is always safe
        to save: it is built from the source of truth, not from an older file).
        """
        with self.writer_lock():
            current = self.current_version()
            base = index.version
            if not force and base is not None and base != current:
                raise StaleIndexError(f"index was loaded at version {base}, disk is at version {current}")
            version = current + 1
            file_name = f"index-{version:06d}.faiss"
            _atomic_write(self.directory / file_name, lambda path: faiss.write_index(index.faiss_index, path))
            manifest = {
                "format": FORMAT_VERSION,
                "version": version,
                "file": file_name,
                "kind": index.kind,
                "dim": index.dim,
                "n_live": len(index),
                "n_stored": int(index.faiss_index.ntotal),
                "config": index.config.to_dict(),
                "saved_at": time.time(),
            }
            _atomic_write(self.manifest_path, lambda path: Path(path).write_text(json.dumps(manifest, indent=2)))
            index.version = version
            self._delete_old_files(keep={file_name, _previous_file(version)})
            return version

    def _delete_old_files(self, keep: set[str]) -> None:
        # The previous version stays: a reader may have read the old manifest and not opened it yet.
        for path in self.directory.glob("index-*.faiss"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        # Temp files of a writer that was killed mid-save (SIGKILL skips the cleanup in _atomic_write);
        # only the lock holder writes temp files, so none of these is in use.
        for path in self.directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)


def _previous_file(version: int) -> str:
    return f"index-{version - 1:06d}.faiss"


def _atomic_write(target: Path, write: Any) -> None:
    """Call write(tmp_path), fsync, then rename over target; on any failure remove the temp file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp_name)
        with open(tmp_name, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # Make the rename itself durable before the manifest points at the file.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _apply_search_settings(index: VectorIndex) -> None:
    """Search knobs come from the config in use, not from whatever the file was saved with."""
    raw = index.faiss_index
    if index.kind == "ivf":
        raw.nprobe = min(index.config.ivf_nprobe, int(raw.nlist))
    elif index.kind == "hnsw":
        faiss.downcast_index(raw.index).hnsw.efSearch = index.config.hnsw_ef_search
