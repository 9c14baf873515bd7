"""What each change to the latent prior did to its samples, on validation tunes.

    python bench/prior_ablation.py --data /tmp/corpus_midi --priors v1=generation/checkpoints/... \
        no_embed=runs/expB/prior.pt boundary=runs/expC/prior.pt --out bench/results/prior_ablation.json

For each prior (NAME=PATH) it samples one tune per real validation window (8 chunks, the window's
meter and "ends the tune" flag, like prior_evaluate's setting sweep) at one fixed setting for all
(--temperature, --copy-bias, --top-p), and measures against the real windows:
  - the classifier two-sample AUC (two_sample.py) with its bootstrap interval, overall and per meter;
  - the intervals between successive notes inside a chunk and across a chunk boundary (mean, and the
    share over 4 and over 7 semitones): the chunks are real, so the joins are the prior's own work;
  - the spread of the tunes' mean pitch (5th, 50th and 95th percentiles): the key a new tune is
    moved back to decides its register.
`NAME=PATH:marginal` draws new tunes' keys from the overall key shares instead of by register;
`NAME=PATH:keys=OTHER` takes the table of keys by register from the prior at OTHER (the first codebook
prior was trained before the table existed; the table depends only on the training tunes).
Same random stream for every prior. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.vae.attributes import notes_of  # noqa: E402
from generation.vae.longform import LongformComposer  # noqa: E402
from generation.vae.prior_evaluate import held_out_tunes, real_windows, sample_like  # noqa: E402
from generation.vae.two_sample import feature_matrix, two_sample_auc  # noqa: E402


def join_intervals(tokens: list[np.ndarray], steps: list[int]) -> dict[str, float]:
    inside, across, means = [], [], []
    for t, st in zip(tokens, steps):
        notes = notes_of(t)
        means.append(np.mean([p for _, _, p in notes]) if notes else np.nan)
        for (s0, _, p0), (s1, _, p1) in zip(notes[:-1], notes[1:]):
            (across if s0 // st != s1 // st else inside).append(abs(p1 - p0))
    ins, acr = np.array(inside), np.array(across)
    lo, mid, hi = np.nanpercentile(means, [5, 50, 95])
    return {
        "inside_mean": float(ins.mean()),
        "inside_over_7": float((ins > 7).mean()),
        "across_mean": float(acr.mean()),
        "across_over_4": float((acr > 4).mean()),
        "across_over_7": float((acr > 7).mean()),
        "mean_pitch_p5_p50_p95": [float(lo), float(mid), float(hi)],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--priors", nargs="+", required=True, metavar="NAME=PATH[:marginal|:keys=PATH]")
    p.add_argument("--windows", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--copy-bias", type=float, default=0.25)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "prior_ablation.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, chunked, split, _ = held_out_tunes(args.data)
    real = real_windows(chunked, split["valid"], 8, args.windows, seed=1)
    steps = [r["steps"] for r in real]
    groups = np.array([r["name"] for r in real])
    meters = [tuple(r["meter"]) for r in real]
    xr = feature_matrix([r["tokens"] for r in real], steps)
    report: dict = {
        "setting": {"temperature": args.temperature, "copy_bias": args.copy_bias, "top_p": args.top_p},
        "windows": len(real),
        "real": join_intervals([r["tokens"] for r in real], steps),
        "priors": {},
    }
    for spec in tqdm(args.priors, desc="priors"):
        name, path = spec.split("=", 1)
        path, _, option = path.partition(":")
        t0 = time.time()
        composer = LongformComposer.load(path, bf16_decode=True)
        if option == "marginal":
            composer.key_shifts_by_register = None
        elif option.startswith("keys="):
            composer.key_shifts_by_register = LongformComposer.load(option[5:]).key_shifts_by_register
        toks, _, _ = sample_like(composer, real, 8, args.temperature, args.seed, args.copy_bias, args.top_p)
        xf = feature_matrix(toks, steps)
        per_meter = {}
        for m in sorted(set(meters), key=meters.count, reverse=True):
            idx = [i for i, x in enumerate(meters) if x == m]
            if len(idx) >= 30:
                per_meter[f"{m[0]}/{m[1]}"] = two_sample_auc(xr[idx], xf[idx], groups[idx], bootstrap=0)["auc"]
        report["priors"][name] = {
            "path": path,
            "keys": "by register" if composer.key_shifts_by_register is not None else "overall shares",
            "config": composer.prior.cfg.to_dict() if composer.prior is not None else None,
            "two_sample": two_sample_auc(xr, xf, groups),
            "two_sample_by_meter": per_meter,
            **join_intervals(toks, steps),
            "seconds": time.time() - t0,
        }
        tqdm.write(f"{name}: {json.dumps({k: v for k, v in report['priors'][name].items() if k != 'config'})}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
