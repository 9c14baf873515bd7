"""Input checks and normalization shared by building, adding and searching.

Every vector that enters FAISS goes through here, so cosine similarity is always a plain inner
product of unit vectors, and bad input fails with a message instead of silently poisoning the index.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


def as_matrix(vectors: npt.ArrayLike, dim: int, *, what: str) -> FloatArray:
    """A (n, dim) float32 C-contiguous copy; a single (dim,) vector becomes one row."""
    array = np.asarray(vectors)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a (n, {dim}) array, got shape {array.shape}")
    if array.shape[1] != dim:
        raise ValueError(f"{what} have dimension {array.shape[1]}, the index has dimension {dim}")
    matrix = np.array(array, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(matrix).all():
        bad = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise ValueError(f"{what} contain NaN or infinite values (first at row {bad})")
    return matrix


def normalized(matrix: FloatArray, *, what: str) -> FloatArray:
    """Rows scaled to unit length in place; a zero row has no direction, hence no cosine."""
    norms = np.linalg.norm(matrix, axis=1)
    zero = norms < 1e-12
    if zero.any():
        raise ValueError(f"{what} contain a zero vector (row {int(np.flatnonzero(zero)[0])}); cosine is undefined")
    matrix /= norms[:, None]
    return matrix


def as_ids(ids: npt.ArrayLike | Iterable[int], *, unique: bool) -> IdArray:
    """A 1-D int64 array of track ids; -1 is FAISS's "no result" marker, so ids must be >= 0."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (np.ndarray, Iterable)):
        raise ValueError(f"ids must be a sequence of integers, got {type(ids).__name__}")
    # Sets and generators would become 0-d object arrays under np.asarray; go through a list.
    array = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids))
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError("ids must fit in int64")
    result = array.astype(np.int64)
    if result.min() < 0:
        raise ValueError(f"ids must be non-negative, got {int(result.min())}")
    if unique and np.unique(result).size != result.size:
        raise ValueError("ids contain duplicates")
    return result
