"""FAISS index of track embeddings: cosine kNN by track id; a base plus append-only segments on disk,
which readers apply as they come (store.py, layered.py, reader.py).

No Django in here: the Django side feeds it (ids, vectors) from the database and calls these.
"""

from .config import IndexConfig
from .layered import LayeredIndex
from .reader import IndexReader
from .runtime import gpu_count, limit_threads
from .store import IndexCorruptError, IndexNotFoundError, IndexStore, StaleIndexError, WriterLockTimeout
from .vector_index import SearchResult, VectorIndex

__all__ = [
    "IndexConfig",
    "IndexCorruptError",
    "IndexNotFoundError",
    "IndexReader",
    "IndexStore",
    "LayeredIndex",
    "SearchResult",
    "StaleIndexError",
    "VectorIndex",
    "WriterLockTimeout",
    "gpu_count",
    "limit_threads",
]
