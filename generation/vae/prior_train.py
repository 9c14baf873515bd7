"""Train the latent-sequence prior on the latent cache (latent_data.py), training split only.

    python -m generation.vae.prior_train --latents runs/latents.pt --split runs/split.json \
        --out runs/prior --minutes 45 --threads 2

Writes <out>/prior.pt (best validation NLL, fp16) and <out>/report.json. Training sequences are
whole tunes (and their transposed copies) of up to 32 chunks; longer tunes give a random 32-chunk
crop starting on an even chunk; a share `prefix_crop` is cut to a random prefix that does not end
the tune, so the length/ends conditions cover "the first n chunks" as well as "a whole tune".

`--set codebook=1` trains the codebook kind: every distinct chunk of the training tunes becomes a
code (its count is set here), a chunk's target is its own code (a held-out chunk's, the nearest);
`meter_softmax=1` normalizes each chunk's code distribution over its meter's codes, the set the
sampler draws from (a quarter of the codes for the common meters, so a step costs a third as much).
A key-normalized cache also stores, in the checkpoint's metrics, how far training tunes were moved
to reach C, by their register (`key_shifts`) and as a model of their range, pitch classes, meter
and length (`key_model`, keys.py): new tunes are moved back the same way. `--refresh-keys PRIOR`
fits the key model into a prior trained before it existed.
The checkpoint's metrics also hold the training tunes' forms (`tune_forms`: which chunk repeats
which), from which new tunes' repeat structures are drawn.
`--init` warm-starts from any prior, copying the weights the two share (`--set` then changes its
config, e.g. `--init generation/checkpoints/latent_prior_gmm.pt --set codebook=1 dropout=0.25`).
`--train-only` trains only some weights, e.g. the terms a warm start adds (the served prior:
`--set ... boundary_bins=12 similar_lags=4 context_terms=1 --train-only boundary similar context.bias`;
the context term's weights on the state, trained too, made the validation NLL worse, 6.999 against
6.994 before it, where its eight biases alone made it better, 6.989).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import save_prior
from .chunks import tune_register
from .keys import fit_key_model
from .prior import METERS, LatentPrior, PriorConfig, first_repeats, meter_index


@dataclass
class LatentSet:
    """The cache rows of one split: sequence i is chunks offsets[i]:offsets[i] + lengths[i]."""

    z: torch.Tensor  # fp16 [chunks, Z]
    ties: torch.Tensor
    windows: torch.Tensor
    starts: np.ndarray
    lengths: np.ndarray
    meters: np.ndarray  # meter index per sequence
    names: list[str]
    codes: torch.Tensor | None = None  # per chunk of the cache: its code (codebook priors)


def latent_set(cache: dict, names: set[str], originals_only: bool = False) -> LatentSet:
    off = cache["offsets"].numpy()
    keep = [
        i
        for i, n in enumerate(cache["names"])
        # a key-normalized cache has each tune once (its shift moves it to C): every row is an original
        if n in names
        and (not originals_only or cache.get("key_normalized") or int(cache["shifts"][i]) == 0)
        and off[i + 1] > off[i]
    ]
    return LatentSet(
        z=cache["z"],
        ties=cache["ties"],
        windows=cache["windows"],
        starts=off[keep],
        lengths=off[np.array(keep) + 1] - off[keep],
        meters=np.array([meter_index(tuple(cache["meters"][i].tolist())) for i in keep]),
        names=[cache["names"][i] for i in keep],
    )


def make_batch(data: LatentSet, idx: list[int], max_chunks: int, rng: random.Random | None, prefix_crop: float = 0.0):
    """Crops (random when rng is given, else the first max_chunks) as padded tensors."""
    crops = []
    for i in idx:
        n = int(data.lengths[i])
        start, length = 0, min(n, max_chunks)
        if rng is not None and n > max_chunks:
            start = 2 * rng.randint(0, (n - max_chunks) // 2)
        ends = start + length == n
        if rng is not None and length > 2 and rng.random() < prefix_crop:
            length = rng.randint(2, length - 1)
            ends = False
        crops.append((int(data.starts[i]) + start, length, ends, int(data.meters[i])))
    L = max(c[1] for c in crops)
    B = len(crops)
    z = torch.zeros(B, L, data.z.shape[1])
    ties = torch.zeros(B, L, dtype=torch.bool)
    win = torch.full((B, L, data.windows.shape[1]), -1, dtype=torch.int8)
    valid = torch.zeros(B, L, dtype=torch.bool)
    codes = torch.zeros(B, L, dtype=torch.long)
    for b, (s, n, _, _) in enumerate(crops):
        z[b, :n] = data.z[s : s + n].float()
        if data.codes is not None:
            codes[b, :n] = data.codes[s : s + n]
        ties[b, :n] = data.ties[s : s + n]
        win[b, :n] = data.windows[s : s + n]
        valid[b, :n] = True
    copies = (win[:, :, None] == win[:, None, :]).all(-1)
    copies &= torch.ones(L, L, dtype=torch.bool).tril(-1) & valid[:, :, None] & valid[:, None, :]
    return {
        "z": z,
        "ties": ties,
        "valid": valid,
        "meter": torch.tensor([c[3] for c in crops]),
        "length": torch.tensor([c[1] for c in crops]),
        "ends": torch.tensor([c[2] for c in crops]),
        "copies": copies,
        "codes": codes if data.codes is not None else None,
        "windows": win,
    }


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """One epoch of batches of similar lengths (most tunes are 4 to 16 chunks: padding every batch to
    32 cost three times the compute), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for i in range(0, len(order), batch_size * pool):
        block = sorted(order[i : i + batch_size * pool], key=lambda k: lengths[k])
        batches += [block[j : j + batch_size] for j in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_nll(prior: LatentPrior, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    ll = prior.log_likelihood(
        batch["z"],
        batch["ties"],
        batch["valid"],
        batch["meter"],
        batch["length"],
        batch["ends"],
        batch["copies"],
        batch["codes"],
        batch["windows"],
    )
    chunks = batch["valid"].sum()
    loss = -(ll["z"] + ll["tie"]).sum() / chunks
    return loss, {
        "nll_per_chunk": float(loss.detach()),
        "copy_nll": float(-ll["copy"].detach().sum() / ll["n_copy"].sum().clamp(min=1)),
        "copy_share": float(ll["n_copy"].sum() / chunks),
    }


@torch.no_grad()
def evaluate_nll(prior: LatentPrior, data: LatentSet, batch_size: int = 256) -> dict[str, float]:
    prior.eval()
    tot, n, copy_tot, n_copy = 0.0, 0, 0.0, 0
    for i in range(0, len(data.lengths), batch_size):
        b = make_batch(data, list(range(i, min(i + batch_size, len(data.lengths)))), prior.cfg.max_chunks, None)
        ll = prior.log_likelihood(
            b["z"], b["ties"], b["valid"], b["meter"], b["length"], b["ends"], b["copies"], b["codes"], b["windows"]
        )
        tot += float((ll["z"] + ll["tie"]).sum())
        n += int(b["valid"].sum())
        copy_tot += float(ll["copy"].sum())
        n_copy += int(ll["n_copy"].sum())
    prior.train()
    return {"nll_per_chunk": -tot / max(1, n), "copy_nll": -copy_tot / max(1, n_copy), "copy_share": n_copy / max(1, n)}


def warm_start(init: Path | LatentPrior, overrides: dict | None = None) -> LatentPrior:
    """A prior with `init`'s architecture and coordinates (its config with `overrides`, e.g. a
    codebook, dropout or learning rate), every weight whose name and shape match copied from `init`
    (a prior, or the path of its checkpoint), the rest new."""
    from .checkpoint import load_prior

    old = load_prior(init)[0] if isinstance(init, Path) else init
    new_cfg = PriorConfig.from_dict({**old.cfg.to_dict(), **(overrides or {})})
    prior = LatentPrior(new_cfg)
    own = prior.state_dict()
    prior.load_state_dict(
        {k: v for k, v in old.state_dict().items() if k in own and own[k].shape == v.shape}, strict=False
    )
    return prior.train()


def distinct_chunks(train: LatentSet) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the cache, one per distinct window of the training tunes, first seen first; how often
    each occurs there)."""
    rows = np.concatenate([np.arange(s, s + n) for s, n in zip(train.starts, train.lengths)])
    windows = train.windows[torch.from_numpy(rows)].numpy()
    _, first, counts = np.unique(windows, axis=0, return_index=True, return_counts=True)
    order = np.argsort(first)
    return rows[first[order]], counts[order]


def code_index(windows: torch.Tensor, rows: np.ndarray) -> dict[bytes, int]:
    """A window's bytes -> its code (code k is the window at cache row rows[k])."""
    return {w.tobytes(): k for k, w in enumerate(windows[torch.from_numpy(rows)].numpy())}


@torch.no_grad()
def fill_codebook(
    prior: LatentPrior, train: LatentSet, rows: np.ndarray, counts: np.ndarray, keep_learned: bool = False
) -> dict:
    """Code k is the training chunk at cache row rows[k]: its standardized coordinates, its window,
    and a starting bias of log(its frequency), so an untrained head already draws chunks as often as
    the corpus uses them (`keep_learned`: the prior already holds these codes, its biases stay)."""
    idx = torch.from_numpy(rows)
    prior.code_coords.copy_(prior.standardize(train.z[idx].float()))
    prior.code_windows.copy_(train.windows[idx])
    if not keep_learned:
        prior.code_bias.copy_(torch.from_numpy(np.log(counts / counts.sum())).float())
    prior.code_meters.copy_(code_meters(train, rows))
    return {"codes": len(rows), "training_chunks": int(counts.sum()), "seen_once": int((counts == 1).sum())}


def code_meters(train: LatentSet, rows: np.ndarray) -> torch.Tensor:
    """[codes, meters] bool: code k (the window at cache row rows[k]) occurs in a training tune of that meter."""
    index = code_index(train.windows, rows)
    out = torch.zeros(len(rows), len(METERS) + 1, dtype=torch.bool)
    windows = train.windows.numpy()
    for start, n, meter in zip(train.starts, train.lengths, train.meters):
        for w in windows[start : start + n]:
            out[index[w.tobytes()], meter] = True
    return out


@torch.no_grad()
def chunk_codes(prior: LatentPrior, cache: dict, rows: np.ndarray) -> torch.Tensor:
    """Every cache chunk's code: its own where its window is a training chunk, else the nearest code."""
    index = code_index(cache["windows"], rows)
    windows = cache["windows"].numpy()
    codes = torch.tensor([index.get(w.tobytes(), -1) for w in windows])
    other = torch.nonzero(codes < 0)[:, 0]
    if len(other):
        codes[other] = prior.nearest_code(cache["z"][other].float())
    return codes


def refresh_codebook(path: Path, latents: str, split_path: str) -> dict:
    """Store the code meters in a codebook prior trained before they existed (same cache and split:
    its codes must be exactly this training split's distinct chunks, in the same order)."""
    from .checkpoint import _load_blob, set_prior_metrics

    cache = torch.load(latents, weights_only=True)
    split = json.loads(Path(split_path).read_text())
    train = latent_set(cache, set(split["train"]))
    rows, _ = distinct_chunks(train)
    blob = _load_blob(path, ("refrain-latent-prior",), "latent prior")
    if not torch.equal(blob["state_dict"]["code_windows"], train.windows[torch.from_numpy(rows)]):
        raise SystemExit(f"{path}: its codes are not this split's training chunks")
    meters = code_meters(train, rows)
    set_prior_metrics(path, {}, {"code_meters": meters})
    return {"codes": len(rows), "codes_per_meter": meters.sum(0).tolist()}


REGISTER_LOW, REGISTER_HIGH = 36, 96  # the mean pitches the key table has rows for (clipped to them)


def key_shifts(cache: dict, train_names: set[str]) -> dict:
    """How far the training tunes were moved to reach C, undone when sampling: over all tunes
    (`key_shift_probs`, 12 shifts -6..5) and by the tune's register in C (`key_shifts_by_register`:
    counts per rounded mean pitch REGISTER_LOW..REGISTER_HIGH - 1). A tune written high in C was
    mostly moved up from a low key, so drawing its key by its register keeps generated tunes in the
    registers real tunes use (drawn from the overall shares, the spread of generated tunes' mean
    pitch was twice the real one's)."""
    off = cache["offsets"].numpy()
    windows = cache["windows"].numpy()
    table = np.zeros((REGISTER_HIGH - REGISTER_LOW, 12))
    for i, (name, s) in enumerate(zip(cache["names"], cache["shifts"].tolist())):
        if name not in train_names or off[i + 1] == off[i]:
            continue
        row = min(max(tune_register(windows[off[i] : off[i + 1]]), REGISTER_LOW), REGISTER_HIGH - 1)
        table[row - REGISTER_LOW, (6 - int(s)) % 12] += 1  # the shift back, as -6..5 (octaves dropped)
    return {
        "key_shift_probs": (table.sum(0) / max(1.0, table.sum())).tolist(),
        "key_shifts_by_register": {"low": REGISTER_LOW, "counts": table.astype(int).tolist()},
    }


def key_model(cache: dict, train_names: set[str], min_tunes: int = 30) -> dict:
    """The training tunes' keys as a model of their range, pitch classes, meter and length in C
    (keys.fit_key_model): how far each was moved to reach C, undone. It knows the meters at least
    `min_tunes` training tunes have."""
    off = cache["offsets"].numpy()
    windows = cache["windows"].numpy()
    tunes = [
        (windows[off[i] : off[i + 1]], cache["meters"][i].tolist(), -int(s))
        for i, (name, s) in enumerate(zip(cache["names"], cache["shifts"].tolist()))
        if name in train_names and off[i + 1] > off[i]
    ]
    counts = Counter(tuple(m) for _, m, _ in tunes)
    return {"key_model": fit_key_model(tunes, [list(m) for m, k in counts.most_common() if k >= min_tunes])}


def refresh_keys(path: Path, latents: str, split_path: str) -> dict:
    """Fit the key model (`key_model`) on --latents/--split's training tunes and store it in a prior
    trained before it existed; nothing else changes."""
    from .checkpoint import set_prior_metrics

    cache = torch.load(latents, weights_only=True)
    if not cache.get("key_normalized", False):
        raise SystemExit(f"{latents}: not a key-normalized latent cache (--key-normalize)")
    split = json.loads(Path(split_path).read_text())
    model = key_model(cache, set(split["train"]))
    set_prior_metrics(path, model)
    return {"tunes": model["key_model"]["tunes"], "meters": model["key_model"]["meters"]}


def tune_forms(cache: dict, train_names: set[str], max_chunks: int = 32) -> dict:
    """The training tunes' forms, for drawing new tunes' repeat structure (longform.draw_forms): per tune,
    its meter, its length in chunks and, for each of its first `max_chunks` chunks, the earliest chunk it
    repeats exactly (-1: none). Which chunk repeats which, not what they are."""
    off = cache["offsets"].numpy()
    windows = cache["windows"].numpy()
    meters, lengths, pointers = [], [], []
    for i, name in enumerate(cache["names"]):
        if name not in train_names or off[i + 1] == off[i]:
            continue
        meters.append([int(x) for x in cache["meters"][i].tolist()])
        lengths.append(int(off[i + 1] - off[i]))
        pointers.append(first_repeats([w.tobytes() for w in windows[off[i] : min(off[i + 1], off[i] + max_chunks)]]))
    return {"forms": {"meters": meters, "lengths": lengths, "pointers": pointers}}


def train_prior(
    cache: dict,
    split: dict[str, list[str]],
    out: Path,
    cfg: PriorConfig,
    *,
    minutes: float,
    threads: int = 2,
    eval_every_s: float = 90.0,
    vae_name: str = "mel_2bar_large.pt",
    init: Path | None = None,
    init_overrides: dict | None = None,
    extra_metrics: dict | None = None,
    train_only: list[str] | None = None,
) -> dict:
    """`train_only`: train only the parameters whose names start with one of these (all when None).
    `init`: start from that prior's weights and coordinates (z_mean, z_basis, z_std) instead of
    fitting new ones, its config changed by `init_overrides` (`cfg` is not used then).
    `extra_metrics` go into the checkpoint (key normalization, key distribution)."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    train = latent_set(cache, set(split["train"]))
    valid = latent_set(cache, set(split["valid"]), originals_only=True)
    wants_codes = bool(cfg.codebook)
    start = None
    if init is not None:  # the init's kind, unless --set says otherwise
        from .checkpoint import load_prior

        start = load_prior(init)[0]
        wants_codes = bool((init_overrides or {}).get("codebook", start.cfg.codebook))
    rows, counts = distinct_chunks(train) if wants_codes else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if start is not None:
        prior = warm_start(start, {**(init_overrides or {}), **({"codebook": len(rows)} if wants_codes else {})})
        cfg = prior.cfg
    else:
        cfg = dataclasses.replace(cfg, codebook=len(rows))
        prior = LatentPrior(cfg)
        prior.fit_standardization(train.z)
    codebook_info = None
    if cfg.codebook:
        # a warm start from a codebook prior of these same chunks keeps what its code head learned
        same = init is not None and torch.equal(prior.code_windows, train.windows[torch.from_numpy(rows)])
        codebook_info = fill_codebook(prior, train, rows, counts, keep_learned=same)
        train.codes = valid.codes = chunk_codes(prior, cache, rows)
    if train_only:  # e.g. a head added to a warm-started prior, the rest kept as it was trained
        for name, param in prior.named_parameters():
            param.requires_grad_(any(name.startswith(prefix) for prefix in train_only))
    trained = [param for param in prior.parameters() if param.requires_grad]
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    t0, step, best, history = time.time(), 0, math.inf, []
    last_eval = t0
    order: list[list[int]] = []
    bar = tqdm(desc="prior", mininterval=10)
    out.mkdir(parents=True, exist_ok=True)
    prior.train()
    while True:
        elapsed = time.time() - t0
        done = elapsed > minutes * 60
        if done or time.time() - last_eval > eval_every_s:
            v = evaluate_nll(prior, valid)
            history.append({"step": step, "minutes": elapsed / 60, **v})
            if v["nll_per_chunk"] < best:
                best = v["nll_per_chunk"]
                metrics = {"valid": v, "step": step, **(extra_metrics or {})}
                save_prior(out / "prior.pt", prior, vae=vae_name, metrics=metrics)
            bar.write(f"step {step} min {elapsed / 60:.1f} valid {v}")
            last_eval = time.time()
        if done:
            break
        # warm-up then cosine decay over the time budget
        frac = min(1.0, elapsed / (minutes * 60))
        lr = cfg.lr * min(1.0, (step + 1) / 300) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        if not order:
            order = bucketed_batches(train.lengths, cfg.batch_size, rng)
        idx = order.pop()
        loss, info = batch_nll(prior, make_batch(train, idx, cfg.max_chunks, rng, cfg.prefix_crop))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(nll=f"{info['nll_per_chunk']:.1f}", refresh=False)
    bar.close()
    report = {
        "config": cfg.to_dict(),
        "steps": step,
        "minutes": (time.time() - t0) / 60,
        "threads": threads,
        "train_sequences": len(train.lengths),
        "valid_sequences": len(valid.lengths),
        "best_valid_nll_per_chunk": best,
        "history": history,
        "parameters": sum(p.numel() for p in prior.parameters()),
        "codebook": codebook_info,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latents", required=True)
    p.add_argument("--split", required=True, help="JSON from python -m generation.vae.dedup")
    p.add_argument("--out", required=True)
    p.add_argument("--minutes", type=float, default=45.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="PriorConfig overrides")
    p.add_argument("--init", help="warm start from this prior checkpoint (its config and coordinates)")
    p.add_argument("--train-only", nargs="*", metavar="PREFIX", help="train only the parameters whose names start so")
    p.add_argument(
        "--refresh-codebook",
        metavar="PRIOR",
        help="do not train: recompute this codebook prior's code meters from --latents/--split and store them",
    )
    p.add_argument(
        "--refresh-keys",
        metavar="PRIOR",
        help="do not train: fit the key model (keys.py) on --latents/--split's training tunes and store it",
    )
    args = p.parse_args(argv)
    if args.refresh_codebook:
        print(refresh_codebook(Path(args.refresh_codebook), args.latents, args.split))
        return
    if args.refresh_keys:
        print(refresh_keys(Path(args.refresh_keys), args.latents, args.split))
        return
    over = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        typ = type(getattr(PriorConfig(), k))
        over[k] = typ(v) if typ is not bool else v.lower() in ("1", "true", "yes")
    cfg = PriorConfig.from_dict({**PriorConfig().to_dict(), **over})  # with --init: the init's, changed by --set
    cache = torch.load(args.latents, weights_only=True)
    split = json.loads(Path(args.split).read_text())
    extra: dict = {"key_normalized": bool(cache.get("key_normalized", False))}
    if extra["key_normalized"]:  # how far each training tune was moved to reach C: undo as often when sampling
        extra.update(key_shifts(cache, set(split["train"])))
        extra.update(key_model(cache, set(split["train"])))
    extra.update(tune_forms(cache, set(split["train"])))  # new tunes' repeat structures are drawn from these
    report = train_prior(
        cache,
        split,
        Path(args.out),
        cfg,
        minutes=args.minutes,
        threads=args.threads,
        vae_name=Path(cache["vae"]).name,
        init=Path(args.init) if args.init else None,
        init_overrides=over,
        train_only=args.train_only,
        extra_metrics=extra,
    )
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
