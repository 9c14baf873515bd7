"""LayeredIndex: what a reader serves, a loaded base index plus the segments appended since.

The base (a VectorIndex read from the base file) is never mutated once loaded: searches run in other
threads without locks, and FAISS releases the GIL while it searches, so removing ids from it in place
would race with them. The segments become a small overlay instead:

    delta    every track added or re-embedded since the base, with its latest vector (exact search)
    hidden   base tracks that a segment removed or replaced (excluded from the base search)

Applying new segments builds a new LayeredIndex that shares the base and copies only the overlay,
whose size compaction bounds (IndexConfig.compact_max_share). A search asks the base for k while
excluding the hidden ids (few: deletions and re-embeddings; a new track is never in the base),
scores the delta by brute force, and merges the two best-first. The answer equals the answer of one
index holding base + segments (the tests compare with a full rebuild).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from .config import IndexConfig
from .vector_index import SearchResult, VectorIndex
from .vectors import FloatArray, IdArray, as_ids, as_matrix, normalized


@dataclass(frozen=True)
class Segment:
    """One appended change: remove `removed`, then insert or replace (ids, vectors). Disjoint id sets."""

    version: int
    ids: IdArray
    vectors: FloatArray
    removed: IdArray


class _Base:
    """The loaded base and its sorted ids (computed once, on the first segment that needs them)."""

    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        self._sorted_ids: IdArray | None = None
        self._lock = threading.Lock()

    def sorted_ids(self) -> IdArray:
        with self._lock:
            if self._sorted_ids is None:
                self._sorted_ids = np.sort(self.index.ids())
            return self._sorted_ids


class LayeredIndex:
    """Base + overlay, searched as one index. Immutable: with_segments() returns a new one."""

    def __init__(
        self,
        base: VectorIndex | _Base,
        *,
        base_version: int,
        version: int,
        source: str | None = None,
        delta_ids: IdArray | None = None,
        delta_vectors: FloatArray | None = None,
        hidden: IdArray | None = None,
    ) -> None:
        self._base = base if isinstance(base, _Base) else _Base(base)
        self.base_version = base_version
        self.version: int | None = version
        self.source = source
        dim = self._base.index.dim
        self._delta_ids = delta_ids if delta_ids is not None else np.empty(0, np.int64)
        self._delta_vectors = delta_vectors if delta_vectors is not None else np.empty((0, dim), np.float32)
        self._hidden = hidden if hidden is not None else np.empty(0, np.int64)

    # ---- the surface callers use (same as VectorIndex) ------------------------------------------

    @property
    def base(self) -> VectorIndex:
        return self._base.index

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def config(self) -> IndexConfig:
        return self.base.config

    @property
    def faiss_index(self) -> faiss.Index:
        """The base's FAISS index (its search settings)."""
        return self.base.faiss_index

    @property
    def n_overlay(self) -> int:
        """Tracks in the overlay (added or replaced since the base): what compaction folds back in."""
        return int(self._delta_ids.size + self._hidden.size)

    def __len__(self) -> int:
        return len(self.base) - int(self._hidden.size) + int(self._delta_ids.size)

    def ids(self) -> IdArray:
        base_ids = self.base.ids()
        if self._hidden.size:
            base_ids = base_ids[~np.isin(base_ids, self._hidden)]
        return np.concatenate([base_ids, self._delta_ids])

    def export(self) -> tuple[IdArray, FloatArray]:
        ids, vectors = self.base.export()
        if self._hidden.size:
            keep = ~np.isin(ids, self._hidden)
            ids, vectors = ids[keep], vectors[keep]
        if not self._delta_ids.size:
            return ids, vectors
        return np.concatenate([ids, self._delta_ids]), np.concatenate([vectors, self._delta_vectors])

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        exclude_ids: npt.ArrayLike | Iterable[int] | None = None,
    ) -> SearchResult:
        excluded = np.unique(as_ids([] if exclude_ids is None else exclude_ids, unique=False))
        base_excluded = np.union1d(excluded, self._hidden) if self._hidden.size else excluded
        from_base = self.base.search(queries, k, exclude_ids=base_excluded)
        if not self._delta_ids.size:
            return from_base
        matrix = normalized(as_matrix(queries, self.dim, what="queries"), what="queries")
        scores = matrix @ self._delta_vectors.T
        if excluded.size:
            scores[:, np.isin(self._delta_ids, excluded)] = -np.inf
        ids = np.broadcast_to(self._delta_ids, scores.shape)
        return _merged(from_base, ids, scores, k)

    # ---- applying segments ----------------------------------------------------------------------

    def with_segments(self, segments: Sequence[Segment]) -> LayeredIndex:
        """A new LayeredIndex with these segments (in version order, all newer than this) applied."""
        if not segments:
            return self
        # Latest state per id across the overlay and the new segments: a vector, or removed.
        delta = dict(zip(self._delta_ids.tolist(), range(self._delta_ids.size)))
        vectors = [self._delta_vectors]
        removed: set[int] = set()
        offset = self._delta_ids.size
        for segment in segments:
            if segment.version <= (self.version or 0):
                raise ValueError(f"segment {segment.version} is not newer than version {self.version}")
            for track_id in segment.removed.tolist():
                delta.pop(track_id, None)
                removed.add(track_id)
            for row, track_id in enumerate(segment.ids.tolist()):
                delta[track_id] = offset + row
                removed.discard(track_id)
            vectors.append(segment.vectors)
            offset += segment.ids.size
        all_vectors = np.concatenate(vectors) if len(vectors) > 1 else self._delta_vectors
        delta_ids = np.fromiter(delta.keys(), dtype=np.int64, count=len(delta))
        rows = np.fromiter(delta.values(), dtype=np.int64, count=len(delta))
        # A base track is hidden once any segment removed or replaced it; it stays hidden (a later add
        # of the same id lives in the delta).
        touched = np.union1d(np.fromiter(removed, dtype=np.int64, count=len(removed)), delta_ids)
        base_ids = self._base.sorted_ids()
        in_base = touched[np.isin(touched, base_ids, assume_unique=True)] if touched.size else touched
        hidden = np.union1d(self._hidden, in_base)
        return LayeredIndex(
            self._base,
            base_version=self.base_version,
            version=segments[-1].version,
            source=self.source,
            delta_ids=delta_ids,
            delta_vectors=np.ascontiguousarray(all_vectors[rows]),
            hidden=hidden,
        )


def _merged(from_base: SearchResult, delta_ids: IdArray, delta_scores: FloatArray, k: int) -> SearchResult:
    """The k best of the base's answer and the scored delta, per row, best first."""
    ids = np.concatenate([from_base.ids, delta_ids], axis=1)
    scores = np.concatenate([from_base.scores, delta_scores.astype(np.float32)], axis=1)
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = np.arange(ids.shape[0])[:, None]
    ids, scores = ids[rows, order], scores[rows, order]
    valid = np.isfinite(scores)
    ids = np.where(valid, ids, -1)
    width = int(np.max(np.count_nonzero(valid, axis=1))) if ids.shape[0] else 0
    return SearchResult(ids[:, :width].astype(np.int64), scores[:, :width].astype(np.float32))
