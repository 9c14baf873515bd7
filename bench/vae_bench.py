"""Benchmark the melody VAE: training throughput, generation throughput, one-melody latency.

    python bench/vae_bench.py --checkpoint generation/checkpoints/mel_16bar.pt --out bench/results/vae_cpu.json

Training throughput uses random token windows (speed does not depend on the data); generation
decodes 16-bar melodies from prior samples with multinomial sampling at temperature 1.
Batches whose estimated time exceeds --max-seconds are skipped and say so in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation.vae.checkpoint import load_model  # noqa: E402
from generation.vae.config import get_config  # noqa: E402
from generation.vae.model import MusicVAE  # noqa: E402
from generation.vae.train import train_step  # noqa: E402


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


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


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
    return {"config": config_name, "batch": cfg.batch_size, "seq_len": cfg.seq_len, "steps_timed": steps,
            "seconds_per_step_median": med, "windows_per_s": cfg.batch_size / med,
            "note": "includes the scheduled-sampling pass"}


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="generation/checkpoints/mel_16bar.pt")
    p.add_argument("--out", default="bench/results/vae_cpu.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--batches", default="1,64,1024,16384")
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)

    result: dict = {"machine": machine(), "device": str(dev)}
    model, _ = load_model(args.checkpoint, dev)
    result["checkpoint"] = {"path": args.checkpoint, "config": model.cfg.name,
                            "params": sum(p.numel() for p in model.parameters()),
                            "bytes": Path(args.checkpoint).stat().st_size}
    print("latency of one melody ...", flush=True)
    g = torch.Generator(device=dev).manual_seed(0)
    lat = []
    with torch.no_grad():
        for i in range(11):
            z = torch.randn(1, model.cfg.z_dim, device=dev)
            t = time.perf_counter()
            model.generate(z, temperature=1.0, generator=g)
            sync(dev)
            lat.append(time.perf_counter() - t)
    lat = lat[1:]
    result["latency_one_melody_s"] = {"median": statistics.median(lat), "min": min(lat), "max": max(lat),
                                      "steps": model.cfg.seq_len}
    print(f"  median {result['latency_one_melody_s']['median']*1000:.1f} ms", flush=True)
    print("generation throughput ...", flush=True)
    result["generation_16bar"] = bench_generation(model, dev, [int(b) for b in args.batches.split(",")], args.max_seconds)
    print("training throughput ...", flush=True)
    result["training"] = [bench_training(name, dev, args.train_steps) for name in ("mel_2bar", "mel_16bar")]
    for t in result["training"]:
        print(f"  {t['config']}: {t['windows_per_s']:.1f} windows/s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
