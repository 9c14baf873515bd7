"""Vectors that look like real embeddings, grown from a catalog's (mu, sigma); shared by the index benches.

NumPy only (no faiss, no Django, no torch), so that bench/index_bench.py (CPU, faiss) and
bench/index_gpu_bench.py (GPU, torch, a machine without faiss) grow their vectors the same way.
"""

from __future__ import annotations

import numpy as np

K = 10


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise the rows of a float32 array in place (zero rows stay zero, as faiss.normalize_L2)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.maximum(norms, np.finfo(np.float32).tiny)
    return x


def grow(mu: np.ndarray, sigma: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` unit vectors: every mean once (while they fit), the rest sampled around random means."""
    n, dim = mu.shape
    out = np.empty((size, dim), dtype=np.float32)
    n_means = min(n, size)
    out[:n_means] = mu[rng.permutation(n)[:n_means]]
    chunk = 100_000
    for start in range(n_means, size, chunk):
        stop = min(size, start + chunk)
        source = rng.integers(0, n, stop - start)
        out[start:stop] = mu[source] + sigma[source] * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return normalize_rows(out)


def between_neighbours(mu: np.ndarray, near: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points on the segments between random tunes and one of their k nearest tunes
    (mu_i + u (mu_j - mu_i), u ~ U(0, 1)): new tunes that stay where real tunes lie."""
    i = rng.integers(0, mu.shape[0], count)
    j = near[i, rng.integers(0, near.shape[1], count)]
    u = rng.random((count, 1), dtype=np.float32)
    return mu[i] + u * (mu[j] - mu[i])


def grow_between(mu: np.ndarray, near: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Like grow(), but the new vectors lie between neighbouring tunes (see between_neighbours)."""
    n, dim = mu.shape
    out = np.empty((size, dim), dtype=np.float32)
    n_means = min(n, size)
    out[:n_means] = mu[rng.permutation(n)[:n_means]]
    for start in range(n_means, size, 100_000):
        stop = min(size, start + 100_000)
        out[start:stop] = between_neighbours(mu, near, stop - start, rng)
    return normalize_rows(out)


def queries_like(mu: np.ndarray, sigma: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Held-out queries drawn the same way (a new track near an existing one), not in the index."""
    source = rng.integers(0, mu.shape[0], count)
    queries = mu[source] + sigma[source] * rng.standard_normal((count, mu.shape[1]), dtype=np.float32)
    return np.ascontiguousarray(normalize_rows(queries))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found[:, :K], truth[:, :K]))
    return hits / (truth.shape[0] * K)


def load_embeddings(path) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) as float32 N x D from an .npz written by bench/export_embeddings.py."""
    with np.load(path) as data:
        mu, sigma = data["mu"].astype(np.float32), data["sigma"].astype(np.float32)
    if mu.shape != sigma.shape or mu.ndim != 2:
        raise SystemExit(f"mu {mu.shape} and sigma {sigma.shape} must both be N x D")
    return mu, sigma
