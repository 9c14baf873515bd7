"""Latency of the feed and similar-tracks endpoints with a large catalog (default 100k tracks).

Not part of the test suite. Everything happens in its own database: SQLite in a new temporary
REFRAIN_VAR_DIR (or DATABASE_URL if set; then the database must be empty and disposable):

1. migrate; `import_corpus --limit N` imports a handful of real tunes (real files and metadata);
2. the rest of the catalog is those tunes' rows again (bulk_create): same MIDI file and metadata,
   a new title and content hash. Only the embeddings differ, and nothing on the measured paths
   opens a MIDI file, so the copies cost a request what distinct tunes would;
3. embeddings: the real catalog's (an .npz from bench/export_embeddings.py), every tune once, the
   rest sampled around random tunes at their posterior sigma (as bench/index_bench.py grows them),
   written as TrackEmbedding rows with bulk_create for the demo model version
   (register_default_model), then recommend.services.index_rebuild builds the index (default kind
   and settings: what production runs);
4. users with 5 to 20 ratings each (mostly around one or two of the tunes they like, some random,
   a few dislikes), and users with none (cold start);
   plus --background-users raters; then the collaborative model is fitted and the ranker trained
   (recommend.model_services: what the beat tasks run), so the feed serves the blended ranking;
5. times GET /api/v1/feed/?kind=recommended (users with ratings), the same for cold-start users,
   and GET /api/v1/tracks/{id}/similar/ through Django's test client, in process: URL routing,
   authentication, DRF, the selectors, the SQL and the JSON rendering, but no HTTP server or network.
   The first request of each kind (loads the index, reads the catalog once per index version) is
   reported apart from the timed requests.

    python bench/export_embeddings.py --out /tmp/benchvar/embeddings.npz   # needs an embedded catalog
    python bench/feed_bench.py --embeddings /tmp/benchvar/embeddings.npz
    python bench/feed_bench.py --embeddings ... --tracks 20000 --requests 100   # quicker
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=Path, required=True, help=".npz with mu and sigma (export_embeddings.py)")
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--real-tunes", type=int, default=20, help="real tunes imported, whose rows are reused")
    parser.add_argument("--users", type=int, default=60, help="users with 5 to 20 ratings")
    parser.add_argument("--cold-users", type=int, default=20, help="users without ratings")
    parser.add_argument(
        "--background-users",
        type=int,
        default=2000,
        help="more raters (5-20 ratings each, not timed) the collaborative model and the ranker learn from",
    )
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per endpoint first")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after the warm-up (moves the warm caches out of the collector's reach)",
    )
    parser.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help="cProfile an endpoint: auto = those whose p99 misses the target",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/feed_cpu.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary var dir (printed)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


TARGET_P99_MS = 50.0


def percentile(values, q: float) -> float:
    import numpy as np

    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2)


def main() -> None:
    args = parse_args()
    var_dir = None
    if not os.environ.get("DATABASE_URL"):
        var_dir = Path(tempfile.mkdtemp(prefix="refrain-feedbench-"))
        os.environ["REFRAIN_VAR_DIR"] = str(var_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    # The bench sends hundreds of requests a minute per user: lift the per-user/anon rate limits
    # (the throttle's cache read and write still happen on every request, as in production).
    for name in ("THROTTLE_ANON", "THROTTLE_USER"):
        os.environ[name] = "100000000/min"

    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    # Local settings run with DEBUG on, which logs every SQL query: measure as production does.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]

    from catalog.models import Rating, Track, User
    from generation.services import model_version_register_default
    from recommend import services
    from recommend.models import TrackEmbedding, vector_to_bytes

    rng = np.random.default_rng(args.seed)
    setup: dict[str, float] = {}
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    if Track.objects.exists():
        raise SystemExit("The database already holds tracks: give the bench an empty, disposable one.")
    call_command("import_corpus", limit=args.real_tunes, no_progress=True, workers=1, stdout=io.StringIO())
    version = model_version_register_default()
    setup["migrate_import_s"] = round(time.perf_counter() - started, 1)

    # --- catalog: the real rows again, up to --tracks ------------------------------------------
    t0 = time.perf_counter()
    real = list(Track.objects.order_by("pk"))
    if not real:
        raise SystemExit("import_corpus imported nothing")
    fields = [
        f.name
        for f in Track._meta.concrete_fields
        if f.name not in ("id", "title", "content_hash", "created_at", "updated_at")
    ]
    copies = []
    for i in range(args.tracks - len(real)):
        src = real[i % len(real)]
        row = Track(**{name: getattr(src, name) for name in fields})
        row.title = f"{src.title} (bench copy {i})"
        row.content_hash = f"bench{i:059d}"
        copies.append(row)
    Track.objects.bulk_create(copies, batch_size=5000)
    track_ids = np.asarray(Track.objects.order_by("pk").values_list("pk", flat=True), dtype=np.int64)
    setup["tracks_bulk_create_s"] = round(time.perf_counter() - t0, 1)

    # --- embeddings: real means once each, then samples around them at their sigma -----------------
    t0 = time.perf_counter()
    with np.load(args.embeddings) as data:
        mu, sigma = data["mu"].astype(np.float32), data["sigma"].astype(np.float32)
        sigma_source = str(data["sigma_source"]) if "sigma_source" in data else "unknown"
    if mu.shape[1] != version.config.get("z_dim", mu.shape[1]):
        raise SystemExit(f"embeddings have {mu.shape[1]} dims, the model version {version.config.get('z_dim')}")
    n = len(track_ids)
    source = np.concatenate(
        [rng.permutation(len(mu))[: min(n, len(mu))], rng.integers(0, len(mu), max(0, n - len(mu)))]
    )
    noise = rng.standard_normal((n, mu.shape[1]), dtype=np.float32)
    noise[: min(n, len(mu))] = 0.0  # the real tunes themselves, once each
    vectors = mu[source] + sigma[source] * noise
    sigma_means = sigma[source].mean(axis=1)
    vectors_order = rng.permutation(n)  # track_ids[i] gets vectors[vectors_order[i]]
    rows = [
        TrackEmbedding(
            track_id=int(track_ids[i]),
            model_version=version,
            vector=vector_to_bytes(vectors[j]),
            dim=mu.shape[1],
            sigma_mean=float(sigma_means[j]),
            window_count=1,
        )
        for i, j in enumerate(vectors_order)
    ]
    TrackEmbedding.objects.bulk_create(rows, batch_size=5000)
    del rows
    setup["embeddings_bulk_create_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    indexed = services.index_rebuild(model_version=version)
    setup["index_rebuild_s"] = round(time.perf_counter() - t0, 1)
    from recommend.index import IndexConfig

    index_kind = IndexConfig(dim=mu.shape[1]).kind
    from recommend.index_readers import serving_index

    _, loaded = serving_index()
    index_description = {
        "tracks_indexed": indexed,
        "kind": getattr(loaded, "kind", index_kind),
        "config": repr(getattr(loaded, "config", None)),
    }

    # --- users and ratings -------------------------------------------------------------------------
    t0 = time.perf_counter()
    users = User.objects.bulk_create([User(username=f"bench{i}") for i in range(args.users)])
    cold = User.objects.bulk_create([User(username=f"benchcold{i}") for i in range(args.cold_users)])
    users = list(User.objects.filter(username__in=[u.username for u in users]))
    cold = list(User.objects.filter(username__in=[u.username for u in cold]))
    # Liked tunes cluster: each user likes neighbours of one or two seed tracks (found with an
    # exact search over the vectors), plus a few random ratings and a dislike or two.
    import faiss

    unit = vectors[vectors_order]  # row i = the vector of track_ids[i]
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(np.ascontiguousarray(unit, dtype=np.float32))
    ratings, rating_counts = [], []
    for user in users:
        count = int(rng.integers(5, 21))
        seeds = rng.integers(0, n, int(rng.integers(1, 3)))
        _, near = flat.search(unit[seeds], 30)
        pool = near.ravel()
        chosen: dict[int, int] = {}
        while len(chosen) < count:
            r = rng.random()
            if r < 0.6:
                chosen.setdefault(int(pool[rng.integers(0, len(pool))]), int(rng.integers(4, 6)))
            elif r < 0.85:
                chosen.setdefault(int(rng.integers(0, n)), int(rng.integers(1, 6)))
            else:
                chosen.setdefault(int(rng.integers(0, n)), int(rng.integers(1, 3)))
        ratings.extend(Rating(user=user, track_id=int(track_ids[i]), score=s) for i, s in chosen.items())
        rating_counts.append(count)
    background = User.objects.bulk_create([User(username=f"benchbg{i}") for i in range(args.background_users)])
    background = list(User.objects.filter(username__startswith="benchbg"))
    for user in background:
        seeds = rng.integers(0, n, int(rng.integers(1, 3)))
        _, near = flat.search(unit[seeds], 30)
        count = int(rng.integers(5, 21))
        picks = set(near.ravel()[rng.integers(0, near.size, count // 2)].tolist()) | set(
            rng.integers(0, n, count - count // 2).tolist()
        )
        ratings.extend(
            Rating(
                user=user,
                track_id=int(track_ids[i]),
                score=int(rng.integers(4, 6) if i in near else rng.integers(1, 6)),
            )
            for i in picks
        )
    Rating.objects.bulk_create(ratings, batch_size=5000)
    setup["users_ratings_s"] = round(time.perf_counter() - t0, 1)
    # The learned models the feed serves with: ALS + popularity, then the ranker (manage.py train_recommender).
    from recommend import model_services

    t0 = time.perf_counter()
    model_services.collaborative_refit()
    setup["collaborative_refit_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    trained = model_services.ranker_train()
    setup["ranker_train_s"] = round(time.perf_counter() - t0, 1)
    ranker_summary = (
        {"weights": trained[1].raw_weights(), "default": trained[1].metrics.get("default")} if trained else None
    )
    print(f"setup: {setup}", file=sys.stderr)

    # --- timing ------------------------------------------------------------------------------------
    client = Client()

    def time_requests(name: str, make_request, n_requests: int, warmup: int) -> dict:
        first = time.perf_counter()
        response = make_request(0)
        first = time.perf_counter() - first
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code}: {response.content[:300]!r}")
        for i in range(1, warmup + 1):
            make_request(i)
        times, queries = [], []
        pauses = GcPauses().__enter__()
        for i in range(n_requests):
            with CaptureQueriesContext(connection) as captured:
                t = time.perf_counter()
                response = make_request(warmup + 1 + i)
                times.append(time.perf_counter() - t)
            if response.status_code != 200:
                raise SystemExit(f"{name}: HTTP {response.status_code}")
            queries.append(len(captured.captured_queries))
        pauses.__exit__()
        body = response.json()
        items = len(body.get("results", []))
        result = {
            "requests": n_requests,
            "warmup_requests": warmup,
            "first_request_ms": round(first * 1000, 1),
            "p50_ms": percentile(times, 50),
            "p90_ms": percentile(times, 90),
            "p99_ms": percentile(times, 99),
            "max_ms": percentile(times, 100),
            "mean_ms": round(1000 * float(np.mean(times)), 2),
            "sql_queries_per_request": int(np.median(queries)),
            "items_in_last_response": items,
            **pauses.summary(),
            "meets_p99_target": percentile(times, 99) < TARGET_P99_MS,
        }
        print(
            f"{name:28s} first {result['first_request_ms']:7.1f} ms  p50 {result['p50_ms']:6.2f}  "
            f"p99 {result['p99_ms']:6.2f} ms  ({result['sql_queries_per_request']} queries, {items} items)",
            file=sys.stderr,
        )
        return result

    similar_ids = track_ids[rng.integers(0, n, args.requests + args.warmup + 1)]

    def similar(i):
        return client.get(f"/api/v1/tracks/{int(similar_ids[i % len(similar_ids)])}/similar/")

    endpoints = {
        "feed_recommended": (None, "GET /api/v1/feed/?kind=recommended, users with 5-20 ratings"),
        "feed_cold_start": (None, "GET /api/v1/feed/?kind=recommended, users without ratings"),
        "track_similar": (similar, "GET /api/v1/tracks/{id}/similar/ (k=10), anonymous, random tracks"),
    }
    # Each request goes to the next user, so the login happens inside the loop; time only the GET.
    endpoints_results = {}
    for name, (request, what) in endpoints.items():
        if name.startswith("feed"):
            pool = users if name == "feed_recommended" else cold

            def request(i, pool=pool):
                return client.get("/api/v1/feed/", {"kind": "recommended"})

            endpoints_results[name] = {
                "what": what,
                **time_pool(client, pool, request, args, name, percentile, CaptureQueriesContext, connection),
            }
        else:
            endpoints_results[name] = {"what": what, **time_requests(name, request, args.requests, args.warmup)}

    # --- after an upload ---------------------------------------------------------------------------
    # Every upload and every generated track adds its embedding to the index, which saves a new
    # version; the first request of each kind after that pays whatever is recomputed per version.
    after_add = {}
    for round_ in range(3):
        src = real[round_ % len(real)]
        row = Track(**{name: getattr(src, name) for name in fields})
        row.title, row.content_hash = f"{src.title} (new upload {round_})", f"benchnew{round_:056d}"
        row.save()
        TrackEmbedding.objects.create(
            track=row,
            model_version=version,
            vector=vector_to_bytes(vectors[round_]),
            dim=mu.shape[1],
            sigma_mean=float(sigma_means[round_]),
            window_count=1,
        )
        t0 = time.perf_counter()
        services.index_add(track_ids=[row.pk], model_version=version)
        after_add.setdefault("index_add_ms", []).append(round((time.perf_counter() - t0) * 1000, 1))
        for name, who in (("feed_recommended_ms", users[round_]), ("feed_cold_start_ms", cold[round_])):
            client.force_login(who)
            t0 = time.perf_counter()
            response = client.get("/api/v1/feed/", {"kind": "recommended"})
            after_add.setdefault(name, []).append(round((time.perf_counter() - t0) * 1000, 1))
            assert response.status_code == 200, response.content[:200]
    print(f"after one new track, 3 times: {after_add}", file=sys.stderr)
    endpoints_results["first_requests_after_a_new_track"] = {
        "what": "a new track's embedding added with recommend.services.index_add (a new index version on "
        "disk), then the first feed request of a user with ratings and of a cold-start user; 3 rounds",
        **after_add,
    }

    profiles = {}
    for name, result in endpoints_results.items():
        if "p99_ms" not in result:
            continue
        if args.profile == "always" or (args.profile == "auto" and not result["meets_p99_target"]):
            pool = users if name == "feed_recommended" else cold
            profiler = cProfile.Profile()
            for i in range(50):
                if name.startswith("feed"):
                    client.force_login(pool[i % len(pool)])
                    profiler.enable()
                    client.get("/api/v1/feed/", {"kind": "recommended"})
                else:
                    profiler.enable()
                    similar(i)
                profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            profiles[name] = out.getvalue().splitlines()

    result = {
        "label": f"feed and similar-track latency at {n:,} tracks, in process (Django test client), CPU",
        "target": f"p99 < {TARGET_P99_MS:.0f} ms at 100k tracks on this machine",
        "endpoints": endpoints_results,
        "catalog": {
            "tracks": n,
            "real_tunes_imported": len(real),
            "tracks_are": f"{len(real)} real tunes imported with import_corpus --limit {args.real_tunes}; the other "
            f"{n - len(real):,} rows reuse their MIDI file and metadata (new title, content hash)",
            "embeddings": f"{min(n, len(mu)):,} real catalog means (from {args.embeddings.name}, {len(mu):,} tunes) "
            f"once each, the rest mu + sigma * N(0, 1) around random tunes; assigned to tracks at random",
            "sigma_source": sigma_source,
            "index": index_description,
            "users_with_ratings": len(users),
            "ratings_per_user": f"{min(rating_counts)}-{max(rating_counts)}",
            "ratings_are": "about 60% likes (4-5) of neighbours of one or two seed tracks, 25% random scores, "
            "15% random dislikes (1-2)",
            "cold_start_users": len(cold),
            "background_raters": len(background),
            "ranker": ranker_summary,
        },
        "setup_seconds": setup,
        "code": _code_version(),
        "how": {
            "client": "django.test.Client in this process: routing, session auth, DRF, throttling (limits lifted "
            "via THROTTLE_USER/THROTTLE_ANON, the cache round trip still counted), selectors, SQL, "
            "JSON; no HTTP server, no network",
            "settings": "config.settings.local with DEBUG set False after setup (no SQL logging)",
            "database": "DATABASE_URL" if not var_dir else "SQLite in a temporary REFRAIN_VAR_DIR",
            "timing": "perf_counter around each GET; logins (force_login) happen outside the clock; users taken "
            "round-robin; first request (index load, per-index-version catalog caches) reported apart",
            "threads": "OMP/OPENBLAS/MKL threads 1 (faiss queries single-threaded)",
            "gc_freeze_after_warmup": args.gc_freeze,
            "gen2_collections": "full garbage collections (generation 2) that ran during the timed requests, "
            "with their longest and total pause",
        },
        "machine": {
            "cpu_model": next(
                (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                "unknown",
            ),
            "cpu_cores_visible": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "shared_with": "one other engineer's processes on the same cores",
            "python": platform.python_version(),
            "database_vendor": connection.vendor,
        },
    }
    if profiles:
        result["cprofile_top_cumulative"] = profiles
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if var_dir is not None and not args.keep:
        import shutil

        shutil.rmtree(var_dir, ignore_errors=True)
    elif var_dir is not None:
        print(f"kept {var_dir}", file=sys.stderr)


def _code_version() -> str:
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "recommend", "catalog", "config"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        changed = sorted({line[3:] for line in dirty if line.strip()})
        return f"commit {head}" + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class GcPauses:
    """Collects the duration of every garbage-collector run of the oldest generation (gen 2).

    With 100k tracks a process holds a few million Python objects (the catalog caches), and a full
    collection walks all of them: a request that triggers one pays for it.
    """

    def __init__(self):
        self.pauses: list[float] = []
        self._start = 0.0

    def __call__(self, phase, info):
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._start)

    def __enter__(self):
        import gc

        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        import gc

        gc.callbacks.remove(self)

    def summary(self) -> dict:
        return {
            "gen2_collections": len(self.pauses),
            "gen2_pause_ms_max": round(1000 * max(self.pauses), 1) if self.pauses else 0.0,
            "gen2_pause_ms_total": round(1000 * sum(self.pauses), 1),
        }


def time_pool(client, pool, request, args, name, percentile, CaptureQueriesContext, connection) -> dict:
    """Time `request` for users taken round-robin from pool, each logged in outside the clock."""
    import numpy as np

    client.force_login(pool[0])
    first = time.perf_counter()
    response = request(0)
    first = time.perf_counter() - first
    if response.status_code != 200:
        raise SystemExit(f"{name}: HTTP {response.status_code}: {response.content[:300]!r}")
    for i in range(1, args.warmup + 1):
        client.force_login(pool[i % len(pool)])
        request(i)
    if args.gc_freeze:
        import gc

        gc.collect()
        gc.freeze()  # what a server would do once its caches are warm (e.g. in gunicorn's post_fork)
    times, queries, items = [], [], []
    pauses = GcPauses().__enter__()
    for i in range(args.requests):
        client.force_login(pool[i % len(pool)])
        with CaptureQueriesContext(connection) as captured:
            t = time.perf_counter()
            response = request(i)
            times.append(time.perf_counter() - t)
        if response.status_code != 200:
            raise SystemExit(f"{name}: HTTP {response.status_code}")
        queries.append(len(captured.captured_queries))
        items.append(len(response.json().get("results", [])))
    pauses.__exit__()
    result = {
        "requests": args.requests,
        "warmup_requests": args.warmup,
        "first_request_ms": round(first * 1000, 1),
        "p50_ms": percentile(times, 50),
        "p90_ms": percentile(times, 90),
        "p99_ms": percentile(times, 99),
        "max_ms": percentile(times, 100),
        "mean_ms": round(1000 * float(np.mean(times)), 2),
        "sql_queries_per_request": int(np.median(queries)),
        "items_per_page_min": int(min(items)),
        **pauses.summary(),
        "meets_p99_target": percentile(times, 99) < TARGET_P99_MS,
    }
    print(
        f"{name:28s} first {result['first_request_ms']:7.1f} ms  p50 {result['p50_ms']:6.2f}  "
        f"p99 {result['p99_ms']:6.2f} ms  ({result['sql_queries_per_request']} queries, min {min(items)} items)",
        file=sys.stderr,
    )
    return result


if __name__ == "__main__":
    main()
