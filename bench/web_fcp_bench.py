"""First contentful paint of the home page (the signed-in listener's feed), in a real browser.

Not part of the test suite. Against a running server with the demo catalog (`make run`, 240 tunes;
or any URL): Playwright drives the system Chromium (headless, as the browser tests do), signs in as
the demo listener, then loads the home page --runs times in fresh tabs and reads the browser's own
Paint Timing entry (`performance.getEntriesByName("first-contentful-paint")`) and the navigation
timing (time to first byte, DOMContentLoaded, load). The first load after the server started
(loads the index, computes the cold-start groups) is reported apart. Target: FCP < 1 s.

    make run                                    # in another terminal (or any server with the demo data)
    python bench/web_fcp_bench.py               # http://127.0.0.1:8000, user demo
    python bench/web_fcp_bench.py --url http://127.0.0.1:8765 --runs 30 --out bench/results/web_fcp.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  return {fcp_ms: fcp ? fcp.startTime : null, ttfb_ms: nav.responseStart, dom_content_loaded_ms: nav.domContentLoadedEventEnd,
          load_ms: nav.loadEventEnd, html_bytes: nav.transferSize, cards: document.querySelectorAll("#feed article.card").length};
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", default="refrain-listener-demo")
    parser.add_argument("--path", default="/", help="the page to measure (default: home, the mixed feed)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chromium", default=os.environ.get("REFRAIN_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "web_fcp.json"))
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{args.url}/sign-in/")
        page.fill("#u", args.username)
        page.fill("#p", args.password)
        page.click("form button[type=submit]")
        page.wait_for_load_state("load")
        if "/sign-in/" in page.url:
            raise SystemExit(f"could not sign in as {args.username} at {args.url}")
        page.close()
        samples = []
        for _ in range(args.runs + 1):
            tab = context.new_page()
            tab.goto(f"{args.url}{args.path}", wait_until="load")
            tab.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
            samples.append(tab.evaluate(TIMING))
            tab.close()
            time.sleep(0.2)
        version = browser.version
        browser.close()

    first, timed = samples[0], samples[1:]
    fcps = [s["fcp_ms"] for s in timed]
    result = {
        "label": "first contentful paint of the home page (signed-in feed), headless Chromium",
        "target": "FCP < 1000 ms with the demo catalog on this machine",
        "url": args.url + args.path,
        "runs": len(timed),
        "first_load": first,
        "fcp_ms": {
            "p50": round(statistics.median(fcps), 1),
            "p90": round(percentile(fcps, 0.9), 1),
            "max": round(max(fcps), 1),
            "mean": round(statistics.mean(fcps), 1),
        },
        "ttfb_ms_p50": round(statistics.median(s["ttfb_ms"] for s in timed), 1),
        "dom_content_loaded_ms_p50": round(statistics.median(s["dom_content_loaded_ms"] for s in timed), 1),
        "load_ms_p50": round(statistics.median(s["load_ms"] for s in timed), 1),
        "feed_cards": timed[-1]["cards"],
        "meets_target": percentile(fcps, 0.9) < 1000,
        "environment": {
            "browser": f"Chromium {version}",
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
            ).stdout.strip(),
            "server": "manage.py runserver (DEBUG, the development server `make run` starts)",
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
