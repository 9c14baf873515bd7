"""How far can a codebook of 2-bar chunks go? Real held-out tunes rendered through their codes alone.

    python bench/codebook_ceiling.py --latents runs/latents_keyC.pt --data /tmp/corpus_midi

A prior over codes can at best write real tunes' code sequences; so each held-out window (8 chunks,
validation split, in C) has every chunk replaced by its code's chunk and is moved back to its key, and
the classifier two-sample test (two_sample.py) compares those with the real windows. Codebooks:
  - k-means (faiss) over the training chunks' standardized latents, K codes, each rendered by one
    chunk of its cluster: `random` (drawn as often as each occurs) or `medoid` (nearest the centroid);
  - `every`: every distinct training chunk is a code (the served prior's codebook), a held-out chunk
    takes the nearest one.
Writes bench/results/codebook_ceiling.json.
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

from generation.vae.checkpoint import load_prior  # noqa: E402
from generation.vae.chunks import join_chunks, melody_chunks, tonic_shift, transpose_melody  # noqa: E402
from generation.vae.data import DEFAULT_CACHE_DIR, load_melodies  # noqa: E402
from generation.vae.dedup import content_split  # noqa: E402
from generation.vae.longform import DEFAULT_PRIOR, LongformComposer, shift_tokens  # noqa: E402
from generation.vae.prior_evaluate import real_windows, score_set, training_spans  # noqa: E402
from generation.vae.prior_train import distinct_chunks, latent_set  # noqa: E402
from generation.vae.representation import steps_per_bar  # noqa: E402


def kmeans_codebooks(x: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(centroids [k, d], {rendering: the training row rendering each code}) for both renderings."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=10, seed=seed, max_points_per_centroid=10**6)
    km.train(x)
    dist, labels = km.index.search(x, 1)
    rng = np.random.default_rng(seed)
    picks = {"random": np.zeros(k, dtype=np.int64), "medoid": np.zeros(k, dtype=np.int64)}
    order = np.argsort(labels[:, 0], kind="stable")
    bounds = np.searchsorted(labels[order, 0], np.arange(k + 1))
    for c in range(k):
        members = order[bounds[c] : bounds[c + 1]]
        if len(members) == 0:
            nearest = int(np.argmin(((x - km.centroids[c]) ** 2).sum(1)))
            picks["random"][c] = picks["medoid"][c] = nearest
            continue
        picks["medoid"][c] = members[np.argmin(dist[members, 0])]
        picks["random"][c] = rng.choice(members)
    return km.centroids, picks


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latents", required=True, help="the key-normalized latent cache (latent_data --key-normalize)")
    p.add_argument("--data", required=True)
    p.add_argument("--prior", default=str(DEFAULT_PRIOR), help="any prior: its standardized coordinates are used")
    p.add_argument("--kmeans", type=int, nargs="*", default=[4096, 16384])
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "codebook_ceiling.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    torch.set_grad_enabled(False)
    cache = torch.load(args.latents, weights_only=True)
    melodies = load_melodies(args.data, DEFAULT_CACHE_DIR)
    split, _ = content_split(melodies)
    train = latent_set(cache, set(split["train"]))
    prior, _ = load_prior(args.prior)
    composer = LongformComposer.load(prior_path=None)
    rows, _ = distinct_chunks(train)
    all_rows = np.concatenate([np.arange(s, s + n) for s, n in zip(train.starts, train.lengths)])
    coords = lambda r: prior.standardize(cache["z"][torch.from_numpy(r)].float()).numpy()  # noqa: E731
    x_all = np.ascontiguousarray(coords(all_rows))
    chunked = {n: melody_chunks(m) for n, m in melodies.items()}
    keys = training_spans(chunked, split["train"])
    real = real_windows(chunked, split["valid"], 8, args.samples, seed=1)
    # each real window in C: its chunks' latents, ties and the move back
    prepared = []
    for r in real:
        mel = melodies[r["name"]]
        s = tonic_shift(mel)
        moved = melody_chunks(transpose_melody(mel, s))
        own = chunked[r["name"]]
        start = next(i for i in range(len(own.windows)) if np.array_equal(own.windows[i : i + 8], r["windows"]))
        ties = moved.ties[start : start + 8].copy()
        ties[0] = False
        z = composer.vae.encode(torch.from_numpy(moved.windows[start : start + 8]))[0].float()
        prepared.append((prior.standardize(z).numpy(), ties, moved.steps, -s))

    books: list[tuple[str, np.ndarray, np.ndarray]] = []
    for k in args.kmeans:
        cent, renderings = kmeans_codebooks(x_all, k)
        for render, picks in renderings.items():
            books.append((f"kmeans_{k}_{render}", cent, cache["windows"][torch.from_numpy(all_rows[picks])].numpy()))
    books.append(("every_training_chunk", coords(rows), cache["windows"][torch.from_numpy(rows)].numpy()))

    report: dict = {"latents": args.latents, "samples": len(real), "codebooks": {}}
    steps = [r["steps"] for r in real]
    bars = [steps_per_bar(*r["meter"]) for r in real]
    for name, cent, windows in tqdm(books, desc="codebooks"):
        c = torch.from_numpy(np.ascontiguousarray(cent))
        tokens = []
        for zc, ties, st, back in prepared:
            code = torch.cdist(torch.from_numpy(zc), c).argmin(-1).numpy()
            tokens.append(shift_tokens(join_chunks(windows[code].astype(np.int64), ties, st), back))
        res = score_set(tokens, steps, bars, None, real, keys)
        report["codebooks"][name] = {
            "codes": len(cent),
            "two_sample_auc": res["two_sample"],
            "structure": res["structure"],
            "overlap_min": res["overlap"]["min"],
        }
        print(name, round(res["two_sample"]["auc"], 3), flush=True)
    report["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).write_text(json.dumps(report, indent=2, default=float))
    return report


if __name__ == "__main__":
    main()
