"""The first listener's job right after `make run`: how long it waits in the queue behind the demo
import's bulk work (renders, embeddings). Start `make run`, then, as soon as the token is printed:

    python bench/first_job_after_run.py --token <demo token> [--url http://127.0.0.1:8000]

Writes bench/results/first_job_after_run.json with the job's own timings (queued, decode, store).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from pathlib import Path


def call(url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Authorization", f"Token {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "first_job_after_run.json")
    args = parser.parse_args()
    started = time.monotonic()
    job = call(f"{args.url}/api/v1/generations/", args.token, {"kind": "sample", "count": 1})
    while job["status"] not in ("done", "failed") and time.monotonic() - started < 600:
        time.sleep(0.25)
        job = call(f"{args.url}/api/v1/generations/{job['id']}/", args.token)
    result = {
        "status": job["status"],
        "seconds_until_done_seen_by_client": round(time.monotonic() - started, 2),
        "job_timings_ms": job.get("timings"),
        "load_average": os.getloadavg(),
        "before": "60.5 s in the queue behind 237 per-track embedding tasks (issue 10, measured on the code before)",
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
