"""Train a MusicVAE on any folder of MIDI files.

    python -m generation.vae.train --config mel_2bar --data /tmp/corpus_midi --out runs/mel_2bar
    python -m generation.vae.train --config mel_16bar --data /tmp/corpus_midi --out runs/mel_16bar --resume

Writes <out>/model.pt (weights + config + attribute vectors), <out>/last.pt (adds optimizer state,
for --resume), <out>/report.json and <out>/curves.png.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .attributes import ATTRIBUTES, attribute_matrix, attribute_vectors
from .checkpoint import read_checkpoint, save_checkpoint
from .config import ModelConfig, get_config
from .data import DEFAULT_CACHE_DIR, build_splits, transpose_batch
from .model import MusicVAE, vae_loss


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    # bf16 on GPU only: CPU bf16 LSTMs are slower than fp32 and lose accuracy.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def beta_at(cfg: ModelConfig, step: int) -> float:
    return cfg.beta_max * (1.0 - cfg.beta_rate**step)


def sampling_prob_at(cfg: ModelConfig, step: int) -> float:
    if cfg.sampling_max <= 0:
        return 0.0
    return cfg.sampling_max * min(1.0, max(0.0, (step - cfg.sampling_warmup) / max(1, cfg.sampling_ramp)))


def lr_at(cfg: ModelConfig, step: int) -> float:
    return max(cfg.lr_min, cfg.lr * cfg.lr_decay**step)


def train_step(
    model: MusicVAE, x: torch.Tensor, cfg: ModelConfig, step: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """One loss computation with two-pass scheduled sampling.

    Scheduled sampling step by step would serialize the decoder; instead (Mihaylova & Martins 2019)
    a first teacher-forced pass without gradients samples the model's own predictions, and a share
    `p` of the decoder inputs is replaced by them in the second (trained) pass.
    """
    with autocast(device):
        mu, sigma = model.encode(x)
        z = mu + sigma * torch.randn_like(mu)
        prev = model.shift_right(x)
        p = sampling_prob_at(cfg, step)
        if p > 0:
            with torch.no_grad():
                logits0 = model.decode_logits(z, prev).float()
                own = torch.distributions.Categorical(logits=logits0).sample()
            mix = torch.rand(prev.shape, device=prev.device) < p
            mix[:, 0] = False  # step 0 always sees START
            prev = torch.where(mix, model.shift_right(own), prev)
        logits = model.decode_logits(z, prev)
    return vae_loss(logits, x, mu, sigma, beta_at(cfg, step), cfg.free_bits)


@torch.no_grad()
def evaluate_tf(model: MusicVAE, data: torch.Tensor, device: torch.device, batch: int = 512) -> dict[str, float]:
    """Teacher-forced metrics with z = mu (no sampling noise), averaged over windows."""
    model.eval()
    sums = {"nll_per_token": 0.0, "kl": 0.0, "accuracy": 0.0}
    n = 0
    for i in range(0, len(data), batch):
        x = data[i : i + batch].to(device).long()
        with autocast(device):
            logits, mu, sigma = model(x, sample_z=False)
        m = vae_loss(logits, x, mu, sigma, 0.0, 0.0)
        for k in sums:
            sums[k] += float(m[k]) * len(x)
        n += len(x)
    model.train()
    return {k: v / max(1, n) for k, v in sums.items()}


@torch.no_grad()
def compute_attributes(
    model: MusicVAE, windows: torch.Tensor, device: torch.device, limit: int = 8192, seed: int = 0
) -> dict[str, Any]:
    model.eval()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(windows), generator=g)[:limit]
    w = windows[idx]
    zs = [model.encode(w[i : i + 512].to(device).long())[0].float().cpu() for i in range(0, len(w), 512)]
    z = torch.cat(zs)
    vals = attribute_matrix(w.numpy())
    return {"names": list(ATTRIBUTES), "vectors": attribute_vectors(z, vals)}


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    valid: list[dict[str, float]] = field(default_factory=list)


def plot_curves(h: History, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    vs = [v["step"] for v in h.valid]
    for a, key, label in zip(
        ax, ("loss", "accuracy", "kl"), ("loss (NLL/seq + beta*KL)", "token accuracy", "KL (nats/seq)")
    ):
        a.plot(h.steps, getattr(h, key), lw=0.8, label="train")
        vkey = {"loss": None, "accuracy": "accuracy", "kl": "kl"}[key]
        if vkey and vs:
            a.plot(vs, [v[vkey] for v in h.valid], "o-", label="valid (z=mu)")
        a.set_title(label)
        a.set_xlabel("step")
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(
    cfg: ModelConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | None = None,
    threads: int | None = 2,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    valid_limit: int = 4096,
    log: bool = True,
    half: bool = False,
    init: str | Path | None = None,
    init_step: int = 0,
) -> dict[str, Any]:
    """Train until max_minutes or max_epochs; returns the run report (also written as JSON)."""
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)

    splits = build_splits(data_dir, cfg.seq_len, cfg.hop_bars, seed=cfg.seed, cache_dir=cache_dir)
    g = torch.Generator().manual_seed(cfg.seed)
    valid = splits.valid[torch.randperm(len(splits.valid), generator=g)[:valid_limit]]
    model = MusicVAE(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step, epoch, elapsed_before = 0, 0, 0.0
    hist = History()
    best_acc, best_state = -1.0, None
    if init and not (resume and (out / "last.pt").exists()):
        # Warm start from another run's model.pt (weights only, fresh optimizer); `init_step`
        # continues that run's learning-rate, beta and scheduled-sampling schedules.
        blob = read_checkpoint(init)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        step = init_step
        if log:
            print(f"initialized from {init} at step {step}")
    if resume and (out / "last.pt").exists():
        blob = read_checkpoint(out / "last.pt")
        model.load_state_dict(blob["state_dict"])
        ts = blob["train_state"]
        opt.load_state_dict(ts["optimizer"])
        step, epoch, elapsed_before = int(ts["step"]), int(ts["epoch"]), float(ts["elapsed"])
        hist = History(**json.loads(ts["history"]))
        torch.set_rng_state(ts["rng"])
        if "best_accuracy" in ts:  # a checkpoint written before the best epoch was kept loses only that
            best_acc = float(ts["best_accuracy"])
            best_state = ts["best_state"] if ts["best_state"] is not None else blob["state_dict"]
        if log:
            print(f"resumed from step {step}, epoch {epoch}")
    n_params = sum(p.numel() for p in model.parameters())
    if log:
        print(
            f"{cfg.name}: {n_params / 1e6:.2f}M params, windows train/valid/test "
            f"{len(splits.train)}/{len(splits.valid)}/{len(splits.test)}, device {dev}"
        )

    # The training windows live on the device (int8, a few MB): no host-to-device copy per step.
    train_windows = splits.train.to(dev)
    budget = cfg.max_minutes * 60.0
    t0 = time.time() - elapsed_before
    windows_seen = 0
    t_train_start = time.time()
    model.train()
    stop = False
    while epoch < cfg.max_epochs and not stop:
        perm = torch.randperm(len(train_windows), device=dev)
        n_batches = len(perm) // cfg.batch_size
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", disable=not log, mininterval=2.0)
        run = {"loss": 0.0, "accuracy": 0.0, "kl": 0.0}
        for b in bar:
            x = transpose_batch(train_windows[perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]], cfg.transpose)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            m = train_step(model, x, cfg, step, dev)
            opt.zero_grad(set_to_none=True)
            m["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            windows_seen += len(x)
            if step % 10 == 0 or b == 0:  # reading a value waits for the GPU: not every step
                for k in run:
                    val = float(m[k].detach())
                    run[k] = 0.85 * run[k] + 0.15 * val if b > 0 else val  # EMA for display
            if step % 20 == 0:
                hist.steps.append(step)
                for k in run:
                    getattr(hist, k).append(run[k])
                bar.set_postfix(
                    loss=f"{run['loss']:.2f}",
                    acc=f"{run['accuracy']:.4f}",
                    kl=f"{run['kl']:.1f}",
                    beta=f"{beta_at(cfg, step):.3f}",
                    ss=f"{sampling_prob_at(cfg, step):.2f}",
                    refresh=False,
                )
            if time.time() - t0 > budget:
                stop = True
                break
        bar.close()
        epoch += 1
        v = evaluate_tf(model, valid, dev)
        v.update(step=step, epoch=epoch, minutes=(time.time() - t0) / 60)
        hist.valid.append(v)
        if v["accuracy"] > best_acc:  # the kept model is the best epoch on validation, not the last
            best_acc = v["accuracy"]
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            v["best"] = True
        if log:
            print(
                f"epoch {epoch} step {step}: valid acc {v['accuracy']:.4f} nll/tok {v['nll_per_token']:.4f} kl {v['kl']:.1f}"
            )
        train_state = {
            "optimizer": opt.state_dict(),
            "step": step,
            "epoch": epoch,
            "elapsed": time.time() - t0,
            "history": json.dumps(hist.__dict__),
            "rng": torch.get_rng_state(),
            # A resumed run goes on from the best epoch so far, not from scratch; its weights are
            # stored only when they are not this checkpoint's own (the last epoch was not the best).
            "best_accuracy": best_acc,
            "best_state": None if v.get("best") else best_state,
        }
        save_checkpoint(out / "last.pt", model, train_state=train_state)

    train_seconds = time.time() - t_train_start
    if best_state is not None:
        model.load_state_dict(best_state)
    attrs = compute_attributes(model, splits.train, dev, seed=cfg.seed)
    best = [v for v in hist.valid if v.get("best")]
    final_valid = best[-1] if best else (hist.valid[-1] if hist.valid else {})
    report = {
        "config": cfg.to_dict(),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "params": n_params,
        "windows": {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)},
        "tunes": {k: len(v) for k, v in splits.files.items()},
        "steps": step,
        "epochs": epoch,
        "train_minutes": (time.time() - t0) / 60,
        "train_windows_per_s": windows_seen / max(train_seconds, 1e-9),
        "valid": final_valid,
        "valid_history": hist.valid,
    }
    metrics = {
        "valid_accuracy": final_valid.get("accuracy"),
        "valid_kl": final_valid.get("kl"),
        "valid_nll_per_token": final_valid.get("nll_per_token"),
    }
    save_checkpoint(out / "model.pt", model, attributes=attrs, metrics=metrics, half=half)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_curves(hist, out / "curves.png", f"{cfg.name}: {step} steps, {report['train_minutes']:.1f} min on {dev}")
    return report


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """--set key=value pairs, typed by the config field they override."""
    base = ModelConfig().to_dict()
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, val = pair.partition("=")
        if key not in base:
            raise SystemExit(f"unknown config field {key!r}")
        typ = type(base[key])
        out[key] = (val.lower() in ("1", "true", "yes")) if typ is bool else typ(val)
    return out


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="mel_2bar")
    p.add_argument(
        "--data", required=True, help="folder of MIDI files (searched recursively), or its melodies-*.pt cache"
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--minutes", type=float, default=None, help="training time budget")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    p.add_argument("--init", default=None, help="start from this model.pt's weights (same config)")
    p.add_argument("--init-step", type=int, default=0, help="schedule step to continue from with --init")
    p.add_argument("--half", action="store_true", help="store model.pt weights in fp16 (half the size)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields")
    return p


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    cfg = get_config(args.config).with_overrides(max_minutes=args.minutes, max_epochs=args.epochs, seed=args.seed)
    return cfg.with_overrides(**parse_overrides(args.set))


def train_from_args(args: argparse.Namespace) -> tuple[ModelConfig, dict[str, Any]]:
    """Run what build_arg_parser's options ask for (this entry point and `manage.py train_model`)."""
    cfg = config_from_args(args)
    report = train(
        cfg,
        args.data,
        args.out,
        resume=args.resume,
        device=args.device,
        threads=args.threads,
        cache_dir=Path(args.cache_dir),
        half=args.half,
        init=args.init,
        init_step=args.init_step,
    )
    return cfg, report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_arg_parser().parse_args(argv)
    _, report = train_from_args(args)
    print(json.dumps({k: report[k] for k in ("steps", "epochs", "train_minutes", "valid")}, indent=2))
    return report


if __name__ == "__main__":
    main()
