"""Cost of growing the index, before (a full rewrite per save) and after (append-only segments).

Not part of the test suite. At each size: one base index (the kind `auto` picks: IVF at 100k and 1M)
over vectors grown like a real catalog (bench/embedding_growth.py from index_bench's clustered,
anisotropic stand-in at the real model's dimension, 64), saved once by each store. Then:

    before  bench/legacy_index_store.py (the store of commit fcfacc3): an add is lock, load, add,
            save (what recommend.services.index_add did), and a reader catches up by loading the file
    after   recommend.index.IndexStore: an add is one segment (IndexStore.append), a reader applies
            only the new segments (IndexStore.catch_up via IndexReader), compaction merges them

and it measures adding 1 vector, a batch of 1,000 (one save / one segment; and 1,000 serial adds
after, 1,000 serial saves before, the latter estimated as 1,000 x one add), reader catch-up after 1 and
after 1,000 adds, compaction, and single-query latency with the 1,000-track overlay. Wall-clock
medians of a few rounds; the machine is shared, so the load average is recorded with the results.

    nice -n 5 python bench/index_append_bench.py                   # 100k and 1M, ~10 min
    nice -n 5 python bench/index_append_bench.py --sizes 100000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import legacy_index_store  # noqa: E402
from bench.embedding_growth import grow, queries_like  # noqa: E402
from bench.index_bench import make_standin  # noqa: E402
from recommend.index import IndexConfig, IndexReader, IndexStore, VectorIndex  # noqa: E402

DIM = 64  # the real model's latent size (bench/results/index_cpu_real.json)
ROUNDS = 3


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_ms(values: list[float]) -> float:
    return ms(statistics.median(values))


def single_query_ms(index, queries: np.ndarray, n: int = 200) -> float:
    times = []
    for q in queries[:n]:
        started = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - started)
    return ms(statistics.median(times))


def before(directory: Path, base: VectorIndex, new: np.ndarray, next_id: int) -> dict:
    """The old store: every add loads, adds and rewrites the whole index; readers reload it."""
    store = legacy_index_store.IndexStore(directory)
    store.save(base, force=True)
    reader_store = legacy_index_store.IndexStore(directory)
    reader_index, _ = reader_store.load()

    def old_index_add(ids: np.ndarray, vectors: np.ndarray) -> None:
        with store.writer_lock():
            index, _ = store.load()
            index.add(ids, vectors)
            if index.needs_rebuild():
                index = index.rebuilt()
            store.save(index)

    add_1, catch_1, add_1000, catch_1000 = [], [], [], []
    for r in range(ROUNDS):
        add_1.append(timed(lambda: old_index_add(np.array([next_id + r]), new[r : r + 1])))
        catch_1.append(timed(lambda: reader_store.load()))
    for r in range(ROUNDS):
        ids = np.arange(1000) + next_id + 10 + r * 1000
        add_1000.append(timed(lambda: old_index_add(ids, new[10 + r * 1000 : 1010 + r * 1000])))
        catch_1000.append(timed(lambda: reader_store.load()))
    size = (directory / store.manifest().file).stat().st_size
    del reader_index
    return {
        "add_1_ms": median_ms(add_1),
        "add_1_ms_rounds": [ms(x) for x in add_1],
        "add_batch_1000_one_save_ms": median_ms(add_1000),
        "add_1000_serial_ms_estimated": round(1000 * median_ms(add_1), 1),
        "reader_catch_up_after_1_add_ms": median_ms(catch_1),
        "reader_catch_up_after_1000_adds_ms": median_ms(catch_1000),
        "bytes_written_per_add": size,
    }


def after(directory: Path, base: VectorIndex, new: np.ndarray, next_id: int, queries: np.ndarray) -> dict:
    """Segments: an add writes one segment; a reader applies only the new ones; compaction merges."""
    store = IndexStore(directory)
    base.version = None
    store.save(base, force=True)
    reader = IndexReader(directory)
    assert len(reader.index) == len(base)
    q_base = single_query_ms(reader.index, queries)

    add_1, catch_1, add_1000, catch_1000, seg_bytes = [], [], [], [], []
    for r in range(ROUNDS):
        add_1.append(timed(lambda: store.append(np.array([next_id + r]), new[r : r + 1])))
        seg_bytes.append((directory / store.manifest().segments[-1].file).stat().st_size)
        catch_1.append(timed(reader.reload_if_changed))
    for r in range(ROUNDS):
        ids = np.arange(1000) + next_id + 10 + r * 1000
        add_1000.append(timed(lambda: store.append(ids, new[10 + r * 1000 : 1010 + r * 1000])))
        catch_1000.append(timed(reader.reload_if_changed))
    overlay = reader.index.n_overlay
    q_overlay = single_query_ms(reader.index, queries)

    # 1,000 serial adds (one track per task, as uploads arrive), and a reader following all of them.
    serial_ids = np.arange(1000) + next_id + 10_000
    follower = IndexReader(directory)
    follower.index  # noqa: B018 - loaded before the adds
    compactions = []

    def add_serially() -> None:  # as recommend.services.index_sync does: append, compact past the limits
        for i in range(1000):
            store.append(serial_ids[i : i + 1], new[5000 + i : 5001 + i])
            if store.should_compact():
                compactions.append(timed(store.compact))

    serial = timed(add_serially)
    catch_serial = timed(follower.reload_if_changed)
    n_segments = len(store.manifest().segments)

    compaction = timed(store.compact)
    catch_compacted = timed(reader.reload_if_changed)
    fresh_load = timed(lambda: IndexReader(directory).index)
    return {
        "add_1_ms": median_ms(add_1),
        "add_1_ms_rounds": [ms(x) for x in add_1],
        "add_batch_1000_one_segment_ms": median_ms(add_1000),
        "add_1000_serial_ms_measured": ms(serial),
        "compactions_during_serial_adds": len(compactions),
        "compaction_ms_during_serial_adds": [ms(x) for x in compactions],
        "reader_catch_up_after_1_add_ms": median_ms(catch_1),
        "reader_catch_up_after_1000_adds_ms": median_ms(catch_1000),
        "reader_catch_up_after_1000_serial_adds_ms": ms(catch_serial),
        "segments_left_after_serial_adds": n_segments,
        "compaction_ms": ms(compaction),
        "reader_switch_to_compacted_base_ms": ms(catch_compacted),
        "fresh_reader_load_ms": ms(fresh_load),
        "bytes_written_per_add": int(statistics.median(seg_bytes)),
        "single_query_ms_p50_no_overlay": q_base,
        "single_query_ms_p50_with_overlay": q_overlay,
        "overlay_tracks_for_that_query": overlay,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", default=str(REPO_ROOT / "bench/results/index_append.json"))
    parser.add_argument("--workdir", default=None, help="Folder for the index files (default: a temp dir).")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    load_start = os.getloadavg()
    mu, sigma, standin = make_standin(dim=DIM)
    rng = np.random.default_rng(11)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="index-append-"))
    results = []
    for size in args.sizes:
        vectors = grow(mu, sigma, size, rng)
        new = grow(mu, sigma, 7000, rng)
        queries = queries_like(mu, sigma, 200, rng)
        config = IndexConfig(dim=DIM, use_gpu=False)
        started = time.perf_counter()
        base = VectorIndex.build(np.arange(size), vectors, config)
        build_s = time.perf_counter() - started
        print(f"{size}: built {base.kind} in {build_s:.1f} s", flush=True)
        row = {"size": size, "kind": base.kind, "build_s": round(build_s, 1)}
        row["before"] = before(workdir / f"before-{size}", base, new, size)
        print(f"{size}: before {row['before']}", flush=True)
        row["after"] = after(workdir / f"after-{size}", base, new, size, queries)
        print(f"{size}: after {row['after']}", flush=True)
        b, a = row["before"], row["after"]
        row["speedup"] = {
            "add_1": round(b["add_1_ms"] / a["add_1_ms"], 1),
            "reader_catch_up_after_1_add": round(
                b["reader_catch_up_after_1_add_ms"] / a["reader_catch_up_after_1_add_ms"], 1
            ),
            "add_1000_serial": round(b["add_1000_serial_ms_estimated"] / a["add_1000_serial_ms_measured"], 1),
        }
        results.append(row)
        shutil.rmtree(workdir / f"before-{size}", ignore_errors=True)
        shutil.rmtree(workdir / f"after-{size}", ignore_errors=True)
        del base, vectors
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)
    out = {
        "label": "index growth: full rewrite per save (before, commit fcfacc3's store) vs append-only segments (after)",
        "data": {
            "vectors": f"index_bench's clustered stand-in ({standin['n_tracks']} x {DIM}), grown by posterior sampling",
            "new_tracks": "7,000 more grown the same way, with ids above the catalog's",
        },
        "how": {
            "before_add": "lock, IndexStore.load, VectorIndex.add, save (temp file + fsync + rename + manifest)",
            "after_add": "IndexStore.append: one segment file + manifest, each temp + fsync + rename",
            "before_catch_up": "IndexStore.load of the whole file (what IndexReader did on a new version)",
            "after_catch_up": "IndexReader.reload_if_changed: reads the new segments, rebuilds the overlay",
            "timing": f"wall clock, median of {ROUNDS} rounds unless 'measured'; OMP threads 1",
            "disk": str(workdir),
        },
        "results": results,
        "machine": {
            "cpu_cores_visible": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "faiss_version": faiss.__version__,
            "numpy_version": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "code": f"commit {commit.stdout.strip()}",
        "command": "nice -n 5 python bench/index_append_bench.py",
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
