"""FAISS index of track embeddings: cosine kNN by track id, saved atomically, reloaded by readers.

No Django in here: the Django side feeds it (ids, vectors) from the database and calls these.
"""

from .config import IndexConfig
from .reader import IndexReader
from .runtime import gpu_count, limit_threads
from .store import IndexNotFoundError, IndexStore, StaleIndexError, WriterLockTimeout
from .vector_index import SearchResult, VectorIndex

__all__ = [
    "IndexConfig",
    "IndexNotFoundError",
    "IndexReader",
    "IndexStore",
    "SearchResult",
    "StaleIndexError",
    "VectorIndex",
    "WriterLockTimeout",
    "gpu_count",
    "limit_threads",
]
