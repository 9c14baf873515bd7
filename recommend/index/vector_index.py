"""VectorIndex: track ids and their embeddings in FAISS, searched by cosine similarity.

One writer mutates an instance (add, remove); any number of readers search their own loaded copy
(see store.py and reader.py). The instance itself takes no locks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from . import factory, runtime
from .config import IndexConfig, IndexKind
from .vectors import FloatArray, IdArray, as_ids, as_matrix, normalized

# GPU indexes in faiss answer at most this many neighbours per query.
_GPU_MAX_K = 2048


@dataclass(frozen=True)
class SearchResult:
    """ids[i, j] is the j-th best track for query i and scores[i, j] its cosine similarity.

    Rows are full (k wide, or every remaining track when fewer than k exist). The only padding,
    ids -1 and scores -inf, would come from an index whose approximate and exact searches both came
    up short, which the exact fallback rules out in practice.
    """

    ids: IdArray
    scores: FloatArray


class VectorIndex:
    """Cosine-similarity kNN over track embeddings, keyed by int64 track id."""

    def __init__(self, faiss_index: faiss.Index, config: IndexConfig, kind: IndexKind) -> None:
        # Use VectorIndex.build() or IndexStore.load(); this wraps an existing FAISS index.
        self.config = config
        self.kind: IndexKind = kind
        self._index = faiss_index
        # The on-disk version this object was loaded or saved as (None: fresh build). IndexStore uses it
        # to refuse overwriting a newer version with changes made to an older one.
        self.version: int | None = None
        self.source: str | None = None  # the directory it was loaded from (IndexStore.load)
        self._gpu_index: faiss.Index | None = None
        self._gpu_tried = False
        self._n_tombstones = int(np.count_nonzero(self._hnsw_labels() < 0)) if kind == "hnsw" else 0

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def build(cls, ids: npt.ArrayLike, vectors: npt.ArrayLike, config: IndexConfig) -> VectorIndex:
        """A fresh index over (ids, vectors): the rebuild path, fed from the database.

        The kind is chosen from the size when config.kind is "auto"; IVF is trained on these vectors.
        """
        id_array = as_ids(ids, unique=True)
        matrix = normalized(as_matrix(vectors, config.dim, what="vectors"), what="vectors")
        if id_array.shape[0] != matrix.shape[0]:
            raise ValueError(f"got {id_array.shape[0]} ids for {matrix.shape[0]} vectors")
        kind = config.resolve_kind(matrix.shape[0])
        index = cls(factory.new_index(config, kind, matrix), config, kind)
        if matrix.shape[0]:
            index._index.add_with_ids(matrix, id_array)
        return index

    @classmethod
    def empty(cls, config: IndexConfig) -> VectorIndex:
        return cls.build(np.empty(0, dtype=np.int64), np.empty((0, config.dim), dtype=np.float32), config)

    def rebuilt(self, config: IndexConfig | None = None) -> VectorIndex:
        """A compacted copy (tombstones gone, kind and nlist re-chosen for the current size)."""
        ids, vectors = self.export()
        fresh = VectorIndex.build(ids, vectors, config or self.config)
        fresh.version = self.version  # derived from this version: saving it over a newer one is stale
        return fresh

    # ---- state ------------------------------------------------------------------------------------

    @property
    def faiss_index(self) -> faiss.Index:
        """The CPU FAISS index (for saving); do not mutate it directly."""
        return self._index

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def n_tombstones(self) -> int:
        return self._n_tombstones

    def __len__(self) -> int:
        """Number of live (searchable) tracks."""
        return int(self._index.ntotal) - self._n_tombstones

    def ids(self) -> IdArray:
        """The live track ids, in storage order."""
        if self.kind == "flat":
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if self.kind == "hnsw":
            labels = self._hnsw_labels()
            return labels[labels >= 0].copy()
        return np.concatenate([ids for ids, _ in self._ivf_lists()] or [np.empty(0, dtype=np.int64)])

    def export(self) -> tuple[IdArray, FloatArray]:
        """(ids, unit vectors) of every live track: enough to rebuild without the database."""
        if self.kind == "flat":
            flat = faiss.downcast_index(self._index.index)
            return self.ids(), flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else np.empty(
                (0, self.dim), np.float32
            )
        if self.kind == "hnsw":
            labels = self._hnsw_labels()
            storage = faiss.downcast_index(self._hnsw().storage)
            vectors = (
                storage.reconstruct_n(0, storage.ntotal) if storage.ntotal else np.empty((0, self.dim), np.float32)
            )
            live = labels >= 0
            return labels[live].copy(), vectors[live]
        lists = list(self._ivf_lists())
        if not lists:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), np.float32)
        return np.concatenate([i for i, _ in lists]), np.concatenate([v for _, v in lists])

    def needs_rebuild(self) -> str | None:
        """Why a rebuild would pay off now, or None."""
        if self.kind == "hnsw" and self._index.ntotal:
            share = self._n_tombstones / self._index.ntotal
            if share > self.config.max_tombstone_fraction:
                return f"{share:.0%} of the HNSW graph is deleted tracks"
        wanted = self.config.resolve_kind(len(self))
        if self.config.kind == "auto" and wanted != self.kind:
            return f"{len(self)} tracks call for a {wanted} index, this one is {self.kind}"
        if self.kind == "ivf":
            nlist = int(self._index.nlist)
            if self.config.nlist_for(len(self)) > 2 * nlist:
                return f"{len(self)} tracks in {nlist} IVF lists: lists too long, retrain"
        return None

    # ---- mutation (the single writer) -----------------------------------------------------------

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert or replace tracks: an id already present gets the new vector."""
        id_array = as_ids(ids, unique=True)
        matrix = normalized(as_matrix(vectors, self.dim, what="vectors"), what="vectors")
        if id_array.shape[0] != matrix.shape[0]:
            raise ValueError(f"got {id_array.shape[0]} ids for {matrix.shape[0]} vectors")
        if not id_array.size:
            return
        self.remove(id_array)  # upsert: a re-embedded track must not leave its old vector behind
        self._index.add_with_ids(matrix, id_array)
        self._drop_gpu_copy()

    def remove(self, ids: npt.ArrayLike | Iterable[int]) -> int:
        """Delete tracks; returns how many were present. Unknown ids are ignored.

        Flat and IVF delete for real. HNSW cannot unlink a node from its graph, so the slot's track id
        is overwritten with -1 (a tombstone): the vector still guides graph walks but is never returned.
        """
        id_array = np.unique(as_ids(ids, unique=False))
        if not id_array.size or not self._index.ntotal:
            return 0
        self._drop_gpu_copy()
        if self.kind == "hnsw":
            labels = self._hnsw_labels()
            hit = np.isin(labels, id_array)
            labels[hit] = -1
            n_removed = int(np.count_nonzero(hit))
            self._n_tombstones += n_removed
            return n_removed
        return int(self._index.remove_ids(faiss.IDSelectorBatch(id_array)))

    # ---- search ---------------------------------------------------------------------------------

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        exclude_ids: npt.ArrayLike | Iterable[int] | None = None,
    ) -> SearchResult:
        """The k most cosine-similar live tracks per query, leaving out exclude_ids.

        Over-fetches so that tombstones and excluded ids do not shorten the answer; when the
        approximate search still comes up short for a row, that row is redone exhaustively.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        matrix = normalized(as_matrix(queries, self.dim, what="queries"), what="queries")
        excluded = np.unique(as_ids([] if exclude_ids is None else exclude_ids, unique=False))
        n_queries, n_stored = matrix.shape[0], int(self._index.ntotal)
        if n_stored == 0 or len(self) == 0:
            return SearchResult(np.empty((n_queries, 0), np.int64), np.empty((n_queries, 0), np.float32))

        # Enough candidates that, at the current tombstone share, k survive filtering on average.
        live_share = len(self) / n_stored
        fetch = min(n_stored, math.ceil((k + excluded.size) / live_share) + (8 if self._n_tombstones else 0))
        scores, labels = self._search_fast(matrix, fetch)
        ids, kept_scores, n_valid = _filtered(labels, scores, excluded, k)

        # Every row should be full unless the index simply holds too few allowed tracks.
        exhaustive_fetch = min(n_stored, int(k) + excluded.size + self._n_tombstones)
        short = np.flatnonzero(n_valid < min(k, len(self)))
        if short.size and not (self.kind == "flat" and fetch >= exhaustive_fetch):
            scores2, labels2 = self._search_exact(matrix[short], exhaustive_fetch)
            ids2, kept2, _ = _filtered(labels2, scores2, excluded, k)
            ids[short], kept_scores[short] = ids2, kept2

        width = int(np.max(np.count_nonzero(ids >= 0, axis=1))) if n_queries else 0
        return SearchResult(ids[:, :width], kept_scores[:, :width])

    def _search_fast(self, matrix: FloatArray, fetch: int) -> tuple[FloatArray, IdArray]:
        index = self._search_index() if fetch <= _GPU_MAX_K else self._index
        scores, labels = index.search(matrix, fetch)
        return scores, labels

    def _search_exact(self, matrix: FloatArray, fetch: int) -> tuple[FloatArray, IdArray]:
        """Exhaustive search: the fallback that guarantees full rows."""
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=int(self._index.nlist))
            return self._index.search(matrix, fetch, params=params)
        if self.kind == "hnsw":
            storage = faiss.downcast_index(self._hnsw().storage)
            scores, positions = storage.search(matrix, fetch)
            labels = self._hnsw_labels()
            return scores, np.where(positions >= 0, labels[np.maximum(positions, 0)], -1)
        return self._index.search(matrix, fetch)

    # ---- helpers --------------------------------------------------------------------------------

    def _search_index(self) -> faiss.Index:
        if self.config.use_gpu and self.kind != "hnsw" and not self._gpu_tried:
            self._gpu_tried = True
            self._gpu_index = runtime.to_gpu(self._index)
        return self._gpu_index if self._gpu_index is not None else self._index

    def _drop_gpu_copy(self) -> None:
        # A mutated CPU index makes the GPU copy stale; it is cloned again on the next search.
        self._gpu_index = None
        self._gpu_tried = False

    def _hnsw(self) -> faiss.IndexHNSWFlat:
        return faiss.downcast_index(self._index.index)

    def _hnsw_labels(self) -> IdArray:
        """A writable view of the HNSW position -> track id table (no copy)."""
        id_map = self._index.id_map
        if id_map.size() == 0:
            return np.empty(0, dtype=np.int64)
        return faiss.rev_swig_ptr(id_map.data(), id_map.size())

    def _ivf_lists(self) -> Iterable[tuple[IdArray, FloatArray]]:
        invlists = self._index.invlists
        for list_no in range(int(self._index.nlist)):
            size = invlists.list_size(list_no)
            if size == 0:
                continue
            ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy()
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
            # IVFFlat codes are the raw float32 vectors.
            yield ids.astype(np.int64), codes.view(np.float32).reshape(size, self.dim).copy()


def _filtered(
    labels: IdArray, scores: FloatArray, excluded: IdArray, k: int
) -> tuple[IdArray, FloatArray, npt.NDArray[np.int64]]:
    """The first k allowed hits per row (order kept), padded with -1 / -inf, and the count per row."""
    allowed = labels >= 0
    if excluded.size:
        allowed &= ~np.isin(labels, excluded)
    # A stable sort on "not allowed" moves allowed hits to the front without reordering them.
    order = np.argsort(~allowed, axis=1, kind="stable")[:, :k]
    rows = np.arange(labels.shape[0])[:, None]
    n_valid = np.minimum(np.count_nonzero(allowed, axis=1), k)
    keep = np.arange(order.shape[1])[None, :] < n_valid[:, None]
    ids = np.where(keep, labels[rows, order], -1)
    kept_scores = np.where(keep, scores[rows, order], -np.inf).astype(np.float32)
    if ids.shape[1] < k:  # fewer candidates than k: widen so callers always index [:, :k]
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        kept_scores = np.pad(kept_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids.astype(np.int64), kept_scores, n_valid
