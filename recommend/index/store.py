"""IndexStore: the on-disk index, a base snapshot plus append-only segments, versioned by one writer.

Layout of the directory:

    manifest.json         {"version": 12, "base": {"file": "base-000010.faiss", "version": 10, ...},
                           "segments": [{"file": "seg-000011.npz", "version": 11, ...}, ...], "meta": {...}}
    base-000010.faiss     the FAISS index as of version 10 (the previous base is kept a while)
    seg-000011.npz        one change after it: ids + unit vectors inserted or replaced, ids removed
    writer.lock           flock()ed by the one process allowed to write

Every write gets the next version number. append() writes only its own small segment (temp file,
fsync, rename) and then replaces the manifest the same way; nothing else is rewritten or fsynced, so
adding one track costs the same at 1M tracks as at 1k (bench/results/index_append.json). save()
writes a whole new base (a rebuild from the database, or compact(): base + segments merged) and a
manifest with no segments. Readers only ever follow the manifest, so they see the old state or the
new one; a writer killed between writing a file and the manifest leaves the old state in charge, and
its orphan file is swept by the next compaction.

A reader that already holds version v of the same base reads only the segments above v
(catch_up); a new base makes it load once. Versions only grow within a directory: catalog summaries
and readers compare them.

`meta` is the caller's own small dict, kept across appends and saves (recommend.services keeps the
database change sequence the folder reflects there: see index_sync).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from .config import IndexConfig
from .layered import LayeredIndex, Segment
from .vector_index import VectorIndex
from .vectors import as_ids, as_matrix, normalized

MANIFEST_NAME = "manifest.json"
LOCK_NAME = "writer.lock"
FORMAT_VERSION = 2  # 1: a single index file, no segments (still read: it is a base without segments)


class IndexNotFoundError(FileNotFoundError):
    """No index has been saved in this directory yet."""


class IndexCorruptError(IndexNotFoundError):
    """The manifest, base or a segment cannot be read: rebuild from the database (callers that
    handle a missing index handle this one too)."""


class StaleIndexError(RuntimeError):
    """The index was loaded from a version that is no longer the current one on disk."""


class WriterLockTimeout(TimeoutError):
    """Another process holds the writer lock."""


@dataclass(frozen=True)
class SegmentEntry:
    file: str
    version: int
    n_add: int
    n_remove: int
    bytes: int


@dataclass(frozen=True)
class Manifest:
    version: int
    file: str  # the base file
    base_version: int
    base_bytes: int | None
    kind: str
    dim: int
    n_live: int  # live tracks in the base
    n_stored: int
    config: dict[str, Any]
    saved_at: float
    segments: tuple[SegmentEntry, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def segment_rows(self) -> int:
        return sum(s.n_add + s.n_remove for s in self.segments)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            if data.get("format") == 1:  # written before segments existed: a base alone
                return cls(
                    version=data["version"], file=data["file"], base_version=data["version"], base_bytes=None,
                    kind=data["kind"], dim=data["dim"], n_live=data["n_live"], n_stored=data["n_stored"],
                    config=data["config"], saved_at=data["saved_at"],
                )  # fmt: skip
            if data.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown manifest format {data.get('format')!r}")
            base = data["base"]
            return cls(
                version=int(data["version"]),
                file=base["file"],
                base_version=int(base["version"]),
                base_bytes=base.get("bytes"),
                kind=base["kind"],
                dim=int(data["dim"]),
                n_live=int(base["n_live"]),
                n_stored=int(base["n_stored"]),
                config=data["config"],
                saved_at=float(data["saved_at"]),
                segments=tuple(SegmentEntry(**s) for s in data["segments"]),
                meta=dict(data.get("meta") or {}),
            )
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise IndexCorruptError(f"{path}: unreadable manifest ({exc})") from exc

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "version": self.version,
                "base": {
                    "file": self.file,
                    "version": self.base_version,
                    "bytes": self.base_bytes,
                    "kind": self.kind,
                    "n_live": self.n_live,
                    "n_stored": self.n_stored,
                },
                "segments": [s.__dict__ for s in self.segments],
                "dim": self.dim,
                "config": self.config,
                "saved_at": self.saved_at,
                "meta": self.meta,
            },
            indent=1,
        )


class IndexStore:
    """Saves, appends to and loads versions of a VectorIndex in one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock_file: Any = None

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    # ---- reading ----------------------------------------------------------------------------------

    def manifest(self) -> Manifest | None:
        """The current manifest, None when nothing was saved; IndexCorruptError when unreadable."""
        try:
            return Manifest.read(self.manifest_path)
        except IndexNotFoundError:  # IndexCorruptError, a FileNotFoundError too: not "nothing saved"
            raise
        except FileNotFoundError:
            return None

    def current_version(self) -> int:
        """The version on disk, 0 when nothing was saved yet."""
        manifest = self.manifest()
        return manifest.version if manifest else 0

    def check(self, manifest: Manifest | None = None) -> Manifest:
        """The manifest, after cheap checks (stat only) that the files it names are all there whole.

        Catches a deleted or truncated file without reading the base; IndexNotFoundError when nothing
        was saved, IndexCorruptError when something is missing.
        """
        manifest = manifest or self.manifest()
        if manifest is None:
            raise IndexNotFoundError(f"no index saved in {self.directory}")
        expected = [(manifest.file, manifest.base_bytes)] + [(s.file, s.bytes) for s in manifest.segments]
        for name, size in expected:
            try:
                actual = (self.directory / name).stat().st_size
            except FileNotFoundError:
                raise IndexCorruptError(f"{self.directory / name} is missing") from None
            if size is not None and actual != size:
                raise IndexCorruptError(f"{self.directory / name} has {actual} bytes, the manifest says {size}")
        return manifest

    def load(self, *, config: IndexConfig | None = None, attempts: int = 5) -> tuple[VectorIndex, int]:
        """The current index as one VectorIndex (the base with every segment applied) and its version.

        For the writer (compaction) and tools; readers use load_layered() and catch_up(), which never
        mutate a base that searches may be using. `config` overrides search-time settings (threads,
        GPU, efSearch, nprobe) but must have the saved dimension.
        """
        manifest, index, segments = self._read_current(config, attempts)
        for segment in segments:
            index.remove(segment.removed)
            index.add(segment.ids, segment.vectors)
        index.version = manifest.version
        return index, manifest.version

    def load_layered(self, *, config: IndexConfig | None = None, attempts: int = 5) -> LayeredIndex:
        """The base and every segment of the current version, as a reader serves them."""
        manifest, base, segments = self._read_current(config, attempts)
        layered = LayeredIndex(
            base, base_version=manifest.base_version, version=manifest.base_version, source=str(self.directory)
        )
        layered = layered.with_segments(segments)
        layered.version = manifest.version
        return layered

    def _read_current(self, config: IndexConfig | None, attempts: int) -> tuple[Manifest, VectorIndex, list[Segment]]:
        for attempt in range(attempts):
            manifest = self.manifest()
            if manifest is None:
                raise IndexNotFoundError(f"no index saved in {self.directory}")
            try:
                base = self._read_base(manifest, config)
                segments = self._read_segments(manifest, after=manifest.base_version)
            except IndexCorruptError:
                # A compaction between reading the manifest and opening the files deletes old files.
                if attempt + 1 < attempts and self.current_version() != manifest.version:
                    continue
                raise
            return manifest, base, segments
        raise AssertionError("unreachable")

    def catch_up(self, layered: LayeredIndex, *, config: IndexConfig | None = None) -> LayeredIndex:
        """`layered` brought to the current version: only the new segments are read and applied when
        the base is the same; a new base (compaction, rebuild) is loaded whole."""
        manifest = self.manifest()
        if manifest is None:
            raise IndexNotFoundError(f"no index saved in {self.directory}")
        if manifest.version == layered.version:
            return layered
        if manifest.base_version != layered.base_version or manifest.version < (layered.version or 0):
            return self.load_layered(config=config)
        try:
            new = layered.with_segments(self._read_segments(manifest, after=layered.version or 0))
        except IndexCorruptError:
            if self.current_version() != manifest.version:  # compacted meanwhile
                return self.load_layered(config=config)
            raise
        new.version = manifest.version
        return new

    def _read_base(self, manifest: Manifest, config: IndexConfig | None) -> VectorIndex:
        path = self.directory / manifest.file
        try:
            faiss_index = faiss.read_index(str(path))
        except RuntimeError as exc:  # faiss reports a missing or truncated file as RuntimeError
            raise IndexCorruptError(f"{path}: {exc}".splitlines()[0]) from exc
        use_config = config or IndexConfig.from_dict(manifest.config)
        if use_config.dim != manifest.dim:
            raise ValueError(f"config has dim {use_config.dim}, the saved index has dim {manifest.dim}")
        index = VectorIndex(faiss_index, use_config, manifest.kind)  # type: ignore[arg-type]
        _apply_search_settings(index)
        index.version = manifest.base_version
        index.source = str(self.directory)
        return index

    def _read_segments(self, manifest: Manifest, *, after: int) -> list[Segment]:
        segments = []
        for entry in manifest.segments:
            if entry.version <= after:
                continue
            path = self.directory / entry.file
            try:
                with np.load(path) as data:
                    ids, vectors, removed = data["ids"], data["vectors"], data["removed"]
            except (OSError, ValueError, KeyError) as exc:  # missing, truncated, not an npz
                raise IndexCorruptError(f"{path}: unreadable segment ({exc})") from exc
            if vectors.shape != (ids.size, manifest.dim):
                raise IndexCorruptError(f"{path}: vectors of shape {vectors.shape} for {ids.size} ids")
            segments.append(Segment(entry.version, ids.astype(np.int64), vectors.astype(np.float32), removed))
        return segments

    # ---- writing ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self, timeout: float = 30.0) -> Iterator[None]:
        """Hold the single-writer lock; hold it across read -> modify -> write to avoid lost updates."""
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
                    raise WriterLockTimeout(f"another process is writing the index in {self.directory}") from None
                time.sleep(0.05)
        self._lock_file = lock_file
        try:
            yield
        finally:
            self._lock_file = None
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
            lock_file.close()

    def append(
        self,
        ids: npt.ArrayLike,
        vectors: npt.ArrayLike,
        *,
        remove: npt.ArrayLike | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Append one segment (insert or replace ids, then-or-before remove `remove`) as the next version.

        The base is not read or rewritten. An id in both `ids` and `remove` is an error; `meta` entries
        are merged into the manifest's. IndexNotFoundError when there is no base yet (build one first).
        """
        with self.writer_lock():
            manifest = self.manifest()
            if manifest is None:
                raise IndexNotFoundError(f"no index saved in {self.directory}")
            id_array = as_ids(ids, unique=True)
            matrix = as_matrix(vectors, manifest.dim, what="vectors") if id_array.size else None
            matrix = normalized(matrix, what="vectors") if matrix is not None else np.empty((0, manifest.dim), "f4")
            if id_array.size != matrix.shape[0]:
                raise ValueError(f"got {id_array.size} ids for {matrix.shape[0]} vectors")
            removed = np.unique(as_ids([] if remove is None else remove, unique=False))
            if np.isin(removed, id_array).any():
                raise ValueError("an id cannot be both added and removed in one segment")
            version = manifest.version + 1
            file_name = f"seg-{version:06d}.npz"
            buffer = io.BytesIO()
            np.savez(buffer, ids=id_array, vectors=matrix, removed=removed)
            payload = buffer.getvalue()
            _atomic_write(self.directory / file_name, lambda path: Path(path).write_bytes(payload))
            entry = SegmentEntry(file_name, version, int(id_array.size), int(removed.size), len(payload))
            self._write_manifest(
                Manifest(
                    **{
                        **manifest.__dict__,
                        "version": version,
                        "segments": (*manifest.segments, entry),
                        "meta": {**manifest.meta, **(meta or {})},
                        "saved_at": time.time(),
                    }
                )
            )
            return version

    def save(self, index: VectorIndex, *, force: bool = False, meta: dict[str, Any] | None = None) -> int:
        """Write `index` as a new base (no segments) with the next version number and return it.

        Refuses (StaleIndexError) when `index` was loaded from, or saved as, a version that another
        write has since replaced, unless force=True (a full rebuild from the database is always safe
        to save: it is built from the source of truth, not from an older file). `meta` replaces the
        manifest's meta when given, else it is kept.
        """
        with self.writer_lock():
            try:
                previous = self.manifest()
            except IndexCorruptError:
                if not force:
                    raise
                previous = None
            current = previous.version if previous else _highest_version_on_disk(self.directory)
            base = index.version
            if not force and base is not None and base != current:
                raise StaleIndexError(f"index was loaded at version {base}, disk is at version {current}")
            version = current + 1
            file_name = f"base-{version:06d}.faiss"
            _atomic_write(self.directory / file_name, lambda path: faiss.write_index(index.faiss_index, path))
            manifest = Manifest(
                version=version,
                file=file_name,
                base_version=version,
                base_bytes=(self.directory / file_name).stat().st_size,
                kind=index.kind,
                dim=index.dim,
                n_live=len(index),
                n_stored=int(index.faiss_index.ntotal),
                config=index.config.to_dict(),
                saved_at=time.time(),
                meta=dict(meta) if meta is not None else (previous.meta if previous else {}),
            )
            self._write_manifest(manifest)
            index.version = version
            keep = {file_name}
            if previous is not None:  # a reader may have read the previous manifest and not opened it yet
                keep |= {previous.file} | {s.file for s in previous.segments}
            self._delete_old_files(keep)
            return version

    def should_compact(self, manifest: Manifest | None = None) -> bool:
        """Whether the segments grew past the config's limits (count, or share of the base)."""
        manifest = manifest or self.manifest()
        if manifest is None or not manifest.segments:
            return False
        config = IndexConfig.from_dict(manifest.config)
        if len(manifest.segments) >= config.compact_max_segments:
            return True
        return manifest.segment_rows > config.compact_max_share * max(manifest.n_live, config.compact_min_rows)

    def compact(self) -> int:
        """Merge base + segments into a new base (re-chosen kind / retrained IVF when the size calls
        for it); returns the new version. Search results do not change."""
        with self.writer_lock():
            index, _ = self.load()
            if index.needs_rebuild():
                index = index.rebuilt()
            return self.save(index)

    def _write_manifest(self, manifest: Manifest) -> None:
        text = manifest.to_json()
        _atomic_write(self.manifest_path, lambda path: Path(path).write_text(text))

    def _delete_old_files(self, keep: set[str]) -> None:
        for pattern in ("base-*.faiss", "seg-*.npz", "index-*.faiss"):
            for path in self.directory.glob(pattern):
                if path.name not in keep:
                    path.unlink(missing_ok=True)
        # Temp files of a writer that was killed mid-write (SIGKILL skips the cleanup in _atomic_write);
        # only the lock holder writes temp files, so none of these is in use.
        for path in self.directory.glob(".*.tmp"):
            path.unlink(missing_ok=True)


def _highest_version_on_disk(directory: Path) -> int:
    """With the manifest gone or unreadable, a forced save still takes a version above any file's, so
    versions stay monotonic for readers that hold an older one."""
    versions = [0]
    for path in [*directory.glob("base-*.faiss"), *directory.glob("seg-*.npz"), *directory.glob("index-*.faiss")]:
        with contextlib.suppress(ValueError):
            versions.append(int(path.name.split("-")[1].split(".")[0]))
    return max(versions)


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
