"""Process-level FAISS settings: thread count and the optional GPU.

Kept apart from the index classes because both are properties of the process (a web worker, a Celery
worker, the benchmark), not of an index.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import faiss

log = logging.getLogger(__name__)

_gpu_resources: Any = None


def limit_threads(n_threads: int) -> None:
    """Cap FAISS's OpenMP pool for this process.

    A web worker serving one query at a time gains nothing from an OpenMP team per query and, with
    several workers per host, would oversubscribe every core. OMP_NUM_THREADS only matters before
    OpenMP starts, so it is set for child processes too, and faiss is told directly for this one.
    """
    if n_threads <= 0:
        raise ValueError(f"n_threads must be positive, got {n_threads}")
    os.environ["OMP_NUM_THREADS"] = str(n_threads)
    faiss.omp_set_num_threads(n_threads)


def gpu_count() -> int:
    """Number of GPUs faiss can use: 0 with faiss-cpu (no get_num_gpus) or when none is visible."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(get_num_gpus())
    except Exception:  # a broken CUDA install must not take the recommender down
        log.warning("faiss.get_num_gpus() failed; searching on the CPU", exc_info=True)
        return 0


def to_gpu(index: faiss.Index) -> faiss.Index | None:
    """A GPU copy of a Flat or IVF index for searching, or None when that is not possible.

    The CPU index stays the master copy (adds, deletions and saves happen there); HNSW has no GPU
    version in faiss, so it always stays on the CPU.
    """
    global _gpu_resources
    if gpu_count() == 0:
        return None
    try:
        if _gpu_resources is None:
            # One resources object per process: it owns the scratch memory, which is costly to create.
            _gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_gpu_resources, 0, index)
    except Exception:
        log.warning("could not move the index to the GPU; searching on the CPU", exc_info=True)
        return None
