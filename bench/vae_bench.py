"""Benchmark the melody VAE: training throughput, generation throughput, one-melody latency.

    python bench/vae_bench.py --checkpoint generation/checkpoints/mel_16bar.pt --out bench/results/vae_cpu.json

On a GPU (one H100: well under 3 minutes per run):

    python bench/vae_bench.py --device cuda --checkpoint generation/checkpoints/mel_16bar.pt
    python bench/vae_bench.py --device cuda --config mel_16bar_large

Training throughput uses random token windows (speed does not depend on the data); generation
decodes melodies from prior samples with sampling at temperature 1. `--config NAME` benchmarks a
randomly initialised model of that config instead of the checkpoint (speed does not depend on the
weights). Batches whose estimated time exceeds --max-seconds are skipped and say so in the JSON.

On CUDA (or with --fast-paths on) it also compares the decode paths of generation/vae/fast_decode.py:
    eager_fp32   MusicVAE.generate (the reference: a Python loop of small kernels)
    eager_bf16   GraphDecoder(use_graph=False, bf16): the fast decode's code, launched from Python
    graph_bf16   GraphDecoder in bf16: the whole decode replayed as one CUDA graph
    graph_fp32   GraphDecoder in fp32 (by default at batch 1 only: --graph-fp32-batches)
with melodies/s (median of a few timed calls after a warm-up call), one-melody latency p50/p95
(tokens copied back to the host), graph capture time, and consistency checks between the paths.
Every GPU-only step is wrapped so that an error is recorded in the JSON instead of ending the run,
and the JSON is rewritten after each section. --time-budget bounds the whole run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation.vae.checkpoint import load_model
from generation.vae.config import get_config
from generation.vae.fast_decode import GraphDecoder
from generation.vae.model import MusicVAE
from generation.vae.representation import FIRST_NOTE, VOCAB_SIZE
from generation.vae.train import train_step

PATHS = ("eager_fp32", "eager_bf16", "graph_bf16", "graph_fp32")
TARGET_MELODIES_PER_S = 100_000  # graph bf16 at batch 16384 on one H100
TARGET_LATENCY_MS = 15.0  # one melody, graph bf16 at batch 1


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def cuda_info() -> dict:
    """Versions and the GPU's properties; each field on its own so one failure loses only itself."""
    info: dict = {"torch_cuda": torch.version.cuda}
    for key, get in (
        ("cudnn", lambda: torch.backends.cudnn.version()),
        ("device_count", lambda: torch.cuda.device_count()),
        ("name", lambda: torch.cuda.get_device_name(0)),
        ("capability", lambda: list(torch.cuda.get_device_capability(0))),
        ("total_memory_gib", lambda: round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)),
        ("multiprocessors", lambda: torch.cuda.get_device_properties(0).multi_processor_count),
        ("matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
        ("cudnn_allow_tf32", lambda: torch.backends.cudnn.allow_tf32),
        (
            "driver",
            lambda: subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip(),
        ),
    ):
        try:
            info[key] = get()
        except Exception as exc:
            info[key] = f"unavailable: {type(exc).__name__}: {exc}"
    return info


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def error_record(exc: BaseException) -> dict:
    tail = traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:]
    return {"error": f"{type(exc).__name__}: {exc}", "traceback_tail": "".join(tail)[-1500:]}


