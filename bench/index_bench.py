"""CPU benchmark of the recommender's FAISS index: build time, single-thread queries/s, recall@10.

Not part of the test suite. The vectors must look like real embeddings, so the bench starts from an
.npz with `mu` and `sigma` (N x D: the latent posterior means and sigmas of the real catalog) and grows
it to each target size by sampling around the means at their own sigma. Until the trained model exists,
`--make-standin` writes a clustered, anisotropic stand-in of the same shape; results computed on it are
labelled as such. Isotropic Gaussian vectors are never used: they make every approximate index look
broken (GPU.md: HNSW recall@10 0.12 at 1M) and say nothing about a real catalog.

    python bench/index_bench.py                                  # stand-in, 100k and 1M
    python bench/index_bench.py --embeddings embeddings.npz      # real embeddings
    python bench/index_bench.py --sizes 100000 --quick           # a smaller sweep
"""

from __future__ import annotations

import argparse
import json
import os

# One thread for every query: set before faiss/numpy start their thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import platform
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.embedding_growth import (  # noqa: E402  (shared with bench/index_gpu_bench.py)
    K,
    between_neighbours,
    grow,
    grow_between,
    load_embeddings,
    queries_like,
    recall_at_k,
)
from recommend.index import IndexConfig, VectorIndex  # noqa: E402

STANDIN_LABEL = (
    "stand-in clustered vectors, re-run with real embeddings: python bench/index_bench.py --embeddings <file>"
)
TARGET = "at 1M vectors on one CPU thread: recall@10 >= 0.95 at >= 2,000 queries/s"


# ---- data -------------------------------------------------------------------------------------------


