"""Index configuration: one small dataclass, plus the rules that turn a catalog size into an index shape."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

IndexKind = Literal["flat", "ivf", "hnsw"]
ConfigKind = Literal["auto", "flat", "ivf", "hnsw"]

# faiss warns below 39 training points per centroid; fewer than that gives noisy centroids.
MIN_TRAIN_POINTS_PER_LIST = 39


@dataclass(frozen=True)
class IndexConfig:
    """How the index is built and searched.

    kind="auto" picks Flat (exact) while the catalog is small enough for brute force to be cheap, and
    `large_kind` above `flat_max_size`. IVF is the default large kind: it supports real deletions, trains
    in minutes on one core at 1M, and beat HNSW per CPU thread at equal recall in every bench run.
    Which nprobe reaches recall@10 0.95 depends on how spread the embeddings are: at 1M it is 2 on
    vectors grown between neighbouring tunes but out of reach at 64 on vectors grown at each tune's
    posterior sigma (bench/results/index_cpu_real*.json); tune it on the real catalog.
    """

    dim: int
    kind: ConfigKind = "auto"
    large_kind: Literal["ivf", "hnsw"] = "ivf"
    # Exact search costs ~10 ms per single query at 100k x 256 on one core (bench), ~1.3 ms at the
    # 13k-track catalog; and IVF with 4*sqrt(n) lists cannot be trained below ~24k vectors anyway.
    flat_max_size: int = 25_000
    # HNSW: M=32 is the usual recall/memory balance; efSearch is the query-time knob.
    hnsw_m: int = 32
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 128
    # IVF: nlist=None means "choose by size" (about 4 * sqrt(n)).
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16
    # 50 points per centroid clears faiss's 39 minimum; 15 k-means iterations are plenty on the sphere
    # and keep a 1M-vector retrain to about a minute of one core.
    ivf_train_points_per_list: int = 50
    ivf_train_iterations: int = 15
    # Searches in a web worker must not fan out over every core; 1 thread per query is the default.
    search_threads: int = 1
    use_gpu: bool = True
    # A tombstone share above this makes needs_rebuild() say so (HNSW cannot really delete).
    max_tombstone_fraction: float = 0.2
    # Appended segments are merged into a new base (IndexStore.compact) once there are this many, or
    # once their rows exceed this share of the base (at least of compact_min_rows): every reader
    # searches the segments' tracks by brute force and hides replaced base tracks, so the overlay must
    # stay small; and a new reader process reads every segment file once.
    compact_max_segments: int = 100
    compact_max_share: float = 0.05
    compact_min_rows: int = 20_000
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"dim must be positive, got {self.dim}")
        if self.kind not in ("auto", "flat", "ivf", "hnsw"):
            raise ValueError(f"kind must be auto, flat, ivf or hnsw, got {self.kind!r}")
        if self.large_kind not in ("ivf", "hnsw"):
            raise ValueError(f"large_kind must be ivf or hnsw, got {self.large_kind!r}")
        if self.ivf_nlist is not None and self.ivf_nlist <= 0:
            raise ValueError(f"ivf_nlist must be positive, got {self.ivf_nlist}")
        for name in (
            "hnsw_m",
            "hnsw_ef_construction",
            "hnsw_ef_search",
            "ivf_nprobe",
            "search_threads",
            "compact_max_segments",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def resolve_kind(self, n: int) -> IndexKind:
        """The concrete index kind for a build over n vectors."""
        if self.kind != "auto":
            return self.kind
        if n <= self.flat_max_size:
            return "flat"
        # IVF cannot be trained on too few points; Flat is exact and fast at that size anyway.
        if self.large_kind == "ivf" and n < min_ivf_size(self.nlist_for(n)):
            return "flat"
        return self.large_kind

    def nlist_for(self, n: int) -> int:
        """Number of IVF lists for n vectors: the configured value, or about 4 * sqrt(n)."""
        if self.ivf_nlist is not None:
            return self.ivf_nlist
        return max(1, int(round(4 * math.sqrt(max(n, 1)))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        known = {f.name for f in fields(cls)}
        # Ignore keys written by a newer version so an old reader can still load the manifest.
        return cls(**{key: value for key, value in data.items() if key in known})


def min_ivf_size(nlist: int) -> int:
    """Fewest vectors that can train nlist centroids sensibly."""
    return nlist * MIN_TRAIN_POINTS_PER_LIST