def free_memory(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception:
            pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Budget:
    """Seconds left for the whole run: later sections are skipped (and say so) once it is spent."""

    def __init__(self, seconds: float):
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def bench_training(config_name: str, dev: torch.device, steps: int) -> dict:
    cfg = get_config(config_name)
    model = MusicVAE(cfg).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    x = torch.randint(0, 90, (cfg.batch_size, cfg.seq_len), device=dev)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        # step well past the scheduled-sampling warm-up: the timed steps include its extra pass
        m = train_step(model, x, cfg, 10_000, dev)
        opt.zero_grad()
        m["loss"].backward()
        opt.step()
        sync(dev)
        if i:  # the first step pays one-off allocation costs
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {
        "config": config_name,
        "batch": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "steps_timed": steps,
        "seconds_per_step_median": med,
        "windows_per_s": cfg.batch_size / med,
        "note": "includes the scheduled-sampling pass",
    }


@torch.no_grad()
def bench_generation(model: MusicVAE, dev: torch.device, batches: list[int], max_seconds: float) -> dict:
    out = {}
    per_melody_est = None
    for b in batches:
        if per_melody_est is not None and per_melody_est * b > max_seconds:
            out[str(b)] = {"skipped": f"estimated {per_melody_est * b:.0f} s > --max-seconds {max_seconds:.0f}"}
            continue
        g = torch.Generator(device=dev).manual_seed(0)
        z = torch.randn(b, model.cfg.z_dim, device=dev)
        reps = 5 if b == 1 else 1
        times = []
        for _ in range(reps + (1 if b == 1 else 0)):
            t = time.perf_counter()
            model.generate(z, temperature=1.0, generator=g)
            sync(dev)
            times.append(time.perf_counter() - t)
        if b == 1:
            times = times[1:]  # warm-up
        sec = statistics.median(times)
        out[str(b)] = {"seconds": sec, "melodies_per_s": b / sec}
        per_melody_est = sec / b
        print(f"  batch {b:6d}: {b / sec:10.1f} melodies/s ({sec:.3f} s)", flush=True)
    return out


@torch.no_grad()
def bench_latency_generate(model: MusicVAE, dev: torch.device) -> dict:
    g = torch.Generator(device=dev).manual_seed(0)
    lat = []
    for _ in range(11):
        z = torch.randn(1, model.cfg.z_dim, device=dev)
        t = time.perf_counter()
        model.generate(z, temperature=1.0, generator=g)
        sync(dev)
        lat.append(time.perf_counter() - t)
    lat = lat[1:]
    return {"median": statistics.median(lat), "min": min(lat), "max": max(lat), "steps": model.cfg.seq_len}


# ---- fast decode paths -------------------------------------------------------------------------------
class PathRunner:
    """One decode path at one batch size: `run(z, generator)` -> tokens, plus what was built."""

    def __init__(self, path: str, model: MusicVAE, batch: int, temperature: float, dev: torch.device):
        self.path, self.decoder = path, None
        if path == "eager_fp32":
            self.run = lambda z, g: model.generate(z, temperature=temperature, generator=g)
            return
        dtype = torch.bfloat16 if path.endswith("bf16") else torch.float32
        use_graph = False if path.startswith("eager") or dev.type != "cuda" else None
        self.decoder = GraphDecoder(model, batch, dtype, temperature=temperature, use_graph=use_graph)
        self.run = self.decoder

    def describe(self) -> dict:
        if self.decoder is None:
            return {"implementation": "MusicVAE.generate (fp32)"}
        return self.decoder.describe()


@torch.no_grad()
def bench_fast_paths(model: MusicVAE, dev: torch.device, args, budget: Budget) -> dict:
    """Throughput per (path, batch) and one-melody latency per path; errors and skips recorded."""
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    fp32_graph_batches = {int(b) for b in args.graph_fp32_batches.split(",") if b.strip()}
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    result: dict = {
        "temperature": args.temperature,
        "repeats": args.repeats,
        "latency_calls": args.latency_calls,
        "throughput": {},
        "latency_one_melody": {},
    }
    if dev.type != "cuda":
        result["note"] = "no CUDA: graph_* paths run the same code eagerly (no capture)"
    for path in paths:
        rows: dict = {}
        result["throughput"][path] = rows
        per_melody_est = None  # seconds per melody at the previous batch of this path
        for b in batches:
            if path == "graph_fp32" and b not in fp32_graph_batches:
                rows[str(b)] = {"skipped": f"graph_fp32 only at --graph-fp32-batches {sorted(fp32_graph_batches)}"}
                continue
            cap = min(args.max_seconds, budget.left())
            calls = (
                args.repeats + 1 + (3 if path.startswith("graph") and dev.type == "cuda" else 0)
            )  # + warm-up (+ capture)
            if per_melody_est is not None and per_melody_est * b * calls > cap:
                rows[str(b)] = {
                    "skipped": f"estimated {per_melody_est * b * calls:.0f} s > limit {cap:.0f} s "
                    f"(--max-seconds {args.max_seconds:.0f}, time budget left {budget.left():.0f} s)"
                }
                print(f"  {path:10s} batch {b:6d}: skipped ({rows[str(b)]['skipped']})", flush=True)
                continue
            if budget.left() <= 0:
                rows[str(b)] = {"skipped": "time budget spent"}
                continue
            runner = None
            try:
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                gen = torch.Generator(device=dev).manual_seed(0)
                z = torch.randn(b, model.cfg.z_dim, device=dev, generator=gen)
                t0 = time.perf_counter()
                runner = PathRunner(path, model, b, args.temperature, dev)
                sync(dev)
                build_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                runner.run(z, gen)
                sync(dev)
                first_s = time.perf_counter() - t0
                reps = max(1, min(args.repeats, int(max(cap - build_s - first_s, 0) / max(first_s, 1e-6))))
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    tokens = runner.run(z, gen)
                    sync(dev)
                    times.append(time.perf_counter() - t0)
                sec = statistics.median(times)
                row = {
                    "seconds_median": sec,
                    "seconds_all": times,
                    "melodies_per_s": b / sec,
                    "build_seconds": build_s,
                    "first_call_seconds": first_s,
                    "repeats": reps,
                    "tokens_shape": list(tokens.shape),
                    **runner.describe(),
                }
                if dev.type == "cuda":
                    row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
                rows[str(b)] = row
                per_melody_est = sec / b
                extra = f", capture {row['capture_seconds']:.2f} s" if row.get("capture_seconds") else ""
                print(
                    f"  {path:10s} batch {b:6d}: {b / sec:12.1f} melodies/s ({sec * 1000:.2f} ms/call{extra})",
                    flush=True,
                )
                if b == 1 and args.latency_calls > 0:
                    try:
                        lat = latency(runner, model, dev, args.latency_calls, min(args.max_seconds, budget.left()))
                        print(
                            f"  {path:10s} latency: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms", flush=True
                        )
                    except Exception as exc:
                        lat = error_record(exc)
                        print(f"  {path:10s} latency: ERROR {lat['error']}", flush=True)
                    result["latency_one_melody"][path] = lat
            except Exception as exc:
                rows[str(b)] = error_record(exc)
                print(f"  {path:10s} batch {b:6d}: ERROR {rows[str(b)]['error']}", flush=True)
            finally:
                del runner
                free_memory(dev)
    result["targets"] = targets(result)
    return result


def latency(runner: PathRunner, model: MusicVAE, dev: torch.device, calls: int, cap: float) -> dict:
    """Wall time of one-melody calls, each ending with the tokens on the host (what a service returns)."""
    gen = torch.Generator(device=dev).manual_seed(1)
    zs = torch.randn(calls, 1, model.cfg.z_dim, device=dev, generator=gen)
    sync(dev)
    times = []
    start = time.perf_counter()
    for i in range(calls):
        t0 = time.perf_counter()
        runner.run(zs[i], gen).cpu()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > cap:
            break
    ms = [t * 1000 for t in times]
    return {
        "calls": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "mean_ms": statistics.mean(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def targets(result: dict) -> dict:
    """The two goals, read off the measurements (None where the row is missing)."""
    row = result["throughput"].get("graph_bf16", {}).get("16384", {})
    lat = result["latency_one_melody"].get("graph_bf16", {})
    mps, p50 = row.get("melodies_per_s"), lat.get("p50_ms")
    return {
        "graph_bf16_melodies_per_s_at_16384": mps,
        "target_melodies_per_s": TARGET_MELODIES_PER_S,
        "throughput_met": None if mps is None else mps >= TARGET_MELODIES_PER_S,
        "graph_bf16_latency_p50_ms": p50,
        "target_latency_ms": TARGET_LATENCY_MS,
        "latency_met": None if p50 is None else p50 <= TARGET_LATENCY_MS,
    }


# ---- consistency checks --------------------------------------------------------------------------------
def agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.cpu(), b.cpu()
    return {
        "token_agreement": (a == b).float().mean().item(),
        "identical_melodies": (a == b).all(1).float().mean().item(),
        "equal": bool(torch.equal(a, b)),
    }


def token_stats(tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
    t = tokens.cpu().flatten()
    hist = torch.bincount(t, minlength=VOCAB_SIZE).double()
    hist /= hist.sum()
    return hist, {
        "hold": hist[0].item(),
        "off": hist[1].item(),
        "note_on": hist[FIRST_NOTE:].sum().item(),
        "distinct_tokens": int((hist > 0).sum().item()),
    }


@torch.no_grad()
def bench_checks(model: MusicVAE, dev: torch.device, args, budget: Budget) -> dict:
    """Does the fast decode compute the same thing? Each check is independent; errors are recorded."""
    n = args.check_batch
    gen = torch.Generator(device=dev).manual_seed(2)
    z = torch.randn(n, model.cfg.z_dim, device=dev, generator=gen)
    checks: dict = {"batch": n}

    def check(name: str, fn) -> None:
        if budget.left() <= 0:
            checks[name] = {"skipped": "time budget spent"}
            return
        t0 = time.perf_counter()
        try:
            checks[name] = fn()
            checks[name]["seconds"] = time.perf_counter() - t0
        except Exception as exc:
            checks[name] = error_record(exc)
        finally:
            free_memory(dev)
        print(
            f"  {name}: {json.dumps({k: v for k, v in checks[name].items() if k != 'traceback_tail'})[:300]}",
            flush=True,
        )

    def seeded(seed: int) -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(seed)

    reference = {}

    def greedy_vs_generate(dtype):
        def run():
            if "greedy" not in reference:
                reference["greedy"] = model.generate(z, greedy=True)
            dec = GraphDecoder(model, n, dtype, greedy=True)
            return {**agreement(dec(z), reference["greedy"]), "decoder": dec.describe()}

        return run

    check("graph_fp32_greedy_vs_generate", greedy_vs_generate(torch.float32))
    check("graph_bf16_greedy_vs_generate", greedy_vs_generate(torch.bfloat16))

    def padded_fp32_greedy():
        rows = max(1, n // 3)
        dec = GraphDecoder(model, n, torch.float32, greedy=True)
        return {"rows": rows, **agreement(dec(z[:rows]), model.generate(z[:rows], greedy=True))}

    check("graph_fp32_greedy_padded_vs_generate", padded_fp32_greedy)

    def graph_vs_eager_same_code():
        # Same kernels, same noise: a correct capture replays exactly what the eager run computes.
        graph = GraphDecoder(model, n, torch.bfloat16, temperature=args.temperature)
        eager = GraphDecoder(
            model, n, torch.bfloat16, temperature=args.temperature, use_graph=False, conductor=graph.conductor
        )
        return {**agreement(graph(z, seeded(5)), eager(z, seeded(5))), "graph_captured": graph.graph is not None}

    check("graph_bf16_vs_eager_same_code_sampled", graph_vs_eager_same_code)

    def reproducible():
        dec = GraphDecoder(model, n, torch.bfloat16, temperature=args.temperature)
        a, b, c = dec(z, seeded(7)), dec(z, seeded(7)), dec(z, seeded(8))
        return {"same_seed_equal": bool(torch.equal(a, b)), "other_seed_agreement": agreement(a, c)["token_agreement"]}

    check("graph_bf16_seed_reproducible", reproducible)

    def distribution():
        # Sampling must draw from the same distribution as generate: compare token histograms of
        # many sampled melodies; generate against itself with another seed gives the noise floor.
        m = args.distribution_batch
        zz = torch.randn(m, model.cfg.z_dim, device=dev, generator=seeded(9))
        ref_a = model.generate(zz, temperature=args.temperature, generator=seeded(10))
        ref_b = model.generate(zz, temperature=args.temperature, generator=seeded(11))
        out = {"melodies": m}
        h_a, out["generate"] = token_stats(ref_a)
        h_b, _ = token_stats(ref_b)
        out["tv_generate_vs_generate_other_seed"] = 0.5 * (h_a - h_b).abs().sum().item()
        for dtype, name in ((torch.bfloat16, "graph_bf16"), (torch.float32, "graph_fp32")):
            dec = GraphDecoder(model, m, dtype, temperature=args.temperature)
            h, out[name] = token_stats(dec(zz, seeded(12)))
            out[f"tv_{name}_vs_generate"] = 0.5 * (h - h_a).abs().sum().item()
            del dec
            free_memory(dev)
        return out

    check("sampled_token_distribution", distribution)
    return checks


# ---- main -------------------------------------------------------------------------------------------------
def plot_generation(result: dict, path: Path) -> None:
    """Melodies/s against batch size for every decode path, and one-melody latency: the picture of a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fast = result.get("fast_decode") if isinstance(result.get("fast_decode"), dict) else {}
    curves = {
        path_name: {
            int(b): row["melodies_per_s"]
            for b, row in rows.items()
            if isinstance(row, dict) and row.get("melodies_per_s")
        }
        for path_name, rows in (fast.get("throughput") or {}).items()
    }
    plain = result.get("generation_16bar")
    if not curves and isinstance(plain, dict):
        curves["MusicVAE.generate"] = {
            int(b): r["melodies_per_s"] for b, r in plain.items() if isinstance(r, dict) and "melodies_per_s" in r
        }
    latency = {
        k: v["p50_ms"]
        for k, v in (fast.get("latency_one_melody") or {}).items()
        if isinstance(v, dict) and "p50_ms" in v
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    for name, points in curves.items():
        if points:
            xs = sorted(points)
            left.plot(xs, [points[x] for x in xs], "o-", label=name)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("batch (melodies per call)")
    left.set_ylabel("16-bar melodies / s")
    left.axhline(100_000, color="grey", ls="--", lw=0.8)
    left.legend(fontsize=8)
    if latency:
        right.barh(list(latency), list(latency.values()))
        right.axvline(15, color="grey", ls="--", lw=0.8)
        right.set_xscale("log")
        right.set_xlabel("one melody, p50 (ms)")
    device = (result.get("cuda") or {}).get("name") or result.get("machine", {}).get("cpu", "")
    fig.suptitle(f"{result.get('checkpoint', {}).get('config')}: generation on {device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="generation/checkpoints/mel_16bar.pt")
    p.add_argument(
        "--config",
        default=None,
        help="benchmark a randomly initialised model of this config (e.g. mel_16bar_large) instead of --checkpoint",
    )
    p.add_argument(
        "--out",
        default=None,
        help="JSON path (default bench/results/vae_cpu.json on CPU, bench/results/vae_gpu_<model>.json on CUDA)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=5, help="0 skips the training benchmark")
    p.add_argument("--batches", default="1,64,1024,16384")
    p.add_argument("--max-seconds", type=float, default=120.0, help="skip a (path, batch) estimated to take longer")
    p.add_argument(
        "--fast-paths",
        choices=("auto", "on", "off"),
        default="auto",
        help="compare the fast_decode paths (auto: on for CUDA, off for CPU)",
    )
    p.add_argument("--paths", default=",".join(PATHS), help=f"subset of {','.join(PATHS)}")
    p.add_argument("--graph-fp32-batches", default="1", help="batches at which graph_fp32 runs")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per (path, batch) after one warm-up call")
    p.add_argument("--latency-calls", type=int, default=50)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--check-batch", type=int, default=None, help="batch of the consistency checks (64 CUDA, 4 CPU)")
    p.add_argument(
        "--distribution-batch",
        type=int,
        default=None,
        help="melodies per histogram in the sampling check (1024 CUDA, 4 CPU)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds for the whole run; later sections are skipped once spent (default 150 on CUDA, none on CPU)",
    )
    args = p.parse_args()
    bad = [x for x in args.paths.split(",") if x.strip() and x.strip() not in PATHS]
    if bad:
        p.error(f"unknown --paths {bad}; choose from {PATHS}")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    fast = args.fast_paths == "on" or (args.fast_paths == "auto" and dev.type == "cuda")
    args.check_batch = args.check_batch or (64 if dev.type == "cuda" else 4)
    args.distribution_batch = args.distribution_batch or (1024 if dev.type == "cuda" else 4)
    if args.time_budget is None:
        args.time_budget = 150.0 if dev.type == "cuda" else float("inf")
    budget = Budget(args.time_budget)
    started = time.perf_counter()
    torch.manual_seed(0)

    result: dict = {
        "machine": machine(),
        "device": str(dev),
        "args": {k: (None if v == float("inf") else v) for k, v in vars(args).items()},
    }
    if dev.type == "cuda":
        result["cuda"] = cuda_info()
    if args.config:
        cfg = get_config(args.config)
        model = MusicVAE(cfg).to(dev).eval()
        result["checkpoint"] = {
            "path": None,
            "config": cfg.name,
            "random_init": True,
            "params": sum(p.numel() for p in model.parameters()),
        }
    else:
        model, _ = load_model(args.checkpoint, dev)
        result["checkpoint"] = {
            "path": args.checkpoint,
            "config": model.cfg.name,
            "params": sum(p.numel() for p in model.parameters()),
            "bytes": Path(args.checkpoint).stat().st_size,
        }
    result["model_config"] = model.cfg.to_dict()
    out_path = Path(
        args.out
        or ("bench/results/vae_cpu.json" if dev.type == "cpu" else f"bench/results/vae_gpu_{model.cfg.name}.json")
    )

    def save() -> None:
        result["elapsed_s"] = round(time.perf_counter() - started, 2)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2, default=str))

    def section(name: str, fn) -> None:
        """Run one section; on CUDA an error is recorded instead of ending the run (one shot on the GPU)."""
        if budget.left() <= 0:
            result[name] = {"skipped": "time budget spent"}
        elif dev.type == "cuda":
            try:
                result[name] = fn()
            except Exception as exc:
                result[name] = error_record(exc)
                print(f"{name}: ERROR {result[name]['error']}", flush=True)
                free_memory(dev)
        else:
            result[name] = fn()
        save()

    print(f"model {model.cfg.name}: {result['checkpoint']['params']:,} parameters, device {dev}", flush=True)
    if fast:
        print("fast decode paths ...", flush=True)
        section("fast_decode", lambda: bench_fast_paths(model, dev, args, budget))
        print("consistency checks ...", flush=True)
        section("fast_decode_checks", lambda: bench_checks(model, dev, args, budget))

    print("latency of one melody (MusicVAE.generate) ...", flush=True)
    section("latency_one_melody_s", lambda: bench_latency_generate(model, dev))
    if "median" in result["latency_one_melody_s"]:
        print(f"  median {result['latency_one_melody_s']['median'] * 1000:.1f} ms", flush=True)
    print("generation throughput (MusicVAE.generate) ...", flush=True)
    section(
        "generation_16bar",
        lambda: bench_generation(
            model, dev, [int(b) for b in args.batches.split(",")], min(args.max_seconds, max(budget.left(), 0))
        ),
    )
    if args.train_steps > 0:
        print("training throughput ...", flush=True)
        section("training", lambda: [bench_training(name, dev, args.train_steps) for name in ("mel_2bar", "mel_16bar")])
        for t in result["training"] if isinstance(result["training"], list) else []:
            print(f"  {t['config']}: {t['windows_per_s']:.1f} windows/s", flush=True)
    save()
    if fast and isinstance(result.get("fast_decode"), dict) and "targets" in result["fast_decode"]:
        print(f"targets: {json.dumps(result['fast_decode']['targets'])}", flush=True)
    plot_generation(result, out_path.with_suffix(".png"))
    print(f"wrote {out_path} and {out_path.with_suffix('.png')} ({result['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
