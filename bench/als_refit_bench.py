"""Time of the collaborative refit at scale: ALS (recommend.collaborative.signals_fit, what the beat
task recommend.tasks.refit_collaborative runs after reading the ratings log) on 100k listeners x
1M ratings of 100k tracks, on the CPU threads given (default 2).

Not part of the test suite and no database: the ratings are synthetic (listeners with 1 to 30
ratings, log-normal, tracks drawn with Zipf-like popularity, scores 1 to 5), so this times the fit,
the popularity sums and the .npz blob, not the SQL read (bench/feed_bench.py's setup times that
with the real service). Also times a fold-in of one listener (the request-time step).

    python bench/als_refit_bench.py                       # 100k x 1M, 2 threads
    python bench/als_refit_bench.py --users 10000 --ratings 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/als_refit_cpu.json")
    args = parser.parse_args()

    import numpy as np

    from recommend import collaborative

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    users = rng.integers(0, args.users, args.ratings)
    weights = 1.0 / np.arange(1, args.tracks + 1) ** 0.8
    items = rng.choice(args.tracks, args.ratings, p=weights / weights.sum())
    pairs = np.unique(users.astype(np.int64) * args.tracks + items)  # one rating per listener and track
    users, items = pairs // args.tracks, pairs % args.tracks
    scores = rng.integers(1, 6, len(pairs))
    ages = rng.uniform(0, 90, len(pairs))
    generate_s = time.perf_counter() - t0
    print(f"{len(pairs):,} ratings by {len(np.unique(users)):,} listeners of {args.tracks:,} tracks", file=sys.stderr)

    t0 = time.perf_counter()
    signals = collaborative.signals_fit(
        track_ids=np.arange(args.tracks),
        track_ages_days=rng.uniform(0, 365, args.tracks),
        rating_users=users,
        rating_items=items,
        rating_scores=scores,
        rating_ages_days=ages,
        threads=args.threads,
        seed=args.seed,
    )
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob = signals.to_bytes()
    serialize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = collaborative.Signals.from_bytes(blob)
    _ = loaded.gram
    load_s = time.perf_counter() - t0
    mine = users == users[0]
    times = []
    for _ in range(200):
        t = time.perf_counter()
        collaborative.fold_in(loaded, items[mine], scores[mine])
        times.append(time.perf_counter() - t)
    result = {
        "label": "collaborative refit: implicit ALS + damped popularity, CPU",
        "target": f"refit at 100k listeners x 1M ratings in at most {TARGET_S:.0f} s on 2 cores",
        "listeners": int(len(np.unique(users))),
        "tracks": args.tracks,
        "ratings": int(len(pairs)),
        "als": {
            "factors": collaborative.ALS_FACTORS,
            "iterations": collaborative.ALS_ITERATIONS,
            "regularization": collaborative.ALS_REGULARIZATION,
            "alpha": collaborative.ALS_ALPHA,
            "threads": args.threads,
        },
        "fit_s": round(fit_s, 2),
        "meets_target": fit_s <= TARGET_S,
        "blob_mb": round(len(blob) / 2**20, 1),
        "serialize_s": round(serialize_s, 2),
        "load_and_gram_s": round(load_s, 2),
        "fold_in_one_listener_ms_p50": round(1000 * float(np.median(times)), 3),
        "fold_in_one_listener_ratings": int(mine.sum()),
        "synthetic_data_s": round(generate_s, 1),
        "machine": {
            "cpu_model": next(
                (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                "unknown",
            ),
            "cpu_cores_visible": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "shared_with": "three other engineers' processes on the same two cores",
            "python": platform.python_version(),
        },
        "command": "python bench/als_refit_bench.py",
    }
    print(json.dumps(result, indent=2), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
