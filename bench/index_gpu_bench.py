"""GPU benchmark of exact nearest-neighbour search for the recommender: torch matmul + topk (k=10).

Not part of the test suite, and no Django: it needs torch, numpy and matplotlib (faiss optional).
The vectors look like real embeddings: they are grown from an .npz of the catalog's posterior means and
per-dimension sigmas (bench/export_embeddings.py) by the method of `grow` in bench/embedding_growth.py
(every tune's mean once, the rest mu + sigma * N(0, 1) around uniformly chosen tunes, rows L2-normalised:
the index ranks by cosine = inner product of unit vectors), done with torch on the device so 10M vectors
take seconds. Queries are held-out samples drawn the same way (`queries_like`).

For every size and method (torch fp32 = the exact reference, fp16, bf16, and on CUDA fp16 vectors with
fp32 scores) it measures: upload time (host fp32 -> device, cast), one-query latency p50/p99 (host query
in, host ids out, synchronised around each), batched throughput (queries/s) at query batches of 1, 1024
and 10,000, and recall@10 against the fp32 results on 1,000 queries. Scores are computed in chunks of the
database so a 10,000-query batch never holds more than --score-budget-gb of scores; a database larger than
the device's free memory stays in pinned host memory and is streamed chunk by chunk (marked in the row).
If faiss with GPU support is importable it also measures GpuIndexFlatIP and GpuIndexIVFFlat (nlist 4096,
nprobe 1..64); otherwise the JSON says "faiss_gpu": "not installed".

Every section runs in try/except and lands in the JSON (written after every section, so a run killed
part-way keeps what it measured), next to a PNG of the same name.

    python bench/index_gpu_bench.py --embeddings /tmp/benchvar/embeddings.npz --out bench/results/index_gpu.json
    python bench/index_gpu_bench.py --embeddings e.npz --sizes 20000 --device cpu --out /tmp/index_gpu_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# bench/ itself on the path (not the repository root): a package named `bench` installed on the GPU
# machine could otherwise shadow this folder, which has no __init__.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from embedding_growth import (  # noqa: E402  (the same helpers as bench/index_bench.py)
    K,
    between_neighbours,
    grow,
    load_embeddings,
    normalize_rows,
    queries_like,
    recall_at_k,
)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# method -> (storage dtype of vectors and queries, dtype of the scores that topk ranks)
METHODS = {
    "torch-fp32": ("fp32", "fp32"),
    "torch-fp16": ("fp16", "fp16"),
    "torch-bf16": ("bf16", "bf16"),
    "torch-fp16-fp32scores": ("fp16", "fp32"),  # torch.mm(..., out_dtype=float32): CUDA only
}
FAISS_NPROBE = [1, 2, 4, 8, 16, 32, 64]


# ---- bookkeeping ------------------------------------------------------------------------------------


class Run:
    """The result document, its error list and the time budget; written to disk after every section."""

    def __init__(self, args: argparse.Namespace, result: dict[str, Any]):
        self.args, self.result, self.started = args, result, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def over_budget(self) -> bool:
        return self.elapsed() > self.args.time_budget_s

    def error(self, where: str, exc: BaseException, row: dict[str, Any] | None = None) -> None:
        entry = {
            "where": where,
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-3000:],
        }
        self.result["errors"].append(entry)
        if row is not None:
            row.setdefault("errors", {})[where] = entry["error"]
        print(f"  ERROR in {where}: {entry['error'][:300]}", flush=True)

    def attempt(self, where: str, fn: Callable[[], Any], row: dict[str, Any] | None = None) -> Any:
        """fn() or None; an exception (CUDA out of memory included) is recorded, and the run goes on."""
        if self.over_budget():
            skipped = f"skipped: time budget of {self.args.time_budget_s} s spent"
            if row is not None:
                row.setdefault("skipped", []).append(where)
            self.result.setdefault("skipped", []).append(where)
            print(f"  {where}: {skipped}", flush=True)
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one shot on the GPU: record and continue
            self.error(where, exc, row)
            empty_cache()
            return None

    def write(self) -> None:
        self.result["elapsed_s"] = round(self.elapsed(), 1)
        out = self.args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(self.result, indent=2, default=str) + "\n")
        tmp.replace(out)


def empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- vectors ----------------------------------------------------------------------------------------


def normalize_torch_(x: torch.Tensor) -> torch.Tensor:
    return x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(torch.finfo(torch.float32).tiny))


def grow_torch(
    mu: torch.Tensor, sigma: torch.Tensor, size: int, gen: torch.Generator, out: torch.Tensor, chunk: int = 1_000_000
) -> torch.Tensor:
    """bench/embedding_growth.grow on the device: every mean once (in random order, while they fit),
    the rest mu + sigma * N(0, 1) around uniformly chosen means; unit rows. `out` is (size, dim) fp32,
    on the device or in (pinned) host memory."""
    n, dim = mu.shape
    n_means = min(n, size)
    out[:n_means] = normalize_torch_(mu[torch.randperm(n, generator=gen, device=mu.device)[:n_means]].clone())
    for start in range(n_means, size, chunk):
        stop = min(size, start + chunk)
        source = torch.randint(0, n, (stop - start,), generator=gen, device=mu.device)
        block = torch.randn((stop - start, dim), generator=gen, device=mu.device, dtype=torch.float32)
        block.mul_(sigma[source]).add_(mu[source])
        out[start:stop] = normalize_torch_(block)
    return out


def neighbours_torch(mu: torch.Tensor, k: int = 10) -> torch.Tensor:
    """The k nearest other tunes (cosine) of every tune, [N, k] (bench/index_bench.neighbour_pairs)."""
    unit = normalize_torch_(mu.clone())
    near = []
    for start in range(0, unit.shape[0], 4096):
        near.append((unit[start : start + 4096] @ unit.T).topk(k + 1, dim=1).indices[:, 1:])
    return torch.cat(near)


def grow_between_torch(
    mu: torch.Tensor, near: torch.Tensor, size: int, gen: torch.Generator, out: torch.Tensor, chunk: int = 1_000_000
) -> torch.Tensor:
    """bench/embedding_growth.grow_between on the device: the new vectors lie between neighbouring tunes."""
    n, _ = mu.shape
    n_means = min(n, size)
    out[:n_means] = normalize_torch_(mu[torch.randperm(n, generator=gen, device=mu.device)[:n_means]].clone())
    for start in range(n_means, size, chunk):
        count = min(size, start + chunk) - start
        i = torch.randint(0, n, (count,), generator=gen, device=mu.device)
        j = near[i, torch.randint(0, near.shape[1], (count,), generator=gen, device=mu.device)]
        u = torch.rand((count, 1), generator=gen, device=mu.device)
        out[start : start + count] = normalize_torch_(mu[i] + u * (mu[j] - mu[i]))
    return out


# ---- search -----------------------------------------------------------------------------------------


class Searcher:
    """Exact top-k by inner product over a database tensor (N, D), chunked so the scores of one chunk
    of database rows for the whole query batch stay within the score budget."""

    def __init__(self, db: torch.Tensor, device: torch.device, scores_dtype: torch.dtype, budget_bytes: int):
        self.db, self.device, self.scores_dtype, self.budget = db, device, scores_dtype, budget_bytes
        self.streamed = db.device != device
        self.out32 = scores_dtype != db.dtype

    def chunk_rows(self, batch: int) -> int:
        item = torch.finfo(self.scores_dtype).bits // 8
        rows = max(K + 1, self.budget // max(1, batch * item))
        if self.streamed:  # the streamed copy of a chunk of rows must fit the budget too
            rows = min(rows, max(K + 1, self.budget // (self.db.shape[1] * self.db.element_size())))
        return min(self.db.shape[0], rows)

    def scores(self, q: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        if self.out32:
            return torch.mm(q, part.T, out_dtype=self.scores_dtype)
        return q @ part.T

    def search(self, q: torch.Tensor, k: int = K, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, ids) on the device, best first. `rows`: only the first rows (for warm-up)."""
        n = self.db.shape[0] if rows is None else min(rows, self.db.shape[0])
        step = self.chunk_rows(q.shape[0])
        if n <= step and not self.streamed:
            return self.scores(q, self.db[:n]).topk(k, dim=1)
        values, ids = [], []
        for start in range(0, n, step):
            part = self.db[start : min(n, start + step)]
            if self.streamed:
                part = part.to(self.device, non_blocking=True)
            v, i = self.scores(q, part).topk(min(k, part.shape[0]), dim=1, sorted=False)
            values.append(v)
            ids.append(i.add_(start))
        v, pos = torch.cat(values, dim=1).topk(k, dim=1)
        return v, torch.cat(ids, dim=1).gather(1, pos)


