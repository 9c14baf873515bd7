"""Evaluate a checkpoint on the held-out test split, against an n-gram and an LSTM LM baseline.

    python -m generation.vae.evaluate --checkpoint generation/checkpoints/mel_16bar.pt \
        --data /tmp/corpus_midi --out generation/checkpoints/mel_16bar_eval.json

Reconstruction (MusicVAE's definitions, per-step token accuracy over every step):
  teacher-forced: decoder fed the true previous tokens, z = mu
  sampled:        decoder fed its own argmax outputs, z = mu
plus KL (nats per sequence) and NLL per token (teacher-forced, z = mu).
Sample quality: N melodies from the prior (and from each baseline) vs N held-out test windows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .baselines import LSTMLanguageModel, NGramModel
from .checkpoint import load_model
from .data import DEFAULT_CACHE_DIR, build_splits
from .metrics import FEATURES, compare_sets
from .model import MusicVAE
from .representation import FIRST_NOTE, HOLD
from .train import evaluate_tf


@torch.no_grad()
def sampled_accuracy(model: MusicVAE, data: torch.Tensor, device: torch.device, batch: int = 1024) -> float:
    correct, total = 0, 0
    for i in range(0, len(data), batch):
        x = data[i : i + batch].to(device).long()
        mu, _ = model.encode(x)
        y = model.generate(mu, greedy=True)
        correct += int((y == x).sum())
        total += x.numel()
    return correct / max(1, total)


def evaluate(
    checkpoint: str | Path,
    data_dir: str | Path,
    *,
    n_samples: int = 512,
    recon_limit: int = 2048,
    temperature: float = 1.0,
    temperatures: list[float] | None = None,
    baseline_minutes: float = 3.0,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = 2,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    temperatures = [temperature] + [t for t in (temperatures or []) if t != temperature]
    if any(t <= 0 for t in temperatures):
        raise ValueError("sampling temperatures must be positive")
    dev = torch.device(device)
    model, blob = load_model(checkpoint, dev)
    cfg = model.cfg
    splits = build_splits(data_dir, cfg.seq_len, cfg.hop_bars, seed=cfg.seed, cache_dir=cache_dir)
    g = torch.Generator().manual_seed(seed)
    test = splits.test[torch.randperm(len(splits.test), generator=g)]
    recon_set = test[:recon_limit]

    t0 = time.time()
    tf = evaluate_tf(model, recon_set, dev)
    acc_sampled = sampled_accuracy(model, recon_set, dev)
    all_hold = float((recon_set == HOLD).float().mean())
    recon = {
        "windows": len(recon_set),
        "teacher_forced_accuracy": tf["accuracy"],
        "sampled_accuracy": acc_sampled,
        "kl_per_sequence": tf["kl"],
        "nll_per_token": tf["nll_per_token"],
        "all_hold_accuracy": all_hold,
        "seconds": time.time() - t0,
    }
    print(
        f"reconstruction: TF {recon['teacher_forced_accuracy']:.4f}  sampled {acc_sampled:.4f}  "
        f"KL {tf['kl']:.2f}  NLL/tok {tf['nll_per_token']:.4f}  (all-hold floor {all_hold:.3f})"
    )

    reference = test[-n_samples:].numpy().astype(np.int64)  # disjoint from none needed: test only
    train_np = splits.train.numpy().astype(np.int64)
    t1 = time.time()
    ngram = NGramModel(order=4).fit(train_np)
    ngram_info = {"order": 4, "seconds": time.time() - t1}
    lm = LSTMLanguageModel(embed_dim=cfg.embed_dim, hidden=cfg.dec_hidden, layers=cfg.dec_layers).to(dev)
    lm_info = lm.fit(splits.train, baseline_minutes, batch_size=cfg.batch_size, transpose=cfg.transpose, seed=seed)

    def samples_at(temp: float) -> dict[str, Any]:
        """The VAE (z from the prior) and both baselines, all sampled at one temperature."""
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n_samples, cfg.z_dim, generator=gen).to(dev)
        vae_samples = (
            model.generate(z, temperature=temp, generator=torch.Generator(device=dev).manual_seed(seed)).cpu().numpy()
        )
        sets = {
            "vae_prior": compare_sets(vae_samples, reference),
            "ngram": compare_sets(ngram.sample(n_samples, cfg.seq_len, temperature=temp, seed=seed), reference),
            "lstm_lm": compare_sets(lm.sample(n_samples, cfg.seq_len, temperature=temp, seed=seed), reference),
        }
        wins = {
            b: sum(sets["vae_prior"][f"oa_{f}"] > sets[b][f"oa_{f}"] for f in FEATURES) for b in ("ngram", "lstm_lm")
        }
        return {
            "n": n_samples,
            "temperature": temp,
            **sets,
            "vae_better_than_baseline_on_features": {b: f"{v}/{len(FEATURES)}" for b, v in wins.items()},
        }

    # The first temperature is the headline (`samples`); the others are a sweep beside it.
    sweep = [samples_at(t) for t in temperatures]
    samples = {k: v for k, v in sweep[0].items() if k != "vae_better_than_baseline_on_features"}
    return {
        "checkpoint": str(checkpoint),
        "config": cfg.to_dict(),
        "test_tunes": len(splits.files["test"]),
        "test_windows": len(splits.test),
        "reconstruction": recon,
        "samples": samples,
        "vae_better_than_baseline_on_features": sweep[0]["vae_better_than_baseline_on_features"],
        "samples_by_temperature": sweep if len(sweep) > 1 else [],
        "baselines": {"ngram": ngram_info, "lstm_lm": {**lm_info, "hidden": cfg.dec_hidden, "layers": cfg.dec_layers}},
        "mean_notes_reference": float(np.mean([(r >= FIRST_NOTE).sum() for r in reference])),
    }


def print_table(report: dict[str, Any]) -> None:
    s = report["samples"]
    names = ("vae_prior", "ngram", "lstm_lm")
    rows = [f"oa_{f}" for f in FEATURES] + ["oa_mean", "scale_consistency", "notes_per_melody"]
    print(f"\n{'metric':32s}" + "".join(f"{n:>12s}" for n in names))
    for r in rows:
        print(f"{r:32s}" + "".join(f"{s[n][r]:12.3f}" for n in names))
    print(f"{'scale_consistency (held-out)':32s}{s['vae_prior']['scale_consistency_reference']:12.3f}")
    for sw in report.get("samples_by_temperature") or []:
        oa = {n: sw[n]["oa_mean"] for n in names}
        low = min(sw["vae_prior"][f"oa_{f}"] for f in FEATURES)
        print(
            f"T={sw['temperature']:<5g} oa_mean "
            + "  ".join(f"{n} {v:.3f}" for n, v in oa.items())
            + f"  (VAE's lowest overlap {low:.3f}; better than n-gram on "
            f"{sw['vae_better_than_baseline_on_features']['ngram']}, LSTM on {sw['vae_better_than_baseline_on_features']['lstm_lm']})"
        )


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Bar chart of the overlap areas and scale consistency, VAE vs baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["samples"]
    names = ("vae_prior", "ngram", "lstm_lm")
    rows = [f"oa_{f}" for f in FEATURES] + ["scale_consistency"]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.27
    for i, n in enumerate(names):
        ax.bar(np.arange(len(rows)) + (i - 1) * width, [s[n][r] for r in rows], width, label=n)
    ax.axhline(0.85, color="grey", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(rows)), [r.replace("oa_", "").replace("_", "\n") for r in rows], fontsize=8)
    ax.set_ylim(0, 1.05)
    r = report["reconstruction"]
    ax.set_title(
        f"{report['config']['name']}: test TF acc {r['teacher_forced_accuracy']:.3f}, "
        f"sampled {r['sampled_accuracy']:.3f}, KL {r['kl_per_sequence']:.1f}; "
        f"{s['n']} prior samples vs held-out (T={s['temperature']})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    return run(args)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="JSON report path")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--recon-limit", type=int, default=2048)
    p.add_argument("--temperature", type=float, default=1.0, help="the headline sampling temperature")
    p.add_argument(
        "--sweep",
        type=float,
        nargs="*",
        default=[],
        metavar="T",
        help="more sampling temperatures, reported under samples_by_temperature (baselines trained once)",
    )
    p.add_argument("--baseline-minutes", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    report = evaluate(
        args.checkpoint,
        args.data,
        n_samples=args.samples,
        recon_limit=args.recon_limit,
        temperature=args.temperature,
        temperatures=args.sweep,
        baseline_minutes=args.baseline_minutes,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        cache_dir=Path(args.cache_dir),
    )
    print_table(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    plot_report(report, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return report


if __name__ == "__main__":
    main()
