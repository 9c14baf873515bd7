"""Benchmark the long-form composer on the CPU: one tune's latency and batched throughput.

    python bench/longform_bench.py --prior generation/checkpoints/latent_prior.pt --out bench/results/longform_cpu.json

A "tune" is a full request: prior sampling of its chunk latents (8 chunks = 16 bars of 4/4, or
16 chunks = 32 bars) plus the rendering of its chunks (a codebook prior's drawn chunks are looked
up, others go through the greedy 2-bar decoder) and the join, at the served settings; the batch is
also run without the served nucleus cut, where there is one (the sort it needs is most of the time). Latency is the p50/p95 over --repeats calls of one tune on one thread; throughput is
the median of three batched calls of --batch tunes (all chunks through the decoder in one pass).
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

from generation.vae.longform import DEFAULT_PRIOR, LongformComposer


def one_tune(composer: LongformComposer, n_chunks: int, repeats: int) -> dict:
    composer.decode(composer.sample(n_chunks, seed=0))  # warm-up
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        composer.decode(composer.sample(n_chunks, meter=(4, 4), seed=i))
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "n_chunks": n_chunks,
        "repeats": repeats,
        "p50_ms": 1000 * statistics.median(times),
        "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
    }


def batched(
    composer: LongformComposer, n_chunks: int, batch: int, top_p: float | None = None, repeats: int = 3
) -> dict:
    """`top_p`: the nucleus of a codebook prior (None: its served one; 1.0: no cut, no sort). The
    median of `repeats` calls (seeds 1, 2, ...): one call's rate moved by a third between runs."""
    runs = []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        tunes = composer.sample_batch(n_chunks, [(4, 4)] * batch, [True] * batch, seed=seed, top_p=top_p)
        t1 = time.perf_counter()
        composer.decode(tunes)
        t2 = time.perf_counter()
        runs.append((batch / (t2 - t0), t1 - t0, t2 - t1, tunes))
    rate, prior_s, decode_s, tunes = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    return {
        "n_chunks": n_chunks,
        "batch": batch,
        "top_p": composer.default_top_p if top_p is None else top_p,
        "tunes_per_s": rate,
        "tunes_per_s_each_call": [r[0] for r in runs],
        "prior_s": prior_s,
        "decode_s": decode_s,
        "distinct_chunks_decoded": int(torch.unique(torch.cat([t.z for t in tunes]), dim=0).shape[0]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", default=str(DEFAULT_PRIOR))
    p.add_argument("--out", default="bench/results/longform_cpu.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    composer = LongformComposer.load(args.prior)
    fast = LongformComposer.load(args.prior, bf16_decode=True)
    result = {
        "prior": args.prior,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg(),
        "temperature": composer.default_temperature,
        "one_tune": [one_tune(composer, 8, args.repeats), one_tune(composer, 16, args.repeats)],
        "copy_bias": composer.default_copy_bias,
        "batched": [batched(composer, 8, args.batch)]
        + ([batched(composer, 8, args.batch, top_p=1.0)] if composer.default_top_p not in (None, 1.0) else []),
        "one_tune_bf16_decode": [one_tune(fast, 8, args.repeats), one_tune(fast, 16, args.repeats)],
        "batched_bf16_decode": [batched(fast, 8, args.batch)],
        "load_avg_at_end": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