def latency_ms(
    one_query: Callable[[np.ndarray], Any], queries: np.ndarray, device: torch.device, warmup: int = 5
) -> dict[str, float]:
    """One query at a time from the host, ids back on the host, synchronised around each."""
    for row in queries[:warmup]:
        one_query(row[None])
    times = []
    for row in queries:
        sync(device)
        start = time.perf_counter()
        one_query(row[None])
        sync(device)
        times.append(time.perf_counter() - start)
    ms = 1000 * np.asarray(times)
    return {
        "p50": round(float(np.percentile(ms, 50)), 4),
        "p99": round(float(np.percentile(ms, 99)), 4),
        "mean": round(float(ms.mean()), 4),
        "max": round(float(ms.max()), 4),
        "n": len(times),
    }


def throughput(
    search_batch: Callable[[Any], Any],
    pool: Any,
    batch: int,
    device: torch.device,
    min_seconds: float,
    warm: Callable[[Any], Any],
) -> dict[str, Any]:
    """Queries/s of back-to-back searches of `batch` queries (cycling through the pool), synchronised
    only at the ends: at least one batch, then more until min_seconds or the pool's worth of queries."""
    pool_size = pool.shape[0]
    batch = min(batch, pool_size)
    warm(pool[:batch])
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:  # the host runs ahead of the device; the final synchronize waits for all that was queued
        offset = (reps * batch) % max(1, pool_size - batch + 1)
        search_batch(pool[offset : offset + batch])
        reps += 1
        if reps * batch >= pool_size or time.perf_counter() - start >= min_seconds:
            break
    sync(device)
    elapsed = time.perf_counter() - start
    return {"qps": round(reps * batch / elapsed, 1), "batch_ms": round(1000 * elapsed / reps, 3), "batches": reps}


