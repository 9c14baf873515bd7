"""How much one draw's held-out figures move: the served prior sampled several times per temperature.

    python bench/prior_test_draws.py --data /tmp/corpus_midi --out bench/results/prior_test_draws.json

For 8 and 16 chunks (16 and 32 bars of 4/4) and each --temperatures, draws one sample per real test
window (same meter and "ends the tune" flag; then again as the service draws them, every one a whole
tune that ends: `whole_tunes`) with each of --seeds, at the served copy bias and nucleus
(or --copy-bias), and scores it as prior_evaluate does (two-sample AUCs, repeat share, degenerate
share, lowest overlap area, in-scale ratio, copies of training windows). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.vae.longform import DEFAULT_PRIOR, LongformComposer  # noqa: E402
from generation.vae.prior_evaluate import held_out_tunes, real_windows, sample_like, score_set, training_spans  # noqa: E402
from generation.vae.representation import steps_per_bar  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--prior", default=str(DEFAULT_PRIOR))
    p.add_argument("--temperatures", type=float, nargs="+", default=None, help="default: the served one")
    p.add_argument("--copy-bias", type=float, default=None, help="default: the served one")
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "prior_test_draws.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, chunked, split, _ = held_out_tunes(args.data)
    train_keys = training_spans(chunked, split["train"])
    composer = LongformComposer.load(args.prior, bf16_decode=True)
    temperatures = args.temperatures or [composer.default_temperature]
    bias = composer.default_copy_bias if args.copy_bias is None else args.copy_bias
    runs = []
    for n in (8, 16):
        real = real_windows(chunked, split["test"], n, 400, seed=0)
        steps, bars = [r["steps"] for r in real], [steps_per_bar(*r["meter"]) for r in real]
        for temperature in temperatures:
            for seed, whole in [(seed, whole) for whole in (False, True) for seed in args.seeds]:
                like = [dict(r, ends=True) for r in real] if whole else real
                toks, wins, _ = sample_like(composer, like, n, temperature, seed, bias)
                s = score_set(toks, steps, bars, wins, real, train_keys)
                runs.append(
                    {
                        "chunks": n,
                        "whole_tunes": whole,
                        "T": temperature,
                        "copy_bias": bias,
                        "seed": seed,
                        "auc": s["two_sample"]["auc"],
                        "auc_wide": s["two_sample_wide"]["auc"],
                        "repeat": s["structure"]["repeat_share"],
                        "degenerate": s["structure"]["degenerate"],
                        "oa_min": s["overlap"]["min"],
                        "in_scale": s["structure"]["in_scale"],
                        "copies": s["copies_training_window"],
                    }
                )
                print(runs[-1], flush=True)
    report = {
        "prior": args.prior,
        "windows": "real_windows(test, n, 400, seed=0)",
        "top_p": composer.default_top_p,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return runs


if __name__ == "__main__":
    main()
