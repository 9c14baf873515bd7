"""Small clustered data and configs that make every index kind exact enough to compare with brute force."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the suite shares the machine; one thread is plenty

import faiss
import numpy as np
import pytest

from recommend.index import IndexConfig

faiss.omp_set_num_threads(1)

DIM = 16
N = 1200
KINDS = ["flat", "ivf", "hnsw"]


def clustered(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Points around 12 centres: structure like real embeddings, and no exact ties in similarity."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    return (centres[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force cosine top-k ids, the reference every kind must match."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    order = np.argsort(-(q @ unit.T), axis=1, kind="stable")[:, :k]
    return ids[order]


def config_for(kind: str, **overrides: object) -> IndexConfig:
    # nprobe = nlist and a large efSearch: approximate kinds behave exactly at this size, so results
    # can be compared id for id with Flat and with brute force.
    settings: dict[str, object] = {
        "dim": DIM,
        "kind": kind,
        "ivf_nlist": 16,
        "ivf_nprobe": 16,
        "hnsw_m": 16,
        "hnsw_ef_construction": 80,
        "hnsw_ef_search": 256,
        "use_gpu": False,
    }
    settings.update(overrides)
    return IndexConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(N, dtype=np.int64) * 7 + 3  # track ids are not positions
    return ids, clustered(N)


@pytest.fixture
def queries() -> np.ndarray:
    return clustered(20, seed=1)