# ---- per size ---------------------------------------------------------------------------------------


def fits_on_device(nbytes: int, device: torch.device, args: argparse.Namespace) -> bool:
    if device.type != "cuda":
        return True
    if args.max_resident_gb is not None:
        return nbytes <= args.max_resident_gb * 2**30
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes + 2 * args.score_budget_gb * 2**30 <= 0.85 * free


def host_tensor(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    pin = device.type == "cuda"
    return torch.empty(shape, dtype=dtype, pin_memory=pin)


def grow_database(
    run: Run,
    size: int,
    mu_t: torch.Tensor,
    sigma_t: torch.Tensor,
    near_t: torch.Tensor | None,
    how: str,
    device: torch.device,
    info: dict[str, Any],
) -> torch.Tensor:
    """The grown fp32 unit vectors, on the device (or in pinned host memory when they do not fit), timed."""
    args = run.args
    dim = mu_t.shape[1]
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed + size + (0 if how == "posterior" else 1))
    on_device = fits_on_device(2 * size * dim * 4, device, args)
    sync(device)
    start = time.perf_counter()
    if args.grow_with == "numpy" and how == "posterior":
        out = torch.from_numpy(
            grow(mu_t.cpu().numpy(), sigma_t.cpu().numpy(), size, np.random.default_rng(args.seed + size))
        )
        info[f"grow_{how}_with"] = "numpy on the host (bench/embedding_growth.grow)"
    else:
        out = (
            torch.empty((size, dim), dtype=torch.float32, device=device)
            if on_device
            else host_tensor((size, dim), torch.float32, device)
        )
        if how == "posterior":
            grow_torch(mu_t, sigma_t, size, gen, out)
        else:
            grow_between_torch(mu_t, near_t, size, gen, out)
        info[f"grow_{how}_with"] = f"torch on {device}" + ("" if on_device else ", written to pinned host memory")
    sync(device)
    info[f"grow_{how}_s"] = round(time.perf_counter() - start, 3)
    return out