def make_standin(
    n_tracks: int = 13_000, dim: int = 256, n_clusters: int = 50, seed: int = 7
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Clustered, anisotropic (mu, sigma) shaped like a catalog's latent posteriors.

    Cluster centres are spread about as widely as the clusters themselves (so clusters touch, as
    regions and meters do in a real catalog), each cluster is an ellipsoid with a decaying spectrum
    in its own random orientation, cluster sizes are uneven, and each track's sigma is small next to
    the distance to its nearest neighbouring track.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    assignment = rng.choice(n_clusters, size=n_tracks, p=weights)
    centres = rng.normal(0.0, 0.35, size=(n_clusters, dim))
    spectrum = 1.0 / np.sqrt(np.arange(1, dim + 1))  # a few strong directions, a long weak tail
    mu = np.empty((n_tracks, dim), dtype=np.float32)
    for cluster in range(n_clusters):
        members = np.flatnonzero(assignment == cluster)
        if members.size == 0:
            continue
        rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        scales = spectrum * rng.lognormal(0.0, 0.3, size=dim)
        mu[members] = centres[cluster] + (rng.normal(size=(members.size, dim)) * scales) @ rotation.T
    # Nearest-neighbour distance between tracks sets the scale that sigma must stay small against.
    flat = faiss.IndexFlatL2(dim)
    flat.add(mu)
    probe = mu[rng.choice(n_tracks, 2000, replace=False)]
    distances, _ = flat.search(probe, 2)
    nn_distance = float(np.median(np.sqrt(np.maximum(distances[:, 1], 0))))
    noise_norm = 0.3 * nn_distance  # the expected length of a sigma-sized step
    sigma = (noise_norm / np.sqrt(dim)) * rng.lognormal(0.0, 0.25, size=(n_tracks, dim))
    description = {
        "n_tracks": n_tracks,
        "dim": dim,
        "n_clusters": n_clusters,
        "cluster_weights": "Dirichlet(2)",
        "cluster_centre_std": 0.35,
        "within_cluster_scales": "1/sqrt(rank) x lognormal(0, 0.3), random rotation per cluster",
        "median_nn_distance_between_tracks": round(nn_distance, 4),
        "sigma": "per track and dim, expected step length 0.3 x median nn distance, lognormal(0, 0.25) spread",
        "seed": seed,
    }
    return mu, sigma.astype(np.float32), description


def neighbour_pairs(mu: np.ndarray, k: int = 10) -> np.ndarray:
    """The k nearest other tunes (cosine) of every tune: [N, k] row indices."""
    unit = np.ascontiguousarray(mu / np.linalg.norm(mu, axis=1, keepdims=True), dtype=np.float32)
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    _, near = flat.search(unit, k + 1)
    return near[:, 1:]


# ---- measurement ------------------------------------------------------------------------------------


def timed_search(index: faiss.Index, queries: np.ndarray, params: Any = None) -> tuple[float, float, np.ndarray]:
    """Queries/s of one batch search on one thread, by CPU time and by wall time, and the ids found.

    CPU time of the searching thread is the headline: this machine is shared, and wall time counts
    the moments another process held the core. With one OpenMP thread faiss searches in this thread.
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    _, ids = index.search(queries, K, params=params)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return queries.shape[0] / cpu, queries.shape[0] / wall, ids


def single_query_ms(index: VectorIndex, queries: np.ndarray, n: int = 200) -> float:
    """Median latency of VectorIndex.search one query at a time (what a web request does)."""
    times = []
    for row in queries[:n]:
        start = time.perf_counter()
        index.search(row, K)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 4)


def build(
    ids: np.ndarray, vectors: np.ndarray, config: IndexConfig, threads: int
) -> tuple[VectorIndex, dict[str, float]]:
    """Build through VectorIndex (what production runs); wall seconds and CPU seconds of all threads."""
    faiss.omp_set_num_threads(threads)
    wall, cpu = time.perf_counter(), time.process_time()
    index = VectorIndex.build(ids, vectors, config)
    timing = {"build_s": round(time.perf_counter() - wall, 2), "build_cpu_s": round(time.process_time() - cpu, 2)}
    faiss.omp_set_num_threads(1)
    return index, timing


def bench_size(
    size: int, mu: np.ndarray, sigma: np.ndarray, args: argparse.Namespace, rng: np.random.Generator
) -> list[dict[str, Any]]:
    dim = mu.shape[1]
    rows: list[dict[str, Any]] = []
    steps = tqdm(total=3, desc=f"{size:,} vectors", unit="index")
    if args.grow == "neighbours":
        near = neighbour_pairs(mu)
        vectors = grow_between(mu, near, size, rng)
        queries = np.ascontiguousarray(between_neighbours(mu, near, args.queries, rng))
        faiss.normalize_L2(queries)
    else:
        vectors = grow(mu, sigma, size, rng)
        queries = queries_like(mu, sigma, args.queries, rng)
    ids = np.arange(size, dtype=np.int64)

    def record(
        index_name: str,
        params: dict[str, Any],
        timing: dict[str, float],
        threads: int,
        measured: tuple[float, float, np.ndarray],
        latency_ms: float | None = None,
    ) -> None:
        qps, qps_wall, found = measured
        row = {
            "size": size,
            "index": index_name,
            "params": params,
            **timing,
            "build_threads": threads,
            "query_threads": 1,
            "qps": round(qps, 1),
            "qps_wall": round(qps_wall, 1),
            "recall_at_10": round(recall_at_k(found, truth), 4),
        }
        if latency_ms is not None:
            row["single_query_ms_p50"] = latency_ms
        rows.append(row)
        tqdm.write(
            f"  {index_name:5s} {json.dumps(params):48s} build {timing['build_s']:7.1f}s  {qps:9.0f} q/s "
            f"(wall {qps_wall:7.0f})  recall@10 {row['recall_at_10']:.4f}"
        )

    # Flat: exact, so its answers are the ground truth (ids are positions here).
    flat, timing = build(ids, vectors, IndexConfig(dim=dim, kind="flat", use_gpu=False), 1)
    measured = timed_search(flat.faiss_index, queries)
    truth = measured[2]
    record("flat", {}, timing, 1, measured, single_query_ms(flat, queries))
    del flat
    steps.update()

    # HNSW32: efSearch sweep. Building is the slow part; more threads only for the build, if asked.
    hnsw_threads = args.hnsw_build_threads_large if size >= 1_000_000 else 1
    hnsw_config = IndexConfig(dim=dim, kind="hnsw", hnsw_m=32, hnsw_ef_construction=args.ef_construction, use_gpu=False)
    hnsw, timing = build(ids, vectors, hnsw_config, hnsw_threads)
    for ef in args.ef_search:
        measured = timed_search(hnsw.faiss_index, queries, faiss.SearchParametersHNSW(efSearch=ef))
        latency = single_query_ms(hnsw, queries) if ef == hnsw_config.hnsw_ef_search else None
        record(
            "hnsw",
            {"M": 32, "efConstruction": args.ef_construction, "efSearch": ef},
            timing,
            hnsw_threads,
            measured,
            latency,
        )
    del hnsw
    steps.update()

    # IVF-Flat: nlist sweep around the 4 * sqrt(n) default, nprobe sweep for each.
    default_nlist = IndexConfig(dim=dim).nlist_for(size)
    for factor in args.nlist_factors:
        nlist = max(1, int(round(default_nlist * factor)))
        ivf_config = IndexConfig(dim=dim, kind="ivf", ivf_nlist=nlist, use_gpu=False)
        ivf, timing = build(ids, vectors, ivf_config, 1)
        for nprobe in args.nprobe:
            if nprobe > nlist:
                continue
            measured = timed_search(ivf.faiss_index, queries, faiss.SearchParametersIVF(nprobe=nprobe))
            latency = single_query_ms(ivf, queries) if nprobe == ivf_config.ivf_nprobe else None
            record("ivf", {"nlist": nlist, "nprobe": nprobe}, timing, 1, measured, latency)
        del ivf
    steps.update()
    steps.close()
    return rows


# ---- report -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu_model,
        "cpu_cores_visible": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "faiss_version": faiss.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def best_meeting_target(rows: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Per index kind, the fastest setting with recall@10 >= 0.95 at this size."""
    best = []
    for kind in ("flat", "hnsw", "ivf"):
        ok = [r for r in rows if r["size"] == size and r["index"] == kind and r["recall_at_10"] >= 0.95]
        if ok:
            top = max(ok, key=lambda r: r["qps"])
            best.append(
                {k: top[k] for k in ("index", "params", "qps", "qps_wall", "recall_at_10", "build_s")}
                | {"meets_target_2000_qps": top["qps"] >= 2000}
            )
    return best


def plot(rows: list[dict[str, Any]], path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        at_size = [r for r in rows if r["size"] == size]
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in at_size:
            key = r["index"] if r["index"] != "ivf" else f"ivf nlist={r['params']['nlist']}"
            groups.setdefault(key, []).append(r)
        for key, group in groups.items():
            ax.plot([r["recall_at_10"] for r in group], [r["qps"] for r in group], marker="o", label=key)
        ax.axhline(2000, color="grey", linestyle=":", linewidth=1)
        ax.axvline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 vs exact")
        ax.set_ylabel("queries/s, one CPU thread")
        ax.set_title(f"{size:,} vectors")
        ax.legend(fontsize=8)
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def spread_summary(mu: np.ndarray, sigma: np.ndarray) -> dict[str, Any]:
    """How far posterior sampling moves a tune, next to how far apart real tunes are."""
    unit = np.ascontiguousarray(mu / np.linalg.norm(mu, axis=1, keepdims=True), dtype=np.float32)
    probe = np.random.default_rng(1).choice(len(mu), min(2000, len(mu)), replace=False)
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    sims, _ = flat.search(unit[probe], 2)
    sample = mu[probe] + sigma[probe] * np.random.default_rng(2).standard_normal(mu[probe].shape, dtype=np.float32)
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    variance = mu.var(axis=0)
    return {
        "median_unit_distance_tune_to_nearest_tune": round(
            float(np.median(np.sqrt(np.maximum(0, 2 - 2 * sims[:, 1])))), 4
        ),
        "median_unit_distance_posterior_sample_to_its_tune": round(
            float(np.median(np.linalg.norm(sample - unit[probe], axis=1))), 4
        ),
        "mean_sum_of_sigma_squared": round(float((sigma**2).sum(axis=1).mean()), 3),
        "sum_of_variances_of_mu_across_tunes": round(float(variance.sum()), 3),
        "dims_with_variance_of_mu_over_0_1": int((variance > 0.1).sum()),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, help=".npz with mu and sigma (N x D); default: a stand-in")
    parser.add_argument(
        "--grow",
        choices=["posterior", "neighbours"],
        default="posterior",
        help="posterior: mu + sigma * N(0, 1) around random tunes (default); neighbours: points "
        "between a random tune and one of its 10 nearest tunes (for a VAE whose unused "
        "latent dimensions have sigma near 1, posterior sampling drowns the real structure)",
    )
    parser.add_argument("--label", help="replaces the default label of the result")
    parser.add_argument("--make-standin", type=Path, help="write the stand-in .npz here and exit")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--ef-construction", type=int, default=IndexConfig(dim=1).hnsw_ef_construction)
    parser.add_argument(
        "--nlist-factors",
        type=float,
        nargs="+",
        default=[0.25, 1.0],
        help="nlist as a multiple of the default 4*sqrt(n)",
    )
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument(
        "--hnsw-build-threads-large",
        type=int,
        default=2,
        help="threads for the HNSW build at >= 1M vectors (queries always use one)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/index_cpu.json")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    faiss.omp_set_num_threads(1)
    if args.make_standin:
        mu, sigma, _ = make_standin()
        np.savez(args.make_standin, mu=mu, sigma=sigma)
        print(f"wrote {args.make_standin}: mu and sigma {mu.shape}")
        return
    if args.embeddings:
        mu, sigma = load_embeddings(args.embeddings)
        label = f"real embeddings from {args.embeddings.name}, grown by {args.grow} sampling"
        data_description: dict[str, Any] = {"source": str(args.embeddings), "n_tracks": mu.shape[0], "dim": mu.shape[1]}
    else:
        mu, sigma, data_description = make_standin()
        label = STANDIN_LABEL
        data_description = {"source": "make_standin() in this file"} | data_description

    if args.label:
        label = args.label
    if args.embeddings:
        data_description["spread"] = spread_summary(mu, sigma)
    rng = np.random.default_rng(args.seed)
    result: dict[str, Any] = {
        "label": label,
        "target": TARGET,
        "data": data_description
        | {
            "grown_by": (
                "each mean once, then samples mu + sigma * N(0, 1) around uniformly chosen means; unit-normalized"
                if args.grow == "posterior"
                else "each mean once, then mu_i + u (mu_j - mu_i), u ~ U(0, 1), i a uniformly chosen tune and j "
                "one of its 10 nearest tunes (cosine); unit-normalized"
            ),
            "queries": f"{args.queries} held-out samples drawn the same way (not in the index)",
        },
        "machine": machine(),
        "settings": {
            "k": K,
            "query_threads": 1,
            "queries_per_measure": args.queries,
            "qps_measured_as": "one batch search of all queries on one OpenMP thread; qps divides by "
            "the searching thread's CPU time (the machine is shared), qps_wall by "
            "elapsed time",
            "build_s": "elapsed seconds of VectorIndex.build (normalize, train for IVF, add); "
            "build_cpu_s: CPU seconds of all threads",
            "single_query_ms_p50": "median elapsed ms of 200 VectorIndex.search calls with one query "
            "each, at the default efSearch/nprobe (includes the wrapper's "
            "checks and filtering; affected by other load on the machine)",
        },
        "results": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        result["results"].extend(bench_size(size, mu, sigma, args, rng))
        result["best_meeting_recall_0_95"] = {
            str(s): best_meeting_target(result["results"], s)
            for s in args.sizes
            if any(r["size"] == s for r in result["results"])
        }
        # Written after every size, so a long run interrupted at 1M keeps its 100k results.
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        plot(result["results"], args.out.with_suffix(".png"), label)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
