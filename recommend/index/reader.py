"""IndexReader: the read side used by web workers.

Loads lazily (so a pre-forking server that creates the reader in the master still loads in each
worker, after fork), limits FAISS to a few threads, and catches up when the manifest on disk changes.
The change check is a stat() of the manifest: the writer replaces it with os.replace, so its inode
changes on every write, cheap enough to do before every search.

Catching up reads only the segments appended since the version it holds (IndexStore.catch_up) and
layers them over the base it already has; the base file is read again only after a compaction or a
rebuild wrote a new one. `index` is a LayeredIndex, immutable: a search that started on the previous
one finishes on it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

import numpy.typing as npt

from . import runtime
from .config import IndexConfig
from .layered import LayeredIndex
from .store import IndexStore
from .vector_index import SearchResult


class IndexReader:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        config: IndexConfig | None = None,
        search_threads: int = 1,
    ) -> None:
        self.store = IndexStore(directory)
        self._config = config
        self._search_threads = search_threads
        self._index: LayeredIndex | None = None
        self._version = 0
        self._stat_key: tuple[int, int, int] | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()  # threaded servers: one reload at a time

    @property
    def version(self) -> int:
        """Version of the loaded index (0 before the first load)."""
        return self._version

    @property
    def index(self) -> LayeredIndex:
        """The loaded index, loading or reloading it first if needed."""
        self.reload_if_changed()
        assert self._index is not None
        return self._index

    def reload_if_changed(self) -> bool:
        """Catch up when the on-disk version differs from ours; True when the index changed."""
        if self._pid != os.getpid():
            # Forked after loading: OpenMP state does not survive fork, so start afresh in this process.
            self._index, self._version, self._stat_key, self._pid = None, 0, None, os.getpid()
            runtime.limit_threads(self._search_threads)
        key = self._manifest_stat()
        if self._index is not None and key == self._stat_key:
            return False
        with self._lock:
            key = self._manifest_stat()
            if self._index is not None and key == self._stat_key:
                return False
            if self._index is not None and self.store.current_version() == self._version:
                self._stat_key = key  # manifest touched but same version: nothing to load
                return False
            if self._index is None:
                index = self.store.load_layered(config=self._config)
            else:
                index = self.store.catch_up(self._index, config=self._config)
            self._index, self._version, self._stat_key = index, index.version or 0, key
            return True

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        exclude_ids: npt.ArrayLike | Iterable[int] | None = None,
    ) -> SearchResult:
        return self.index.search(queries, k, exclude_ids=exclude_ids)

    def _manifest_stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.store.manifest_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)
