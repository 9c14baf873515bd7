"""Load: 50 concurrent listeners against the platform run as production runs it.

gunicorn (3 workers) with config.settings.production on PostgreSQL, Redis as broker and cache, a
`gpu` worker and a `cpu` worker, the demo catalog; then locust, headless, for a fixed time. Writes
requests/s, p50/p95/p99 and errors per endpoint to bench/results/load_<label>.json.

    python bench/load_bench.py --label after
    python bench/load_bench.py --label before --repo /tmp/refrain-before   # an older checkout, same venv

Needs the local PostgreSQL (trust auth) and Redis of this machine, and requirements/bench.txt in
.venv-bench (created on first run). Sends traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PORT = 8765


def sh(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def bench_venv() -> Path:
    venv = ROOT / ".venv-bench"
    if not (venv / "bin" / "locust").exists():
        sh([sys.executable, "-m", "venv", str(venv)])
        sh([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(ROOT / "requirements" / "bench.txt")])
    return venv


def environment(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "CACHE_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/refrain_load",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/5",
        CACHE_URL="redis://127.0.0.1:6379/6",
        REFRAIN_VAR_DIR=str(var),
        MEDIA_ROOT=str(var / "media"),
        # The load is many listeners from one address: per-client throttles would measure themselves.
        THROTTLE_ANON="100000/min",
        THROTTLE_USER="100000/min",
        THROTTLE_AUTH="100000/min",
        THROTTLE_GENERATION="100000/min",
        NUM_PROXIES="0",
    )
    return env


def wait_for(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not answer 200 within {timeout} s")


def summarise(prefix: Path) -> dict:
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    failures = list(csv.DictReader(open(f"{prefix}_failures.csv"))) if Path(f"{prefix}_failures.csv").exists() else []
    out = {}
    for row in rows:
        out[row["Name"]] = {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "requests_per_s": round(float(row["Requests/s"]), 1),
            "p50_ms": float(row["50%"]),
            "p95_ms": float(row["95%"]),
            "p99_ms": float(row["99%"]),
        }
    return {"endpoints": out, "failures": failures[:50]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True)
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to run (default: this one)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--per-collection", type=int, default=20)
    args = parser.parse_args()
    repo = args.repo.resolve()
    python = str(ROOT / ".venv" / "bin" / "python")
    locust = bench_venv() / "bin" / "locust"
    var = Path(tempfile.mkdtemp(prefix="refrain-load-"))
    env = environment(var)
    psql = ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"]
    sh([*psql, "DROP DATABASE IF EXISTS refrain_load"])
    sh([*psql, "CREATE DATABASE refrain_load"])
    for db in ("5", "6"):
        sh(["redis-cli", "-n", db, "FLUSHDB"], stdout=subprocess.DEVNULL)
    manage = [python, "manage.py"]
    print("set-up: migrate, demo model, demo catalog ...", flush=True)
    for step in (["migrate", "--noinput", "-v0"], ["register_default_model"]):
        sh([*manage, *step], cwd=repo, env=env)
    sh([*manage, "import_corpus", "--per-collection", str(args.per_collection), "--no-progress"], cwd=repo, env=env)
    gpu_queues = "gpu,gpu-bulk" if "gpu-bulk" in (repo / "bin" / "run-dev").read_text() else "gpu"
    logs = var / "log"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [python, "-m", "gunicorn", "config.wsgi", "-w", "3", "-b", f"127.0.0.1:{PORT}", "--timeout", "60"],
            cwd=repo,
            env=env,
            stdout=open(logs / "web.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [python, "-m", "celery", "-A", "config", "worker", "-Q", gpu_queues, "-P", "solo", "-n", "gpu@%h"],
            cwd=repo,
            env=env,
            stdout=open(logs / "gpu.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
        subprocess.Popen(
            [python, "-m", "celery", "-A", "config", "worker", "-Q", "cpu", "-c", "1", "-n", "cpu@%h"],
            cwd=repo,
            env=env,
            stdout=open(logs / "cpu.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ),
    ]
    try:
        wait_for(f"http://127.0.0.1:{PORT}/healthz")
        time.sleep(20)  # let the gpu worker embed the catalog before listeners ask for similar tracks
        load_before = os.getloadavg()
        prefix = var / "locust"
        print(f"locust: {args.users} users for {args.seconds} s ...", flush=True)
        subprocess.run(
            [
                str(locust),
                "-f",
                str(HERE / "load" / "locustfile.py"),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                "10",
                "-t",
                f"{args.seconds}s",
                "--host",
                f"http://127.0.0.1:{PORT}",
                "--csv",
                str(prefix),
                "--only-summary",
            ],
            cwd=var,
            check=False,
        )
        result = {
            "label": args.label,
            "repo_commit": subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "setup": {
                "users": args.users,
                "seconds": args.seconds,
                "spawn_rate": 10,
                "gunicorn_workers": 3,
                "settings": "config.settings.production",
                "database": "PostgreSQL",
                "broker_and_cache": "Redis",
                "demo_tunes_per_collection": args.per_collection,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
            },
            **summarise(prefix),
        }
        out = ROOT / "bench" / "results" / f"load_{args.label}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {out}")
        agg = result["endpoints"].get("Aggregated", {})
        print(
            f"aggregated: {agg.get('requests_per_s')} req/s, p50 {agg.get('p50_ms')} ms, "
            f"p95 {agg.get('p95_ms')} ms, p99 {agg.get('p99_ms')} ms, failures {agg.get('failures')}"
        )
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