def make_database(
    run: Run, size: int, mu_t: torch.Tensor, sigma_t: torch.Tensor, device: torch.device, info: dict[str, Any]
) -> np.ndarray:
    """The posterior-grown fp32 unit vectors as a host numpy array (what the uploads start from)."""
    out = grow_database(run, size, mu_t, sigma_t, None, "posterior", device, info)
    start = time.perf_counter()
    host = out.cpu().numpy() if out.device.type != "cpu" else out.numpy()
    info["download_s"] = round(time.perf_counter() - start, 3)
    del out
    empty_cache()
    return host


def upload(
    host: np.ndarray, dtype: torch.dtype, device: torch.device, args: argparse.Namespace
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Host fp32 -> device tensor of `dtype` (or pinned host memory, streamed at search time, when the
    database does not fit), timed."""
    itemsize = torch.finfo(dtype).bits // 8
    nbytes = host.shape[0] * host.shape[1] * itemsize
    resident = fits_on_device(nbytes + host.shape[0] * host.shape[1] * 4, device, args)
    sync(device)
    start = time.perf_counter()
    source = torch.from_numpy(host)
    if resident:
        db = source.to(device, non_blocking=False).to(dtype).contiguous()
    else:
        db = host_tensor(tuple(host.shape), dtype, device)
        db.copy_(source)
    sync(device)
    seconds = time.perf_counter() - start
    return db, {
        "upload_s": round(seconds, 3),
        "db_bytes": nbytes,
        "resident": "device" if resident or device.type == "cpu" else "pinned host memory, streamed",
    }


def torch_method(
    run: Run,
    size: int,
    method: str,
    host: np.ndarray,
    pool: np.ndarray,
    truth: dict[str, Any],
    device: torch.device,
    size_info: dict[str, Any],
) -> dict[str, Any]:
    args = run.args
    storage, scores = METHODS[method]
    row: dict[str, Any] = {"size": size, "method": method, "storage": storage, "scores": scores, "dim": host.shape[1]}
    run.result["results"].append(row)
    if scores != storage and device.type != "cuda":
        row["skipped"] = ["all: fp32 scores from fp16 inputs (torch.mm out_dtype) are CUDA-only"]
        return row
    dtype = DTYPES[storage]
    built = run.attempt(f"{size}/{method}/upload", lambda: upload(host, dtype, device, args), row)
    if built is None:
        return row
    db, timing = built
    row.update(timing)
    searcher = Searcher(db, device, DTYPES[scores], int(args.score_budget_gb * 2**30))
    pool_dev = torch.from_numpy(pool).to(device).to(dtype)
    recall_q = pool_dev[: args.recall_queries]

    def recall() -> None:
        sync(device)
        start = time.perf_counter()
        _, ids = searcher.search(recall_q, K + 1 if method == "torch-fp32" else K)
        found = ids.cpu().numpy()
        row["recall_search_s"] = round(time.perf_counter() - start, 3)
        if method == "torch-fp32":
            truth["ids"] = found
            row["recall_at_10_vs_fp32"] = 1.0
        elif "ids" in truth:
            row["recall_at_10_vs_fp32"] = round(recall_at_k(found, truth["ids"][:, :K]), 4)
            row["top1_agrees_with_fp32"] = round(float(np.mean(found[:, 0] == truth["ids"][:, 0])), 4)

    run.attempt(f"{size}/{method}/recall", recall, row)

    if method == "torch-fp32":
        run.attempt(f"{size}/{method}/score_stats", lambda: score_stats(searcher, recall_q, size_info), row)
        run.attempt(f"{size}/{method}/fp64_check", lambda: fp64_check(searcher, pool, truth, device, args, row), row)

    def one_query(q: np.ndarray) -> np.ndarray:
        return searcher.search(torch.from_numpy(q).to(device).to(dtype))[1].cpu().numpy()

    latency_queries = pool[args.recall_queries : args.recall_queries + args.latency_queries]
    row["latency_ms"] = run.attempt(
        f"{size}/{method}/latency", lambda: latency_ms(one_query, latency_queries, device), row
    )
    row["qps"], row["batch_ms"], row["chunk_rows"] = {}, {}, {}
    for batch in args.batches:
        measured = run.attempt(
            f"{size}/{method}/throughput_{batch}",
            lambda: throughput(
                lambda q: searcher.search(q),
                pool_dev,
                batch,
                device,
                args.min_seconds,
                lambda q: searcher.search(q, rows=searcher.chunk_rows(q.shape[0])),
            ),
            row,
        )
        if measured:
            row["qps"][str(batch)] = measured["qps"]
            row["batch_ms"][str(batch)] = measured["batch_ms"]
            row["chunk_rows"][str(batch)] = searcher.chunk_rows(min(batch, pool.shape[0]))
    del searcher, db, pool_dev, recall_q
    empty_cache()
    return row


def score_stats(searcher: Searcher, queries: torch.Tensor, size_info: dict[str, Any]) -> None:
    """How close the neighbours' scores are: small gaps are what fp16/bf16 rounding turns into misses."""
    values, _ = searcher.search(queries, K + 1)
    v = values.double().cpu().numpy()
    size_info["fp32_scores_of_recall_queries"] = {
        "top1_median": round(float(np.median(v[:, 0])), 5),
        "top10_median": round(float(np.median(v[:, K - 1])), 5),
        "gap_10th_to_11th_median": float(f"{np.median(v[:, K - 1] - v[:, K]):.3g}"),
        "fp16_spacing_near_top1": float(f"{np.spacing(np.float16(np.median(v[:, 0]))):.3g}"),
        "bf16_spacing_near_top1": round(2.0 ** (np.floor(np.log2(max(np.median(v[:, 0]), 1e-30))) - 7), 6),
    }


def fp64_check(
    searcher: Searcher,
    pool: np.ndarray,
    truth: dict[str, Any],
    device: torch.device,
    args: argparse.Namespace,
    row: dict[str, Any],
) -> None:
    """Recall@10 of the fp32 results against float64 on 100 queries (is fp32 itself exact enough)."""
    if "ids" not in truth:
        return
    count = min(100, args.recall_queries)
    q = torch.from_numpy(pool[:count]).to(device).double()
    db = searcher.db
    step = max(K, min(db.shape[0], int(args.score_budget_gb * 2**30) // (8 * (count + db.shape[1]))))
    values, ids = [], []
    for start in range(0, db.shape[0], step):
        part = db[start : start + step].to(device).double()
        v, i = (q @ part.T).topk(K, dim=1)
        values.append(v)
        ids.append(i + start)
    _, pos = torch.cat(values, 1).topk(K, dim=1)
    exact = torch.cat(ids, 1).gather(1, pos).cpu().numpy()
    row["fp32_recall_at_10_vs_fp64_100_queries"] = round(recall_at_k(truth["ids"][:count, :K], exact), 4)


def extra_recall(
    run: Run,
    size: int,
    how: str,
    mu_t: torch.Tensor,
    near_t: torch.Tensor,
    near_np: np.ndarray,
    mu: np.ndarray,
    device: torch.device,
    size_info: dict[str, Any],
) -> None:
    """Recall (only) of the reduced-precision methods when the catalog grows between neighbouring tunes
    (bench/index_bench.py --grow neighbours), with queries drawn the same way."""
    args = run.args
    grown = grow_database(run, size, mu_t, mu_t, near_t, how, device, size_info)
    queries = np.ascontiguousarray(
        normalize_rows(between_neighbours(mu, near_np, args.recall_queries, np.random.default_rng(args.seed + 7)))
    )
    truth = None
    out: dict[str, Any] = {}
    for method in args.methods:
        storage, scores = METHODS[method]
        if scores != storage and device.type != "cuda":
            continue
        db = grown.to(DTYPES[storage])
        searcher = Searcher(db, device, DTYPES[scores], int(args.score_budget_gb * 2**30))
        ids = searcher.search(torch.from_numpy(queries).to(device).to(DTYPES[storage]))[1].cpu().numpy()
        if method == "torch-fp32":
            truth = ids
        if truth is not None:
            out[method] = round(recall_at_k(ids, truth), 4)
        del searcher, db
        empty_cache()
    size_info[f"recall_at_10_vs_fp32_{how}_growth"] = out


# ---- faiss ------------------------------------------------------------------------------------------


def faiss_available(args: argparse.Namespace) -> tuple[Any, str]:
    try:
        import faiss
    except Exception as exc:  # noqa: BLE001
        return None, f"import faiss failed: {type(exc).__name__}: {exc}"
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if args.faiss_on_cpu:
        return faiss, f"faiss {faiss.__version__} on the CPU (--faiss-on-cpu, a test of this code path)"
    if gpus <= 0:
        return None, f"faiss {getattr(faiss, '__version__', '?')} imports but get_num_gpus() = {gpus}"
    return faiss, f"faiss {faiss.__version__}, {gpus} GPU(s)"


def faiss_size(
    run: Run, faiss: Any, size: int, host: np.ndarray, pool: np.ndarray, truth: dict[str, Any], device: torch.device
) -> None:
    args = run.args
    dim = host.shape[1]
    on_cpu = args.faiss_on_cpu
    res = None if on_cpu else faiss.StandardGpuResources()

    def measure(name: str, index: Any, params: dict[str, Any], build: dict[str, Any]) -> None:
        row: dict[str, Any] = {"size": size, "method": name, "params": params, **build, "dim": dim}
        run.result["results"].append(row)

        def recall() -> None:
            _, found = index.search(pool[: args.recall_queries], K)
            if "ids" in truth:
                row["recall_at_10_vs_fp32"] = round(recall_at_k(found, truth["ids"][:, :K]), 4)

        run.attempt(f"{size}/{name}{params}/recall", recall, row)
        latency_queries = pool[args.recall_queries : args.recall_queries + args.latency_queries]
        row["latency_ms"] = run.attempt(
            f"{size}/{name}{params}/latency",
            lambda: latency_ms(lambda q: index.search(q, K), latency_queries, device),
            row,
        )
        row["qps"], row["batch_ms"] = {}, {}
        for batch in args.batches:
            measured = run.attempt(
                f"{size}/{name}{params}/throughput_{batch}",
                lambda: throughput(
                    lambda q: index.search(q, K), pool, batch, device, args.min_seconds, lambda q: index.search(q, K)
                ),
                row,
            )
            if measured:
                row["qps"][str(batch)] = measured["qps"]
                row["batch_ms"][str(batch)] = measured["batch_ms"]
        run.write()

    for float16 in (False, True):
        name = "faiss-flat-ip" + ("-fp16" if float16 else "")

        def build_flat() -> tuple[Any, dict[str, Any]]:
            start = time.perf_counter()
            if on_cpu:
                index = faiss.IndexFlatIP(dim)
            else:
                config = faiss.GpuIndexFlatConfig()
                config.useFloat16 = float16
                index = faiss.GpuIndexFlatIP(res, dim, config)
            index.add(host)
            return index, {"build_s": round(time.perf_counter() - start, 3)}

        if on_cpu and float16:
            continue
        built = run.attempt(f"{size}/{name}/build", build_flat)
        if built:
            measure(name, built[0], {}, built[1])
            del built

    def build_ivf() -> tuple[Any, dict[str, Any]]:
        nlist = min(args.nlist, max(1, size // 39))
        rng = np.random.default_rng(args.seed)
        train = host[np.sort(rng.choice(size, min(size, nlist * args.train_per_list), replace=False))]
        start = time.perf_counter()
        if on_cpu:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.GpuIndexIVFFlat(res, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(train)
        trained = time.perf_counter()
        index.add(host)
        done = time.perf_counter()
        return index, {
            "build_s": round(done - start, 3),
            "train_s": round(trained - start, 3),
            "add_s": round(done - trained, 3),
            "nlist": nlist,
            "train_points": len(train),
        }

    built = run.attempt(f"{size}/faiss-ivf-flat/build", build_ivf)
    if built:
        index, build = built
        for nprobe in FAISS_NPROBE:
            if nprobe > build["nlist"]:
                continue
            if hasattr(index, "setNumProbes"):  # faiss < 1.7.3 GPU indexes
                index.setNumProbes(nprobe)
            else:
                index.nprobe = nprobe
            measure("faiss-ivf-flat", index, {"nlist": build["nlist"], "nprobe": nprobe}, build)
        del index
    del res
    empty_cache()


# ---- report -----------------------------------------------------------------------------------------


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch_version": torch.__version__,
        "torch_cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu_model"] = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "unknown"
            )
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            {
                "gpu_name": props.name,
                "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "gpu_capability": f"{props.major}.{props.minor}",
                "gpu_sm_count": props.multi_processor_count,
                "fp16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
                "bf16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            }
        )
        try:
            smi = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                    "--format=csv,noheader",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except Exception as exc:  # noqa: BLE001 - one shot on the GPU: record and continue
            info["nvidia_smi"] = f"unavailable: {exc}"
    return info


def plot(rows: list[dict[str, Any]], path: Path, label: str, batches: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def key(r: dict[str, Any]) -> str:
        params = r.get("params") or {}
        return r["method"] + (f" nprobe={params['nprobe']}" if "nprobe" in params else "")

    methods = list(dict.fromkeys(key(r) for r in rows))
    panels = [(f"queries/s, batch {b:,}", lambda r, b=b: (r.get("qps") or {}).get(str(b)), True) for b in batches]
    panels += [
        ("one-query latency ms (p50 solid, p99 dashed)", None, True),
        ("recall@10 vs torch fp32", lambda r: r.get("recall_at_10_vs_fp32"), False),
        ("upload / build s", lambda r: r.get("upload_s", r.get("build_s")), True),
    ]
    cols = 3
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4.4 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    for ax, (title, value, log) in zip(axes.flat, panels):
        for m_i, method in enumerate(methods):
            mine = sorted((r for r in rows if key(r) == method), key=lambda r: r["size"])
            color = cmap(m_i % cmap.N)
            if value is None:
                for pct, style in (("p50", "-"), ("p99", "--")):
                    pts = [(r["size"], r["latency_ms"][pct]) for r in mine if r.get("latency_ms")]
                    if pts:
                        ax.plot(*zip(*pts), style, marker="o", color=color, label=method if pct == "p50" else None)
            else:
                pts = [(r["size"], value(r)) for r in mine if value(r) is not None]
                if pts:
                    ax.plot(*zip(*pts), marker="o", color=color, label=method)
        ax.set_xscale("log")
        if log and any(y > 0 for line in ax.get_lines() for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_xlabel("vectors in the index")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        if len(lab) > len(labels):
            handles, labels = h, lab
    fig.legend(handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize=8)
    fig.suptitle(label, fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main -------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, required=True, help=".npz with mu and sigma (N x D)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000, 5_000_000, 10_000_000])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu for a tiny try-out")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 1024, 10_000])
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.5,
        help="each throughput measure runs at least this long (or a whole pool of queries)",
    )
    parser.add_argument(
        "--score-budget-gb",
        type=float,
        default=4.0,
        help="most GiB of scores held at once (the database is searched in chunks)",
    )
    parser.add_argument(
        "--max-resident-gb",
        type=float,
        help="treat a database larger than this as not fitting the device (tests streaming)",
    )
    parser.add_argument(
        "--grow-with",
        choices=["torch", "numpy"],
        default="torch",
        help="torch: grow on the device (default); numpy: bench/embedding_growth.grow on the host",
    )
    parser.add_argument(
        "--extra-recall-grow",
        choices=["neighbours", "none"],
        default="neighbours",
        help="also measure recall (only) on a catalog grown between neighbouring tunes",
    )
    parser.add_argument("--nlist", type=int, default=4096, help="faiss IVF lists (fewer for tiny sizes)")
    parser.add_argument("--train-per-list", type=int, default=64, help="faiss IVF training points per list")
    parser.add_argument("--faiss-on-cpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=200,
        help="sections that would start after this many seconds are skipped (and listed)",
    )
    parser.add_argument("--label", help="replaces the default label")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/index_gpu.json")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.methods = ["torch-fp32"] + [m for m in dict.fromkeys(args.methods) if m != "torch-fp32"]  # the reference first
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("highest")  # fp32 is the exact reference: no TF32
    mu, sigma = load_embeddings(args.embeddings)
    pool_size = max([args.recall_queries + args.latency_queries, *args.batches])
    # The recall queries come first and from their own generator, so they do not depend on --batches.
    pool = np.concatenate(
        [
            queries_like(mu, sigma, args.recall_queries, np.random.default_rng(args.seed)),
            queries_like(mu, sigma, pool_size - args.recall_queries, np.random.default_rng(args.seed + 1)),
        ]
    )
    label = args.label or (
        f"exact search with torch matmul + topk on {device}: real embeddings "
        f"({mu.shape[0]:,} tunes x {mu.shape[1]} from {args.embeddings.name}) grown by "
        f"posterior sampling"
    )
    result: dict[str, Any] = {
        "label": label,
        "data": {
            "source": str(args.embeddings),
            "n_tracks": mu.shape[0],
            "dim": mu.shape[1],
            "grown_by": "bench/embedding_growth.grow, done with torch on the device: each mean once, then "
            "mu + sigma * N(0, 1) around uniformly chosen means; rows L2-normalised (cosine)",
            "queries": f"{pool_size} held-out samples from queries_like (not in the index); recall uses the first "
            f"{args.recall_queries}, latency the next {args.latency_queries}, throughput cycles all",
        },
        "machine": {},
        "settings": {
            "k": K,
            "methods": {
                m: {"vectors_and_queries": s, "scores_ranked_in": c}
                for m, (s, c) in METHODS.items()
                if m in args.methods
            },
            "batches": args.batches,
            "score_budget_gib": args.score_budget_gb,
            "min_seconds": args.min_seconds,
            "upload_s": "host fp32 numpy -> device tensor, cast to the method's dtype, synchronised",
            "latency_ms": "one query at a time: host row -> device, search, ids -> host; synchronised before "
            "and after each; 5 warm-up queries first",
            "qps": "back-to-back batches of queries already on the device, synchronised at the ends; after one "
            "warm-up batch over the first chunk of the database",
            "recall_at_10_vs_fp32": "share of torch-fp32's top 10 found, on the recall queries",
            "faiss": "host numpy queries in and ids out (faiss copies them), so its latency and qps include "
            "the transfers",
        },
        "results": [],
        "sizes": {},
        "errors": [],
    }
    run = Run(args, result)
    try:
        result["machine"] = machine(device)
    except Exception as exc:  # noqa: BLE001
        run.error("machine", exc)
    try:
        torch.empty(1, device=device)
    except Exception as exc:
        run.error("device", exc)
        run.write()
        raise SystemExit(f"device {device} unusable: {exc}") from exc
    faiss, faiss_note = faiss_available(args)
    result["faiss_gpu"] = "not installed" if faiss is None else {"status": "measured", "note": faiss_note}
    if faiss is None:
        result["faiss_gpu_detail"] = faiss_note
    run.write()
    print(f"{label}\n{json.dumps(result['machine'])}\nfaiss: {faiss_note}", flush=True)

    with torch.inference_mode():
        mu_t = torch.from_numpy(mu).to(device)
        sigma_t = torch.from_numpy(sigma).to(device)
        near_t = near_np = None
        if args.extra_recall_grow == "neighbours":
            near_t = run.attempt("neighbours", lambda: neighbours_torch(mu_t))
            near_np = near_t.cpu().numpy() if near_t is not None else None
        for size in args.sizes:
            print(f"--- {size:,} vectors ({run.elapsed():.0f} s)", flush=True)
            info: dict[str, Any] = {}
            result["sizes"][str(size)] = info
            host = run.attempt(f"{size}/grow", lambda: make_database(run, size, mu_t, sigma_t, device, info))
            if host is None:
                run.write()
                continue
            truth: dict[str, Any] = {}
            for method in args.methods:
                row = torch_method(run, size, method, host, pool, truth, device, info)
                print(
                    f"  {method:22s} upload {row.get('upload_s', '-')} s  latency {row.get('latency_ms')}  "
                    f"qps {row.get('qps')}  recall {row.get('recall_at_10_vs_fp32')}  ({run.elapsed():.0f} s)",
                    flush=True,
                )
                run.write()
            if faiss is not None:
                run.attempt(f"{size}/faiss", lambda: faiss_size(run, faiss, size, host, pool, truth, device))
            del host
            if near_t is not None:
                run.attempt(
                    f"{size}/recall_neighbours_growth",
                    lambda: extra_recall(run, size, "neighbours", mu_t, near_t, near_np, mu, device, info),
                )
            print(f"  sizes info: {json.dumps(info)}", flush=True)
            run.write()
            try:
                plot(result["results"], args.out.with_suffix(".png"), label, args.batches)
            except Exception as exc:  # noqa: BLE001
                run.error("plot", exc)
    run.write()
    print(
        f"wrote {args.out} and {args.out.with_suffix('.png')} in {run.elapsed():.0f} s ({len(result['errors'])} errors)"
    )


if __name__ == "__main__":
    main()
