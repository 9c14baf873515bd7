"""End-to-end generation latency and throughput: POST /api/v1/generations/ -> tracks ready.

Starts a real Celery worker on the `gpu` queue (solo pool) against the configured back ends
(default: a fresh SQLite database and filesystem broker in a temporary folder; or DATABASE_URL /
CELERY_BROKER_URL), posts jobs through the API and reads each job's server-side timestamps
(created at the POST, finished when its tracks are committed). Scenarios: one job at a time, and a
burst of concurrent jobs with and without micro-batching. Writes JSON (and prints a table).

    python bench/generation_bench.py --checkpoint generation/checkpoints/mel_16bar.pt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "gpu,gpu-bulk",
            "-P",
            "solo",
            "-n",
            "bench@%h",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while "ready." not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process


def run_scenario(client, n_jobs: int, concurrent: bool, count: int, timeout: float) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection
    from tqdm import tqdm

    from generation.models import GenerationJob

    def post(_=None) -> int:
        try:
            response = client.post(
                "/api/v1/generations/", {"kind": "sample", "count": count, "temperature": 0.5}, format="json"
            )
            if response.status_code != 202:
                raise SystemExit(f"POST failed: {response.status_code} {response.content[:300]!r}")
            return response.json()["id"]
        finally:
            if concurrent:
                connection.close()  # each posting thread has its own connection

    ids: list[int] = []
    started = time.perf_counter()
    bar = tqdm(total=n_jobs, desc=("burst" if concurrent else "one at a time"), unit="job")
    if concurrent:  # 50 clients at once: eight threads posting in parallel
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, range(n_jobs)))
        _wait(ids, timeout, bar)
    else:
        for _ in range(n_jobs):
            ids.append(post())
            _wait(ids[-1:], timeout)
            bar.update(1)
    bar.close()
    wall = time.perf_counter() - started
    jobs = list(GenerationJob.objects.filter(pk__in=ids))
    failed = [j.pk for j in jobs if j.status != "done"]
    latencies = [(j.finished_at - j.created_at).total_seconds() * 1000 for j in jobs if j.status == "done"]
    melodies = sum(j.tracks.count() for j in jobs)
    first = min(j.created_at for j in jobs)
    last = max(j.finished_at for j in jobs if j.finished_at)
    return {
        "jobs": n_jobs,
        "melodies_per_job": count,
        "failed": failed,
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
            "mean": round(statistics.mean(latencies), 1),
            "max": round(max(latencies), 1),
        },
        "decode_passes": len({j.batch_id for j in jobs}),
        "mean_jobs_per_pass": round(statistics.mean(j.batch_jobs for j in jobs), 2),
        "throughput_melodies_per_s": round(melodies / max((last - first).total_seconds(), 1e-9), 2),
        # the worker alone: from the first claim to the last commit
        "worker_throughput_melodies_per_s": round(
            melodies / max((last - min(j.started_at for j in jobs if j.started_at)).total_seconds(), 1e-9), 2
        ),
        "mean_ms_per_job": {
            key: round(statistics.mean(j.timings.get(key, 0) for j in jobs if j.timings), 1)
            for key in ("queued_ms", "decode_ms", "store_ms")
        },
        "client_wall_s": round(wall, 2),
    }


def _wait(ids: list[int], timeout: float, bar=None) -> None:
    from generation.models import GenerationJob

    deadline = time.monotonic() + timeout
    finished = 0
    while time.monotonic() < deadline:
        done = GenerationJob.objects.filter(pk__in=ids, status__in=("done", "failed")).count()
        if bar is not None and done > finished:
            bar.update(done - finished)
            finished = done
        if done == len(ids):
            return
        time.sleep(0.01)
    raise SystemExit(f"jobs {ids} did not finish within {timeout} s")


def raw_decode_rate(checkpoint: Path, batch: int, count: int) -> float:
    import torch
    from django.conf import settings

    from generation.vae.sample import MelodyVAE

    if not torch.cuda.is_available():
        torch.set_num_threads(settings.GENERATION_CPU_THREADS)  # as the worker does
    vae = MelodyVAE.load(checkpoint)
    vae.sample(2, seed=0)  # warm-up
    started = time.perf_counter()
    vae.sample(batch * count, temperature=0.5, seed=1)
    return batch * count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "generation/checkpoints/mel_16bar.pt")
    parser.add_argument("--single", type=int, default=20, help="jobs run one at a time")
    parser.add_argument("--burst", type=int, default=50, help="concurrent jobs")
    parser.add_argument("--count", type=int, default=1, help="melodies per job")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/generation_cpu.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="refrain-genbench-"))
    os.environ.setdefault("REFRAIN_VAR_DIR", str(work))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("THROTTLE_GENERATION", "100000/min")
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from catalog.models import User
    from generation import services

    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="bench")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    services.model_version_register(name=args.checkpoint.stem, checkpoint_path=str(args.checkpoint.resolve()))

    results: dict = {
        "machine": machine(),
        "checkpoint": str(args.checkpoint),
        "broker": settings.CELERY_BROKER_URL,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "scenarios": {},
    }
    scenarios = [
        ("one_at_a_time", args.single, False, {}),
        ("burst_microbatching", args.burst, True, {}),
        (
            "burst_no_microbatching",
            args.burst,
            True,
            {"GENERATION_MAX_BATCH_JOBS": "1", "GENERATION_BATCH_WAIT_MS": "0"},
        ),
    ]
    for name, n_jobs, concurrent, extra in scenarios:
        env = {**os.environ, **extra}
        worker = start_worker(env, work / f"worker-{name}.log")
        try:
            results["scenarios"][name] = {
                **run_scenario(client, n_jobs, concurrent, args.count, args.timeout),
                "worker_settings": extra or "defaults",
            }
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    results["raw_decode_melodies_per_s_at_burst_batch"] = round(
        raw_decode_rate(args.checkpoint, args.burst, args.count), 2
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'scenario':26} {'p50 ms':>9} {'p95 ms':>9} {'melodies/s':>11} {'passes':>7}")
    for name, row in results["scenarios"].items():
        print(
            f"{name:26} {row['latency_ms']['p50']:9.0f} {row['latency_ms']['p95']:9.0f} "
            f"{row['throughput_melodies_per_s']:11.2f} {row['decode_passes']:7d}"
        )
    print(f"raw batched decode: {results['raw_decode_melodies_per_s_at_burst_batch']} melodies/s; written {args.out}")


if __name__ == "__main__":
    main()
