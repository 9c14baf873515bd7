"""Mutation testing on a time budget: how many small breaks of the code do the tests notice?

    python bench/mutation.py                       # the default files, 180 s each
    python bench/mutation.py --budget 300 --target recommend/feeds.py=tests/recommend/test_api.py
    make mutation MUTATION_BUDGET=300

For each target file mutmut (pinned in requirements/dev.txt) makes its mutants (a flipped comparison,
a changed constant, a dropped argument...), finds which of the target's tests call each mutated
function, and runs only those tests against that mutant, in a forked worker on the real SQLite test
database (config.settings.test). A file's run stops when its budget is spent; mutants not tried by
then are reported as such, so a short budget gives a partial but honest count. Writes
bench/results/mutation.json: per file the mutants tried, killed, survived, timed out, those no
selected test reaches, the score and the surviving mutants' diffs; the machine's load average
before and after (the timings depend on it: 2 shared CPU cores here).

Mutants run in var/mutation/<file>/ (a copy of the apps made by mutmut, never the working tree). Static
settings are in pyproject.toml [tool.mutmut]; the file list and each file's tests are below, so the
recommend selectors can be split into modules without touching anything else: a target that does
not exist is skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "mutation"
# What the mutated copy needs to import and test (mutmut copies these into WORK/mutants).
LINKED = ["theory", "catalog", "generation", "recommend", "config", "tests", "pytest.ini", "pyproject.toml"]

RECOMMEND_TESTS = [
    "tests/recommend/test_api.py",
    "tests/recommend/test_index.py",
    "tests/recommend/test_embeddings.py",
    "tests/recommend/test_catalog_summary.py",
    "tests/recommend/test_model_swap.py",
    "tests/test_events.py",
]
# file -> the tests that exercise it. The read side of recommend is split into modules named for what
# they hold; every one of them is measured with the same tests.
TARGETS: dict[str, list[str]] = {
    "catalog/services.py": [
        "tests/catalog/test_services.py",
        "tests/catalog/test_api.py",
        "tests/catalog/test_media.py",
    ],
    "generation/services.py": [
        "tests/generation/test_jobs.py",
        "tests/generation/test_job_faults.py",
        "tests/generation/test_model_versions.py",
    ],
    "generation/job_runner.py": ["tests/generation/test_jobs.py", "tests/generation/test_job_faults.py"],
    "recommend/selectors.py": RECOMMEND_TESTS,
    "recommend/feeds.py": RECOMMEND_TESTS,
    "recommend/taste.py": RECOMMEND_TESTS,
    "recommend/index_readers.py": RECOMMEND_TESTS,
    "recommend/algorithms.py": RECOMMEND_TESTS,
    "recommend/cold_start.py": RECOMMEND_TESTS,
    "recommend/feed_items.py": RECOMMEND_TESTS,
}

KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timeout", "no tests"


def prepare_workdir(work: Path) -> None:
    """A fresh folder with links to the sources: every run measures the code as it is now. It is
    kept afterwards: `cd var/mutation/<file> && mutmut show <mutant>` shows one again."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)


def run_child(target: str, tests: list[str], max_children: int, summary_path: Path, seed: int) -> None:
    """Inside WORK: run mutmut on one file with its tests, then summarise its results as JSON."""
    import mutmut.__main__ as mutmut_main
    from mutmut import configuration
    from mutmut.__main__ import _run
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    # The budget ends with SIGINT, which mutmut turns into "stop and keep the results". A process
    # started in the background by a shell inherits SIGINT ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = configuration.config()
    cfg.only_mutate = [target]
    cfg.pytest_add_cli_args_test_selection = list(tests)
    # mutmut runs the mutants with the fastest tests first; a run cut short by the budget would then
    # measure only the cheap functions. A seeded random order makes it a fair sample of the file.
    rank = {}

    def random_rank(name: str) -> float:
        return rank.setdefault(name, random.Random(f"{seed}:{name}").random())

    mutmut_main.estimated_worst_case_time = random_rank
    stopped = None
    try:
        _run([], max_children)
    except KeyboardInterrupt:  # the budget ran out before mutmut's own loop (which catches it) began
        stopped = "budget spent before the mutants ran (stats collection or clean run)"
    except SystemExit as exc:  # mutmut exits when the tests fail without any mutant
        stopped = f"mutmut stopped (exit {exc.code}): the selected tests must pass on the real code"
    except Exception as exc:  # noqa: BLE001 - e.g. pytest interrupted inside the stats collection
        stopped = f"mutmut stopped: {type(exc).__name__}: {exc}"
    data = SourceFileMutationData(path=Path(target))
    data.load()
    statuses = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}
    survivors = []
    for name in sorted(n for n, s in statuses.items() if s == SURVIVED):
        try:
            diff = get_diff_for_mutant(name, path=target)
        except Exception as exc:  # noqa: BLE001 - a missing diff must not lose the counts
            diff = f"(no diff: {exc})"
        survivors.append({"mutant": name, "diff": diff})
    summary_path.write_text(json.dumps({"statuses": statuses, "survivors": survivors, "stopped": stopped}))


