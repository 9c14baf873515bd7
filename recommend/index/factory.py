"""Raw FAISS index construction for each kind. The benchmark builds through here too, so what it
measures is what production runs."""

from __future__ import annotations

import faiss
import numpy as np

from .config import IndexConfig, IndexKind, min_ivf_size
from .vectors import FloatArray


def new_flat(config: IndexConfig) -> faiss.IndexIDMap2:
    # IDMap2 keeps id -> position both ways, so deletions by track id are real deletions.
    return faiss.IndexIDMap2(faiss.IndexFlatIP(config.dim))


def new_hnsw(config: IndexConfig) -> faiss.IndexIDMap:
    hnsw = faiss.IndexHNSWFlat(config.dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = config.hnsw_ef_construction
    hnsw.hnsw.efSearch = config.hnsw_ef_search
    # Plain IDMap (not IDMap2): its id_map is the position -> track id table that tombstones rewrite to
    # -1, and it is saved inside the FAISS file, so a loaded index keeps its tombstones.
    return faiss.IndexIDMap(hnsw)


def new_trained_ivf(config: IndexConfig, train_vectors: FloatArray, nlist: int) -> faiss.IndexIVFFlat:
    """An empty IVF index whose centroids were trained on (a sample of) train_vectors."""
    n = train_vectors.shape[0]
    if n < min_ivf_size(nlist):
        raise ValueError(
            f"IVF with nlist={nlist} needs at least {min_ivf_size(nlist)} vectors to train, got {n}; "
            "use kind='auto' (falls back to flat) or a smaller ivf_nlist"
        )
    quantizer = faiss.IndexFlatIP(config.dim)
    index = faiss.IndexIVFFlat(quantizer, config.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    # Unit vectors: keep the centroids on the sphere so inner product to a centroid ranks like cosine.
    index.cp.spherical = True
    index.cp.seed = config.seed
    index.cp.niter = config.ivf_train_iterations
    sample_size = min(n, nlist * config.ivf_train_points_per_list)
    # A fixed-seed sample: the same data always gives the same centroids (rebuilds are reproducible).
    rng = np.random.default_rng(config.seed)
    sample = train_vectors if sample_size == n else train_vectors[np.sort(rng.choice(n, sample_size, replace=False))]
    # faiss would subsample again, with a warning, if the sample exceeded its own cap.
    index.cp.max_points_per_centroid = max(index.cp.max_points_per_centroid, config.ivf_train_points_per_list)
    index.train(np.ascontiguousarray(sample))
    index.nprobe = min(config.ivf_nprobe, nlist)
    return index


def new_index(config: IndexConfig, kind: IndexKind, vectors: FloatArray) -> faiss.Index:
    """An empty index of the given kind, ready for add_with_ids (IVF is trained on `vectors`)."""
    if kind == "flat":
        return new_flat(config)
    if kind == "hnsw":
        return new_hnsw(config)
    if kind == "ivf":
        return new_trained_ivf(config, vectors, config.nlist_for(vectors.shape[0]))
    raise ValueError(f"unknown index kind {kind!r}")