def measure(target: str, tests: list[str], budget: float, max_children: int, seed: int) -> dict:
    work = WORK / target.replace("/", "-").removesuffix(".py")
    prepare_workdir(work)
    summary_path = work / "summary.json"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "REFRAIN_TEST_SQLITE": str(work / "test.sqlite3"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--child", target, "--tests", *tests]
    command += ["--max-children", str(max_children), "--summary", str(summary_path), "--seed", str(seed)]
    started = time.monotonic()
    budget_spent = False
    with open(work / "mutmut.log", "w") as log:
        child = subprocess.Popen(
            command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            child.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            budget_spent = True
            child.send_signal(signal.SIGINT)  # mutmut stops its workers and keeps the results so far
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)  # our own child's process group only
                child.wait()
    seconds = time.monotonic() - started
    result: dict = {"file": target, "tests": tests, "seconds": round(seconds, 1), "stopped_by_budget": budget_spent}
    if not summary_path.exists():
        result["error"] = "mutmut gave no results; see the log tail"
        result["log_tail"] = (work / "mutmut.log").read_text(errors="replace")[-3000:]
        return result
    summary = json.loads(summary_path.read_text())
    statuses = list(summary["statuses"].values())
    counts = {s: statuses.count(s) for s in set(statuses)}
    tried = sum(n for s, n in counts.items() if s != "not checked")
    result.update(
        mutants=len(statuses),
        tried=tried,
        killed=counts.get(KILLED, 0),
        survived=counts.get(SURVIVED, 0),
        timed_out=counts.get(TIMEOUT, 0),
        no_tests=counts.get(NO_TESTS, 0),
        other={s: n for s, n in counts.items() if s not in (KILLED, SURVIVED, TIMEOUT, NO_TESTS, "not checked")},
        not_tried=counts.get("not checked", 0),
        score=score(counts.get(KILLED, 0), counts.get(TIMEOUT, 0), tried),
        score_ci95=wilson(counts.get(KILLED, 0) + counts.get(TIMEOUT, 0), tried),
        survivors=summary["survivors"],
    )
    if summary["stopped"]:
        result["stopped"] = summary["stopped"]
    return result


def score(killed: int, timed_out: int, tried: int) -> float | None:
    """Share of the tried mutants the tests detected (a mutant that hangs the tests counts as
    detected); a mutant no selected test reaches counts as not detected."""
    return round((killed + timed_out) / tried, 4) if tried else None


def wilson(detected: int, tried: int) -> list[float] | None:
    """95 % interval of the file's score when the tried mutants are a random sample of its mutants."""
    if not tried:
        return None
    z, p = 1.96, detected / tried
    centre = (p + z * z / (2 * tried)) / (1 + z * z / tried)
    half = z * math.sqrt(p * (1 - p) / tried + z * z / (4 * tried * tried)) / (1 + z * z / tried)
    return [round(centre - half, 4), round(centre + half, 4)]


def parse_targets(values: list[str] | None) -> dict[str, list[str]]:
    if not values:
        return dict(TARGETS)
    targets = {}
    for value in values:
        path, _, tests = value.partition("=")
        targets[path] = tests.split(",") if tests else TARGETS.get(path) or []
        if not targets[path]:
            raise SystemExit(f"{path}: name its tests, e.g. {path}=tests/x/test_a.py,tests/x/test_b.py")
    return targets


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--budget", type=float, default=float(os.environ.get("MUTATION_BUDGET", "180")), help="seconds per file"
    )
    parser.add_argument("--target", action="append", metavar="FILE[=TEST,TEST]", help="instead of the default files")
    parser.add_argument("--max-children", type=int, default=1, help="mutants run at once (2 shared cores: 1)")
    parser.add_argument("--seed", type=int, default=0, help="of the random order the mutants are tried in")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutation.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tests", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.tests, args.max_children, Path(args.summary), args.seed)
        return {}

    import mutmut

    targets = {path: tests for path, tests in parse_targets(args.target).items() if (ROOT / path).is_file()}
    skipped = sorted(set(parse_targets(args.target)) - set(targets))
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    files = []
    for path, tests in targets.items():
        print(f"{path}: up to {args.budget:.0f} s with {', '.join(tests)}", flush=True)
        files.append(measure(path, tests, args.budget, args.max_children, args.seed))
        f = files[-1]
        print(
            f"  {f.get('tried', 0)} of {f.get('mutants', '?')} mutants tried in {f['seconds']} s: "
            f"{f.get('killed', 0)} killed, {f.get('survived', 0)} survived, {f.get('timed_out', 0)} timed out, "
            f"{f.get('no_tests', 0)} reached by no test; score {f.get('score')}",
            flush=True,
        )
    totals = {
        key: sum(f.get(key, 0) for f in files)
        for key in ("mutants", "tried", "killed", "survived", "timed_out", "no_tests", "not_tried")
    }
    report = {
        "tool": "mutmut",
        "version": mutmut.__version__,
        "command": " ".join(["python", "bench/mutation.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": started.isoformat(timespec="seconds"),
        "budget_seconds_per_file": args.budget,
        "max_children": args.max_children,
        "order": f"random (seed {args.seed}): when the budget ends, the tried mutants are a fair sample",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "files": [f["file"] for f in files],
        "skipped_missing_files": skipped,
        "total": {**totals, "score": score(totals["killed"], totals["timed_out"], totals["tried"])},
        "by_file": files,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"total: {report['total']} -> {out}")
    return report


if __name__ == "__main__":
    main()
